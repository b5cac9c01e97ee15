"""The vision emulator: the Image Analysis 4.0 REST contract served from fixtures or from an offline model."""
