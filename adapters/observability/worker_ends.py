"""What a committed decision did to workers' tasks, read from its events alone.

A worker's end (lost, left, deleted) and the tasks it released are events of one
decision; so is a claim lease that ran out. Metrics and the lifecycle log both count
and name them from here, with one vocabulary of causes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, NamedTuple

from workerledger.core import (
    WORKER_ENDS,
    Decision,
    TaskFailed,
    TaskRequeued,
    WorkerDeleted,
    WorkerLeft,
    WorkerLost,
)

Cause = Literal["left", "lost", "deleted", "disconnect", "claim_timeout"]
CAUSES: tuple[Cause, ...] = ("left", "lost", "deleted", "disconnect", "claim_timeout")
Outcome = Literal["requeued", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("requeued", "failed")
CLAIM_TIMEOUT_REASON = "claim-timeout"  # TaskRequeued.reason of an expired claim lease


class WorkerEnd(NamedTuple):
    """One worker's end in a decision and the tasks it released there."""

    event: WorkerLost | WorkerLeft | WorkerDeleted
    cause: Cause
    requeued: tuple[str, ...]  # task ids put back to pending
    failed: tuple[str, ...]  # task ids failed by the end

    @property
    def worker_id(self) -> str:
        return self.event.worker_id


class Release(NamedTuple):
    """A task taken from its worker without the worker's report."""

    task_id: str
    worker_id: str
    attempt: int
    outcome: Outcome
    cause: Cause
    reason: str  # the recorded reason (requeue) or error (failure)


def end_cause(event: WorkerLost | WorkerLeft | WorkerDeleted) -> Cause:
    """`disconnect` for a worker lost when its socket dropped with no grace window;
    `lost` for grace expiry and heartbeat timeout; else `left` or `deleted`."""
    if isinstance(event, WorkerLeft):
        return "left"
    if isinstance(event, WorkerDeleted):
        return "deleted"
    return "disconnect" if event.reason.startswith("disconnected") else "lost"


def worker_ends(decision: Decision) -> list[WorkerEnd]:
    """Every worker the decision ended, with the tasks its end released."""
    ends = [event for event in decision.events if isinstance(event, WORKER_ENDS)]
    every = list(releases(decision)) if ends else []
    out: list[WorkerEnd] = []
    for end in ends:
        released = [r for r in every if r.worker_id == end.worker_id]
        requeued = tuple(r.task_id for r in released if r.outcome == "requeued")
        failed = tuple(r.task_id for r in released if r.outcome == "failed")
        out.append(WorkerEnd(end, end_cause(end), requeued, failed))
    return out


def releases(decision: Decision) -> Iterator[Release]:
    """Tasks the decision took from a worker: released by the worker's end (requeued
    or failed) or requeued when their claim lease ran out."""
    ended = {
        event.worker_id: end_cause(event)
        for event in decision.events
        if isinstance(event, WORKER_ENDS)
    }
    for event in decision.events:
        if isinstance(event, TaskRequeued):
            if event.reason == CLAIM_TIMEOUT_REASON:
                cause: Cause | None = "claim_timeout"
            else:
                cause = ended.get(event.worker_id)
            if cause is not None:
                yield Release(
                    event.task_id, event.worker_id, event.attempt, "requeued", cause, event.reason
                )
        elif isinstance(event, TaskFailed) and event.worker_id in ended:
            yield Release(
                event.task_id,
                event.worker_id,
                event.attempt,
                "failed",
                ended[event.worker_id],
                event.error or "",
            )


_RELEASING = (*WORKER_ENDS, TaskRequeued)  # a TaskFailed is a release only with an end


def ends_and_releases(decision: Decision) -> tuple[list[WorkerEnd], list[Release]]:
    """`worker_ends` and `releases` of `decision`; most decisions end no worker and
    release no task, and those are told by one scan of their events."""
    if not any(isinstance(event, _RELEASING) for event in decision.events):
        return [], []
    return worker_ends(decision), list(releases(decision))
