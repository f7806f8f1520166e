"""The given-events and commands of the core and store tests, in one place.

The core is tested by folding events into a state and handling one command against it;
these builders write those events and commands with the defaults most tests share
(job `room1:modifiers:relax`, worker `w1` owned by alice, task `t1` submitted by bob,
every event at T0), so that a test spells out only what matters to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from workerledger.core import (
    Actor,
    Command,
    DomainError,
    Emit,
    Event,
    LedgerState,
    RunningTaskPolicy,
    SubmitTask,
    TaskState,
    TaskStatus,
    UpdateTask,
    fold,
    handle,
    task_status_payload,
)
from workerledger.core import events as ev

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALICE = Actor(user="alice")  # owns the workers
BOB = Actor(user="bob")  # submits the tasks
CAROL = Actor(user="carol")  # neither
ROOT = Actor(user="root", superuser=True)
ROOM = "room1"
JOB = f"{ROOM}:modifiers:relax"
OTHER_JOB = f"{ROOM}:analysis:plot"


def at(seconds: float, start: datetime = T0) -> datetime:
    """The test clock: `seconds` after `start`."""
    return start + timedelta(seconds=seconds)


# --- events ---------------------------------------------------------------------------


def job(
    name: str = JOB,
    *,
    schema: dict[str, Any] | None = None,
    policy: RunningTaskPolicy = RunningTaskPolicy.FAIL,
    max_losses: int = 3,
) -> ev.JobRegistered:
    room, category, short = name.split(":")
    return ev.JobRegistered(
        job_name=name, room_id=room, category=category, name=short, schema=schema or {},
        on_worker_lost=policy, max_worker_losses=max_losses, by="alice", at=at(0),
    )  # fmt: skip


def worker(worker_id: str = "w1", user: str = "alice", jobs: Sequence[str] = (JOB,)) -> list[Event]:
    """A registered worker linked to `jobs` (which must be registered before it)."""
    out: list[Event] = [ev.WorkerRegistered(worker_id=worker_id, user=user, at=at(0))]
    for name in jobs:
        out.append(ev.WorkerJobLinked(worker_id=worker_id, job_name=name, at=at(0)))
        out.append(ev.JobWorkerLinked(job_name=name, worker_id=worker_id, at=at(0)))
    return out


def connected(
    worker_id: str = "w1",
    sid: str = "s1",
    jobs: Sequence[str] = (JOB,),
    previous: str | None = None,
) -> list[Event]:
    """The worker's connection `sid` attached and in the rooms of `jobs`."""
    out: list[Event] = [
        ev.ConnectionAttached(worker_id=worker_id, sid=sid, previous_sid=previous, at=at(0))
    ]
    out += [ev.RoomJoined(worker_id=worker_id, sid=sid, job_name=name, at=at(0)) for name in jobs]
    return out


def submitted(task: str = "t1", job: str = JOB) -> ev.TaskSubmitted:
    return ev.TaskSubmitted(task_id=task, job_name=job, room_id=ROOM, by="bob", at=at(0))


def claimed(
    task: str = "t1", worker_id: str = "w1", attempt: int = 1, *, running: bool = False
) -> list[Event]:
    out: list[Event] = [
        ev.TaskClaimed(task_id=task, worker_id=worker_id, attempt=attempt, at=at(0)),
        ev.WorkerTaskAssigned(worker_id=worker_id, task_id=task, attempt=attempt, at=at(0)),
    ]
    if running:
        out.append(started(task, worker_id, attempt))
    return out


def started(task: str = "t1", worker_id: str = "w1", attempt: int = 1) -> ev.TaskStarted:
    return ev.TaskStarted(task_id=task, worker_id=worker_id, attempt=attempt, at=at(0))


def requeued(task: str = "t1", worker_id: str = "w1", attempt: int = 1) -> list[Event]:
    """`worker_id` is lost while holding a claimed `task`."""
    why = "heartbeat timeout"
    return [
        ev.WorkerLost(worker_id=worker_id, reason=why, at=at(0)),
        ev.TaskRequeued(
            task_id=task,
            worker_id=worker_id,
            attempt=attempt,
            reason=why,
            was_running=False,
            at=at(0),
        ),
        ev.JobWorkerUnlinked(job_name=JOB, worker_id=worker_id, reason=why, at=at(0)),
    ]


PENDING = [job(), *worker(), submitted()]
CLAIMED = [*PENDING, *claimed()]
RUNNING = [*CLAIMED, started()]


# --- commands -------------------------------------------------------------------------


def submit(task: str = "t1", job_name: str = JOB, room: str = ROOM) -> SubmitTask:
    return SubmitTask(
        now=at(3), actor=BOB, task_id=task, job_name=job_name, room_id=room, payload={"n": 1}
    )


def report(
    status: TaskStatus,
    actor: Actor = ALICE,
    *,
    worker_id: str | None = "w1",
    attempt: int | None = 1,
    error: str | None = None,
) -> UpdateTask:
    return UpdateTask(
        now=at(9), actor=actor, task_id="t1", status=status, error=error,
        worker_id=worker_id, attempt=attempt,
    )  # fmt: skip


# --- emissions and refusals -----------------------------------------------------------


def status_event(task: TaskState) -> Emit:
    return Emit(event="task_status_event", data=task_status_payload(task), to=f"room:{ROOM}")


def task_available(task: str = "t1", job: str = JOB) -> Emit:
    data = {"job_name": job, "room_id": ROOM, "task_id": task}
    return Emit(event="task_available", data=data, to=f"jobs:{job}")


def rejects(state: LedgerState, command: Command, error: type[DomainError]) -> DomainError:
    """The command raises `error` and leaves `state` as it was; what the refusal records
    (a stale report) changes no state either."""
    before = state.model_copy(deep=True)
    with pytest.raises(error) as info:
        handle(state, command)
    assert state == before
    assert fold(info.value.record, state) == state
    return info.value
