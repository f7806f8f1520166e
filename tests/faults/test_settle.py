"""The read-back verdict on a report the server could not place (client/reports.py):
what the task as stored says about a report whose answer, or acceptance, is in doubt."""

from __future__ import annotations

import pytest
from workerledger.client import TaskInfo
from workerledger.client.reports import Report, Verdict, judge

ME, OTHER = "worker-me", "worker-other"


def stored(
    status: str, worker: str | None = ME, attempt: int = 2, error: str | None = None
) -> TaskInfo:
    return TaskInfo(
        id="t", job_name="r:modifiers:J", room_id="r", status=status,
        worker_id=worker, attempt=attempt, error=error,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("report", "task", "verdict"),
    [
        # the report landed although its answer was lost
        (Report("t", "running", None, ME, 2), stored("running"), Verdict.PLACED),
        (Report("t", "completed", None, ME, 2), stored("completed"), Verdict.PLACED),
        (Report("t", "failed", "boom", ME, 2), stored("failed", error="boom"), Verdict.PLACED),
        # still ours, not there yet: send it again
        (Report("t", "running", None, ME, 2), stored("claimed"), Verdict.RESEND),
        (Report("t", "completed", None, ME, 2), stored("running"), Verdict.RESEND),
        # cancelled meanwhile, whoever did it
        (Report("t", "running", None, ME, 2), stored("cancelled"), Verdict.CANCELLED),
        (Report("t", "completed", None, ME, 2), stored("cancelled", OTHER, 3), Verdict.CANCELLED),
        # no longer this claim's: requeued (lease, lost worker), re-claimed, ended otherwise
        (Report("t", "running", None, ME, 2), stored("pending", None), Verdict.STALE),
        (Report("t", "running", None, ME, 2), stored("claimed", OTHER, 3), Verdict.STALE),
        (Report("t", "running", None, ME, 2), stored("claimed", ME, 3), Verdict.STALE),
        (Report("t", "completed", None, ME, 2), stored("failed"), Verdict.STALE),
        (Report("t", "failed", "mine", ME, 2), stored("failed", error="lost"), Verdict.STALE),
        # a submitter's cancel carries no claim: only the status counts
        (Report("t", "cancelled", "no", None, None), stored("cancelled"), Verdict.PLACED),
        (Report("t", "cancelled", "no", None, None), stored("completed"), Verdict.STALE),
    ],
)
def test_read_back_verdict(report: Report, task: TaskInfo, verdict: Verdict) -> None:
    assert judge(report, task) is verdict
