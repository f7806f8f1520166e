"""Fixtures of the client tests: the real host (`workerledger serve` subprocess)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_support import Host


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    server = Host(tmp_path_factory.mktemp("host"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_host(tmp_path: Path) -> Iterator[Host]:
    server = Host(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def room() -> str:
    """A room of its own per test, so tests on one host never see each other's jobs."""
    return f"t{uuid.uuid4().hex[:10]}"
