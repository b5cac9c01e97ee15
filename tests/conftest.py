"""Shared test configuration: each tier's fixtures live in their own plugin module under tests/fixtures."""

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.emulator",
    "tests.fixtures.prometheus",
    "tests.fixtures.tls",
    "tests.fixtures.browser",
    "tests.fixtures.azurite",
]
