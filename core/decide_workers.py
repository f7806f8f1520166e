"""Decisions about workers: registration, liveness, connections and endings.

Rules (everything that ends a worker goes through `end_worker`):
1. A worker's identity is its server-assigned id; commands naming an unknown or
   ended worker raise WorkerNotFoundError (a 404 tells a client to re-register).
2. Only the owner heartbeats, claims and joins rooms for a worker (superusers are
   not exempt); the owner or a superuser may remove it.
3. A connection (sid) speaks for a worker once it joins a job room with its id. A
   newer connection replaces the older one; events naming an older sid are stale
   and never tear down the newer session.
4. A dropped connection marks the worker DISCONNECTED until `now + grace`; a join
   from a new connection before the deadline resumes it with its claims intact.
   With grace 0 the worker is lost at once.
5. Ending a worker (lost, left, deleted) releases every task it holds exactly once:
   CLAIMED -> requeued (no work was done); RUNNING -> failed, or requeued when the
   job's policy says so and the task has losses left in its budget.
6. Sweeps are idempotent: a worker that already ended, is alive, or is inside its
   grace window yields no events.
7. A registration that creates its worker from an Idempotency-Key is bound to its
   request: a resend of the same request links the same worker, another request
   under the same key is refused (IdempotencyKeyReusedError).
8. A join to a room the worker's current connection already sits in records nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from . import commands as c
from . import errors as e
from . import events as ev
from .model import (
    GLOBAL_ROOM,
    INTERNAL_ROOM,
    Actor,
    RunningTaskPolicy,
    TaskStatus,
    WorkerStatus,
    is_valid_room_id,
    job_full_name,
)
from .state import JobState, LedgerState, TaskState, WorkerState


class IncompleteStateError(LookupError):
    """The caller folded too little state for this decision (a bug in the caller)."""


def live_worker(state: LedgerState, worker_id: str) -> WorkerState:
    worker = state.workers.get(worker_id)
    if worker is None or worker.is_ended:
        raise e.WorkerNotFoundError(f"worker {worker_id} not found")
    return worker


def require_owner(actor: Actor, worker: WorkerState) -> None:
    if actor.user != worker.user:
        raise e.ForbiddenError(f"worker {worker.id} belongs to another user")


def register_worker(state: LedgerState, cmd: c.RegisterWorker) -> list[ev.Event]:
    if cmd.worker_id in state.workers:
        raise e.DuplicateIdError(f"worker {cmd.worker_id} already exists")
    return [ev.WorkerRegistered(worker_id=cmd.worker_id, user=cmd.actor.user, at=cmd.now)]


def register_job(state: LedgerState, cmd: c.RegisterJob) -> list[ev.Event]:
    if not is_valid_room_id(cmd.room_id):
        raise e.InvalidRoomIdError(f"invalid room id {cmd.room_id!r}")
    if cmd.room_id in (GLOBAL_ROOM, INTERNAL_ROOM) and not cmd.actor.superuser:
        raise e.ForbiddenError(f"only a superuser may register jobs in {cmd.room_id}")
    if cmd.category not in cmd.allowed_categories:
        raise e.InvalidCategoryError(f"category {cmd.category!r} is not allowed")
    out: list[ev.Event] = []
    worker = state.workers.get(cmd.worker_id)
    if worker is None and cmd.create_worker:
        out.append(
            ev.WorkerRegistered(
                worker_id=cmd.worker_id,
                user=cmd.actor.user,
                request_hash=cmd.request_hash,
                at=cmd.now,
            )
        )
        linked_jobs: frozenset[str] = frozenset()
    else:
        worker = live_worker(state, cmd.worker_id)
        if worker.user != cmd.actor.user:
            raise e.WorkerNotFoundError(f"worker {cmd.worker_id} not found")
        _require_same_request(cmd, worker)
        linked_jobs = worker.jobs
    full_name = job_full_name(cmd.room_id, cmd.category, cmd.name)
    job = state.jobs.get(full_name)
    if job is None or job.schema_ != cmd.schema_:
        if job is not None and job.workers - {cmd.worker_id}:
            raise e.SchemaConflictError(f"job {full_name} is active with another schema")
        out.append(_job_registered(cmd, full_name))
    if full_name not in linked_jobs:
        out.append(ev.WorkerJobLinked(worker_id=cmd.worker_id, job_name=full_name, at=cmd.now))
    if job is None or cmd.worker_id not in job.workers:
        out.append(ev.JobWorkerLinked(job_name=full_name, worker_id=cmd.worker_id, at=cmd.now))
    return out


def _require_same_request(cmd: c.RegisterJob, worker: WorkerState) -> None:
    keyed = cmd.create_worker and cmd.request_hash is not None
    if keyed and worker.request_hash is not None and worker.request_hash != cmd.request_hash:
        raise e.IdempotencyKeyReusedError(
            f"the Idempotency-Key that registered worker {worker.id} was sent again "
            "with a different request"
        )


def _job_registered(cmd: c.RegisterJob, full_name: str) -> ev.JobRegistered:
    return ev.JobRegistered(
        job_name=full_name,
        room_id=cmd.room_id,
        category=cmd.category,
        name=cmd.name,
        schema=cmd.schema_,
        on_worker_lost=cmd.on_worker_lost,
        max_worker_losses=cmd.max_worker_losses,
        by=cmd.actor.user,
        at=cmd.now,
    )


def record_heartbeat(state: LedgerState, cmd: c.RecordHeartbeat) -> list[ev.Event]:
    worker = live_worker(state, cmd.worker_id)
    require_owner(cmd.actor, worker)
    return [ev.HeartbeatRecorded(worker_id=worker.id, at=cmd.now)]


def join_job_room(state: LedgerState, cmd: c.JoinJobRoom) -> list[ev.Event]:
    worker = live_worker(state, cmd.worker_id)
    require_owner(cmd.actor, worker)
    if cmd.job_name not in state.jobs:
        raise e.JobNotFoundError(f"job {cmd.job_name} not found")
    if cmd.job_name not in worker.jobs:
        raise e.JobNotLinkedError(f"worker {worker.id} is not registered for {cmd.job_name}")
    out: list[ev.Event] = []
    rooms = worker.rooms
    if worker.sid != cmd.sid:
        out.append(
            ev.ConnectionAttached(
                worker_id=worker.id, sid=cmd.sid, previous_sid=worker.sid, at=cmd.now
            )
        )
        rooms = frozenset()
    if worker.status is WorkerStatus.DISCONNECTED:
        out.append(ev.WorkerResumed(worker_id=worker.id, sid=cmd.sid, at=cmd.now))
    if cmd.job_name not in rooms:
        out.append(
            ev.RoomJoined(worker_id=worker.id, sid=cmd.sid, job_name=cmd.job_name, at=cmd.now)
        )
    return out


def leave_job_room(state: LedgerState, cmd: c.LeaveJobRoom) -> list[ev.Event]:
    worker = live_worker(state, cmd.worker_id)
    require_owner(cmd.actor, worker)
    if worker.sid != cmd.sid:
        raise e.StaleSessionError(f"connection {cmd.sid} does not speak for {worker.id}")
    if cmd.job_name not in worker.rooms:
        raise e.NotInRoomError(f"worker {worker.id} is not in the room of {cmd.job_name}")
    return [ev.RoomLeft(worker_id=worker.id, sid=cmd.sid, job_name=cmd.job_name, at=cmd.now)]


def disconnect_worker(state: LedgerState, cmd: c.DisconnectWorker) -> list[ev.Event]:
    worker = live_worker(state, cmd.worker_id)
    if worker.sid != cmd.sid:
        raise e.StaleSessionError(f"connection {cmd.sid} is not the current one of {worker.id}")
    deadline = cmd.now + timedelta(seconds=cmd.grace_seconds)
    out: list[ev.Event] = [
        ev.WorkerDisconnected(
            worker_id=worker.id,
            sid=cmd.sid,
            reason=cmd.reason,
            grace_deadline=deadline,
            at=cmd.now,
        )
    ]
    if cmd.grace_seconds == 0:
        lost = ev.WorkerLost(worker_id=worker.id, reason=f"disconnected ({cmd.reason})", at=cmd.now)
        out += end_worker(state, worker, lost)
    return out


def sweep_worker(state: LedgerState, cmd: c.SweepWorker) -> list[ev.Event]:
    worker = state.workers.get(cmd.worker_id)
    if worker is None:
        raise e.WorkerNotFoundError(f"worker {cmd.worker_id} not found")
    reason = sweep_reason(worker, cmd.now, cmd.heartbeat_timeout_seconds)
    if reason is None:
        return []
    return end_worker(state, worker, ev.WorkerLost(worker_id=worker.id, reason=reason, at=cmd.now))


def sweep_reason(worker: WorkerState, now: datetime, timeout: float) -> str | None:
    """Why a sweep at `now` ends `worker` ("grace expired", "heartbeat timeout"), or None."""
    if worker.is_ended:
        return None
    deadline = worker.grace_deadline
    if worker.status is WorkerStatus.DISCONNECTED and deadline is not None:
        return "grace expired" if now >= deadline else None  # the window protects claims
    if now - worker.last_heartbeat > timedelta(seconds=timeout):
        return "heartbeat timeout"
    return None


def remove_worker(state: LedgerState, cmd: c.RemoveWorker) -> list[ev.Event]:
    worker = live_worker(state, cmd.worker_id)
    end: ev.WorkerLeft | ev.WorkerDeleted
    if cmd.actor.user == worker.user:
        end = ev.WorkerLeft(worker_id=worker.id, by=cmd.actor.user, at=cmd.now)
    elif cmd.actor.superuser:
        end = ev.WorkerDeleted(worker_id=worker.id, by=cmd.actor.user, at=cmd.now)
    else:
        raise e.ForbiddenError(f"worker {worker.id} belongs to another user")
    return end_worker(state, worker, end)


def end_worker(
    state: LedgerState, worker: WorkerState, end: ev.WorkerLost | ev.WorkerLeft | ev.WorkerDeleted
) -> list[ev.Event]:
    """The end event, one release per held task, one unlink per linked job."""
    reason = (
        end.reason if isinstance(end, ev.WorkerLost) else end.type.removeprefix("Worker").lower()
    )
    out: list[ev.Event] = [end]
    for task_id in sorted(worker.tasks):
        task = state.tasks.get(task_id)
        if task is None:
            raise IncompleteStateError(f"task {task_id} held by {worker.id} was not loaded")
        out.append(_release(task, state.jobs.get(task.job_name), worker, reason, end.at))
    for job_name in sorted(worker.jobs):
        job = state.jobs.get(job_name)
        if job is not None and worker.id in job.workers:
            out.append(
                ev.JobWorkerUnlinked(
                    job_name=job_name, worker_id=worker.id, reason=reason, at=end.at
                )
            )
    return out


def _release(
    task: TaskState, job: JobState | None, worker: WorkerState, reason: str, now: datetime
) -> ev.Event:
    requeue = task.status is TaskStatus.CLAIMED or (
        job is not None
        and job.on_worker_lost is RunningTaskPolicy.REQUEUE
        and task.losses < job.max_worker_losses
    )
    if requeue:
        return ev.TaskRequeued(
            task_id=task.id,
            worker_id=worker.id,
            attempt=task.attempt,
            reason=reason,
            was_running=task.status is TaskStatus.RUNNING,
            at=now,
        )
    error = f"worker {reason}"
    if job is not None and job.on_worker_lost is RunningTaskPolicy.REQUEUE:
        error = f"worker {reason}; lost {task.losses + 1} times, budget exhausted"
    return ev.TaskFailed(
        task_id=task.id,
        worker_id=worker.id,
        attempt=task.attempt,
        error=error,
        by="@system",
        at=now,
    )
