"""The end-to-end fixtures of tests/host (`start_host`, `watchers`) for observability tests."""

from host.conftest import start_host, watchers

__all__ = ["start_host", "watchers"]
