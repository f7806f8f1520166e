"""Fixtures of the fault tests: one real host per module, and the matrix printed at the
end of the run (route x outcome, for the record)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .fault_host import FaultHost
from .matrix import Row, format_matrix

MEASURED: list[Row] = []


@pytest.fixture(scope="module")
def fault_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultHost]:
    host = FaultHost(Path(tmp_path_factory.mktemp("faults"))).start()
    yield host
    host.stop()


@pytest.fixture
def measured() -> list[Row]:
    return MEASURED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.section("lost-answer matrix (SDK worker, one host on SQLite)")
        for line in format_matrix(MEASURED):
            terminalreporter.write_line(line)
