"""The end-to-end fixtures of tests/host (`start_host`, `spawn_worker`) for console tests."""

from host.conftest import spawn_worker, start_host

__all__ = ["spawn_worker", "start_host"]
