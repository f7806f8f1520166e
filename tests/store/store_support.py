"""Shared helpers of the store tests: a clock, commands, scenarios, child processes."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from support import builders
from support.builders import ALICE, ROOT
from workerledger.adapters.ports import EventStore
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.url import open_store
from workerledger.core import (
    SYSTEM,
    Actor,
    ClaimTask,
    DisconnectWorker,
    DrainWorker,
    JoinJobRoom,
    JoinProviderRoom,
    LeaveJobRoom,
    LeaveProviderRoom,
    RegisterJob,
    RegisterProvider,
    RemoveProvider,
    RemoveWorker,
    RunningTaskPolicy,
    SubmitTask,
    SweepWorker,
    TaskStatus,
    UpdateTask,
)

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)  # test_store_cli asks for history at this moment
at = partial(builders.at, start=T0)
ADMIN = ROOT
ROOM = "lab"
JOB = f"{ROOM}:modifiers:relax"


def register(
    service: LedgerService,
    worker_id: str,
    now: float = 0,
    policy: RunningTaskPolicy = RunningTaskPolicy.FAIL,
) -> None:
    service.execute(
        RegisterJob(
            now=at(now), actor=ALICE, room_id=ROOM, category="modifiers", name="relax",
            worker_id=worker_id, create_worker=True, on_worker_lost=policy,
        )
    )  # fmt: skip


def submit(service: LedgerService, task_id: str, now: float = 0) -> None:
    service.execute(
        SubmitTask(now=at(now), actor=ALICE, task_id=task_id, job_name=JOB, room_id=ROOM)
    )


def claim(service: LedgerService, worker_id: str, task_id: str, now: float = 0) -> None:
    service.execute(ClaimTask(now=at(now), actor=ALICE, task_id=task_id, worker_id=worker_id))


def claim_next(service: LedgerService, worker_id: str, now: float = 0) -> str | None:
    claimed = service.claim_next(
        ClaimTask(now=at(now), actor=ALICE, task_id="", worker_id=worker_id)
    )
    return None if claimed is None else claimed.task_id


def report(
    service: LedgerService, task_id: str, status: TaskStatus, now: float = 0, **extra: Any
) -> None:
    service.execute(UpdateTask(now=at(now), actor=ALICE, task_id=task_id, status=status, **extra))


def join(service: LedgerService, worker_id: str, sid: str, now: float = 0) -> None:
    service.execute(
        JoinJobRoom(now=at(now), actor=ALICE, worker_id=worker_id, sid=sid, job_name=JOB)
    )


def disconnect(
    service: LedgerService, worker_id: str, sid: str, now: float, grace: float = 30
) -> None:
    service.execute(
        DisconnectWorker(
            now=at(now), actor=SYSTEM, worker_id=worker_id, sid=sid, reason="transport close",
            grace_seconds=grace,
        )
    )  # fmt: skip


def sweep(service: LedgerService, worker_id: str, now: float) -> None:
    service.execute(SweepWorker(now=at(now), worker_id=worker_id, heartbeat_timeout_seconds=60))


def remove(service: LedgerService, worker_id: str, now: float, actor: Actor = ALICE) -> None:
    service.execute(RemoveWorker(now=at(now), actor=actor, worker_id=worker_id))


def lifecycle(service: LedgerService, n: int, now: float = 0) -> int:
    """One worker's life: register, join, 2 tasks (one completed, one requeued), lost.

    Returns the number of commands issued.
    """
    worker, sid = f"w{n}", f"sid{n}"
    register(service, worker, now)
    join(service, worker, sid, now)
    submit(service, f"t{n}a", now)
    submit(service, f"t{n}b", now)
    claim(service, worker, f"t{n}a", now)
    report(service, f"t{n}a", TaskStatus.RUNNING, now)
    report(service, f"t{n}a", TaskStatus.COMPLETED, now)
    claim(service, worker, f"t{n}b", now)
    disconnect(service, worker, sid, now + 1, grace=0)
    return 9


def rich_scenario(service: LedgerService) -> None:
    """Commands that produce every durable event type at least once."""
    register(service, "w1", 0, RunningTaskPolicy.FAIL)
    register(service, "w2", 1)
    join(service, "w1", "s1", 2)
    join(service, "w1", "s1b", 3)  # ConnectionAttached with previous_sid
    providers(service, 3)
    for i in range(5):
        submit(service, f"t{i}", 4)
    claim(service, "w1", "t0", 5)
    report(service, "t0", TaskStatus.RUNNING, 6, worker_id="w1", attempt=1)
    report(service, "t0", TaskStatus.COMPLETED, 7, worker_id="w1", attempt=1)
    claim(service, "w1", "t1", 8)
    report(service, "t1", TaskStatus.FAILED, 9, error="boom")
    report(service, "t2", TaskStatus.CANCELLED, 10)
    claim(service, "w1", "t3", 11)
    claim(service, "w1", "t4", 11)
    report(service, "t4", TaskStatus.RUNNING, 12)
    disconnect(service, "w1", "s1b", 13, grace=30)
    join(service, "w1", "s1c", 14)  # WorkerResumed
    disconnect(service, "w1", "s1c", 15, grace=30)
    sweep(service, "w1", 100)  # lost: t3 requeued (claimed), t4 failed (running)
    claim(service, "w2", "t3", 101)
    try:  # a stale report by the lost worker is refused and recorded
        report(service, "t3", TaskStatus.COMPLETED, 102, worker_id="w1", attempt=1)
    except Exception as error:
        assert type(error).__name__ == "StaleAttemptError"
    register(service, "w3", 103)
    join(service, "w3", "s3", 104)
    service.execute(LeaveJobRoom(now=at(105), actor=ALICE, worker_id="w3", sid="s3", job_name=JOB))
    remove(service, "w3", 106)  # WorkerLeft
    remove(service, "w2", 107, actor=ADMIN)  # WorkerDeleted (requeues t3 again)
    internal_task(service, 108)
    drained(service, 109)


PROVIDER = f"{ROOM}:filesystem:disk"


def providers(service: LedgerService, now: float) -> None:
    """Every provider event: register, join and leave its room, move one to another
    worker, delete it; w1's provider `disk` stays until w1's end removes it."""

    def provider(name: str, worker_id: str, provider_id: str) -> RegisterProvider:
        return RegisterProvider(
            now=at(now), actor=ALICE, provider_id=provider_id, room_id=ROOM,
            category="filesystem", name=name, worker_id=worker_id,
        )  # fmt: skip

    service.execute(provider("disk", "w1", "p1"))
    rooms = {"actor": ALICE, "worker_id": "w1", "sid": "s1b", "provider_name": PROVIDER}
    service.execute(JoinProviderRoom(now=at(now), **rooms))
    service.execute(LeaveProviderRoom(now=at(now), **rooms))
    service.execute(JoinProviderRoom(now=at(now), **rooms))
    service.execute(provider("frames", "w1", "p2"))
    service.execute(provider("frames", "w2", "p3"))  # moved: WorkerProviderUnlinked
    frames = f"{ROOM}:filesystem:frames"
    service.execute(
        RemoveProvider(now=at(now), actor=ALICE, provider_name=frames, provider_id="p2")
    )


def drained(service: LedgerService, now: float) -> None:
    """An operator drain: w4 runs t5, is drained (WorkerDrainRequested), completes t5
    and so ends (WorkerLeft "drained: ...") in the decision of that report."""
    register(service, "w4", now)
    submit(service, "t5", now)
    claim(service, "w4", "t5", now)
    report(service, "t5", TaskStatus.RUNNING, now)
    service.execute(
        DrainWorker(now=at(now), actor=ADMIN, worker_id="w4", reason="deploy", deadline_seconds=60)
    )
    report(service, "t5", TaskStatus.COMPLETED, now + 1)


def internal_task(service: LedgerService, now: float) -> None:
    """A task of an `@internal` job: claimed by the server (TaskDispatched)."""
    service.execute(
        RegisterJob(
            now=at(now), actor=ADMIN, room_id="@internal", category="modifiers", name="calc",
            worker_id="w9", create_worker=True,
        )
    )  # fmt: skip
    service.execute(
        SubmitTask(
            now=at(now), actor=ALICE, task_id="t9", job_name="@internal:modifiers:calc",
            room_id=ROOM,
        )
    )  # fmt: skip


def claim_all(url: str, worker_id: str, barrier: Any, out: Any) -> None:
    """Child process: claim from the shared queue until it is empty."""
    store = open_store(url)
    service = LedgerService(store, max_attempts=200)
    barrier.wait(timeout=60)
    claimed: list[str] = []
    while (task_id := claim_next(service, worker_id, 1)) is not None:
        claimed.append(task_id)
    out.put((worker_id, claimed, service.conflicts))
    store.close()


def all_events(store: EventStore) -> list[Any]:
    out: list[Any] = []
    while batch := store.read(out[-1].position if out else 0, 1000):
        out += batch
    return out
