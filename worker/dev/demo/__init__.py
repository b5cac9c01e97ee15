"""``moderation-worker demo``: the whole job on an embedded broker, the emulator and bundled sample images."""
