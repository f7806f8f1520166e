"""Placing a status report when answers can be lost.

A report (`PATCH /tasks/{id}`) whose answer is lost may have been stored. Resending it
is safe: the host answers a repeat of the stored status from the same claim with 200.
A host that refuses the repeat instead (409 `invalid-task-transition`, "running to
running", as zndraw-joblib 0.1.7 hosts do), a refusal that follows an ambiguous
failure, and a report still unplaced when the retries run out are settled by reading
the task back rather than by giving the task up:

- already in the reported status, held by this claim (worker and attempt): placed;
- held by this claim in an earlier status: resend;
- cancelled: the task was cancelled (`TaskCancelledError`);
- anything else (another worker or attempt, requeued, ended otherwise): stale
  (`StaleAttemptError`), the caller drops the task as for a stale refusal.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass

from .api import Rest
from .errors import ServerError, ServerUnavailableError, StaleAttemptError, TaskCancelledError
from .models import TaskInfo
from .retry import OutageLog, backoff_delay, retry_transient

INVALID_TRANSITION = "invalid-task-transition"
# Progress of a task; terminal statuses all rank last.
RANK = {"pending": 0, "claimed": 1, "running": 2}
SETTLE_READ_SECONDS = 5.0  # how long a read-back may wait for the server on its own


@dataclass(frozen=True)
class Report:
    task_id: str
    status: str
    error: str | None = None
    worker_id: str | None = None  # None: not a worker's report (a submitter's cancel)
    attempt: int | None = None


class Verdict(enum.Enum):
    PLACED = "placed"
    RESEND = "resend"
    CANCELLED = "cancelled"
    STALE = "stale"


def judge(report: Report, info: TaskInfo) -> Verdict:
    """What the task as read back says about `report` (pure; see the module docstring)."""
    if report.worker_id is None:
        return Verdict.PLACED if info.status == report.status else Verdict.STALE
    ours = info.worker_id == report.worker_id and (
        report.attempt is None or info.attempt is None or info.attempt == report.attempt
    )
    if ours and info.status == report.status:
        same_error = report.status != "failed" or report.error is None
        return Verdict.PLACED if same_error or info.error == report.error else Verdict.STALE
    if info.status == "cancelled":
        return Verdict.CANCELLED
    if ours and RANK.get(info.status, 3) < RANK.get(report.status, 3):
        return Verdict.RESEND
    return Verdict.STALE


def place(
    rest: Rest,
    report: Report,
    *,
    stop: threading.Event,
    deadline_seconds: float,
    outage: OutageLog,
) -> TaskInfo:
    """Send `report` until the server holds it (returns the task as then stored).

    Raises `StaleAttemptError` or `TaskCancelledError` when the task is no longer
    this claim's to report, another `ServerError` for a plain refusal, and
    `ServerUnavailableError` when the server stayed unreachable for `deadline_seconds`.
    """
    what = f"report task {report.task_id} {report.status}"
    deadline = time.monotonic() + deadline_seconds
    ambiguous = False  # an earlier try of this report may have been stored
    tries = 0
    while True:
        try:
            info = rest.update_task(
                report.task_id,
                report.status,
                error=report.error,
                worker_id=report.worker_id,
                attempt=report.attempt,
            )
        except ServerUnavailableError as failure:
            outage.failed(what, failure)
            ambiguous = ambiguous or failure.ambiguous
            last: Exception = failure
        except ServerError as refusal:
            if refusal.status != 409 or not (refusal.code == INVALID_TRANSITION or ambiguous):
                raise
            info = _read_back(rest, report, stop, outage)
            if _verdict(report, info, refusal) is Verdict.PLACED:
                return info
            last = refusal
        else:
            outage.recovered()
            return info
        delay = backoff_delay(tries)
        tries += 1
        if time.monotonic() + delay > deadline or stop.wait(delay):
            if ambiguous:  # the report may have landed although no answer said so
                info = _read_back(rest, report, stop, outage)
                if _verdict(report, info, last) is Verdict.PLACED:
                    return info
            raise last


def _read_back(rest: Rest, report: Report, stop: threading.Event, outage: OutageLog) -> TaskInfo:
    return retry_transient(
        lambda: rest.get_task(report.task_id),
        stop=stop,
        deadline_seconds=SETTLE_READ_SECONDS,
        what=f"read back task {report.task_id}",
        outage=outage,
    )


def _verdict(report: Report, info: TaskInfo, cause: Exception) -> Verdict:
    """Judge, and raise for the verdicts that end the report."""
    verdict = judge(report, info)
    if verdict is Verdict.CANCELLED:
        raise TaskCancelledError(info.error or "cancelled on the server") from cause
    if verdict is Verdict.STALE:
        detail = (
            f"task {info.id} is {info.status} at attempt {info.attempt} held by "
            f"{info.worker_id}; the {report.status} report for attempt {report.attempt} "
            f"by {report.worker_id} no longer applies"
        )
        raise StaleAttemptError(409, "stale-attempt", detail) from cause
    return verdict
