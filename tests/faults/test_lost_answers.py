"""Lost answers on every write route: the server handles the request, the SDK never sees
the answer. Every task must still run exactly once and end as expected, none may be
stuck or duplicated, and the worker must not give a task up by mistake.

Rows: the answer of the first matching request is lost, or of every other one (each
logical call then loses its first answer, and the retry gets through).
"""

from __future__ import annotations

import pytest

from .fault_host import FaultHost
from .matrix import ROUTES, VARIANTS, Row, run_row


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("route", list(ROUTES))
def test_a_lost_answer_neither_strands_nor_duplicates_a_task(
    fault_host: FaultHost, measured: list[Row], route: str, variant: str
) -> None:
    row = run_row(fault_host, route, variant)
    measured.append(row)
    assert row.lost >= 1, "the fault never fired: the row tested nothing"
    assert row.submitted == row.tasks, f"{row.duplicates} duplicate task(s)"
    assert row.stuck == 0, f"{row.stuck} task(s) not terminal"
    assert row.wrong == 0, f"{row.wrong} task(s) ended in another status"
    assert row.executions == row.submitted and row.max_runs == 1, "not executed exactly once"
    assert row.cancelled_claims == 0, "a claim ended cancelled"
    # each task claimed once: a lost claim answer is replayed, not left to the lease
    assert row.reclaims == 0, f"{row.reclaims} re-claim(s)"
    assert row.removed, "the worker did not count itself removed on leaving"
    assert row.give_ups == [], row.give_ups
