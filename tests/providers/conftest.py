"""The end-to-end fixtures of tests/host (`start_host`, `watchers`) for provider tests."""

from host.conftest import start_host, watchers

__all__ = ["start_host", "watchers"]
