"""Shared fixtures. Heavier ones live in tests/fixtures and are registered here as plugins."""

pytest_plugins = [
    "tests.fixtures.tiny_models",
    "tests.fixtures.tiny_clipseg",
    "tests.fixtures.tiny_depth",
    "tests.fixtures.tiny_upscaler",
    "tests.fixtures.tiny_adapters",
    "tests.fixtures.tiny_families",
    "tests.fixtures.engine_forkserver",
]
