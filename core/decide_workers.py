"""Decisions about workers: registration, liveness, connections and endings.

Rules (everything that ends a worker goes through `end_worker`):
1. A worker's identity is its server-assigned id; commands naming an unknown or
   ended worker raise WorkerNotFoundError (a 404 tells a client to re-register).
2. Only the owner heartbeats, claims and joins rooms for a worker (superusers are
   not exempt); the owner or a superuser may remove or drain it.
3. A connection (sid) speaks for a worker once it joins a job room with its id. A
   newer connection replaces the older one; events naming an older sid are stale
   and never tear down the newer session.
4. A dropped connection marks the worker DISCONNECTED until `now + grace`; a join
   from a new connection before the deadline resumes it with its claims intact.
   With grace 0 the worker is lost at once.
5. Ending a worker (lost, left, deleted) releases every task it holds exactly once:
   CLAIMED -> requeued (no work was done); RUNNING -> failed ("Worker disconnected
   (worker <reason>)"), or requeued when the job's policy says so and the task has
   losses left in its budget. In the same decision its job links are cut and its
   providers removed.
6. Sweeps are idempotent: a worker that already ended, is alive, or is inside its
   grace window (and before its drain deadline, if any) yields no events.
7. A registration that creates its worker from an Idempotency-Key is bound to its
   request: a resend of the same request links the same worker, another request
   under the same key is refused (IdempotencyKeyReusedError).
8. A join to a room the worker's current connection already sits in records nothing.
9. The owner or a superuser may drain a live worker (a second drain records nothing).
   From then on it claims nothing (WorkerDrainingError) and joins no job room (a join
   only attaches the connection or resumes it); its connection leaves every job room.
   It ends (WorkerLeft by the drainer, reason "drained: ...") in the decision after
   which it holds nothing: the drain itself if it is idle, else the report, cancel,
   requeue or lease expiry that releases its last task. Past the drain's deadline a
   sweep ends it (lost, "drain deadline passed"), releasing what it holds by rule 5.
10. A removal may carry the operator's reason; the end event records it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from . import commands as c
from . import errors as e
from . import events as ev
from .model import (
    GLOBAL_ROOM,
    INTERNAL_ROOM,
    SYSTEM,
    WORKER_ENDED_ERROR,
    Actor,
    RunningTaskPolicy,
    TaskStatus,
    WorkerStatus,
    invalid_room_detail,
    is_valid_room_id,
    job_full_name,
)
from .state import JobState, LedgerState, TaskState, WorkerState

DRAIN_DEADLINE_PASSED = "drain deadline passed"


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
        raise e.InvalidRoomIdError(invalid_room_detail(cmd.room_id))
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
    out = attach_connection(worker, cmd.sid, cmd.now)
    if worker.draining:
        return out  # rule 9: no job room, so `task_available` never wakes it
    if cmd.job_name not in (worker.rooms if not out else frozenset()):
        out.append(
            ev.RoomJoined(worker_id=worker.id, sid=cmd.sid, job_name=cmd.job_name, at=cmd.now)
        )
    return out


def attach_connection(worker: WorkerState, sid: str, now: datetime) -> list[ev.Event]:
    """A join from `sid`: the connection speaks for the worker from now on (rule 3),
    and a disconnected worker resumes (rule 4). Empty when `sid` already speaks for it;
    otherwise the worker's rooms start empty for the new connection."""
    out: list[ev.Event] = []
    if worker.sid != sid:
        out.append(
            ev.ConnectionAttached(worker_id=worker.id, sid=sid, previous_sid=worker.sid, at=now)
        )
    if worker.status is WorkerStatus.DISCONNECTED:
        out.append(ev.WorkerResumed(worker_id=worker.id, sid=sid, at=now))
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
    """Why a sweep at `now` ends `worker` ("drain deadline passed", "grace expired",
    "heartbeat timeout"), or None."""
    if worker.is_ended:
        return None
    if worker.drain_deadline is not None and now >= worker.drain_deadline:
        return DRAIN_DEADLINE_PASSED
    deadline = worker.grace_deadline
    if worker.status is WorkerStatus.DISCONNECTED and deadline is not None:
        return "grace expired" if now >= deadline else None  # the window protects claims
    if now - worker.last_heartbeat > timedelta(seconds=timeout):
        return "heartbeat timeout"
    return None


def remove_worker(state: LedgerState, cmd: c.RemoveWorker) -> list[ev.Event]:
    worker = live_worker(state, cmd.worker_id)
    end: ev.WorkerLeft | ev.WorkerDeleted
    by, why = cmd.actor.user, cmd.reason
    if cmd.actor.user == worker.user:
        end = ev.WorkerLeft(worker_id=worker.id, by=by, reason=why, at=cmd.now)
    elif cmd.actor.superuser:
        end = ev.WorkerDeleted(worker_id=worker.id, by=by, reason=why, at=cmd.now)
    else:
        raise e.ForbiddenError(f"worker {worker.id} belongs to another user")
    return end_worker(state, worker, end)


def drain_worker(state: LedgerState, cmd: c.DrainWorker) -> list[ev.Event]:
    worker = live_worker(state, cmd.worker_id)
    if cmd.actor.user != worker.user and not cmd.actor.superuser:
        raise e.ForbiddenError(f"worker {worker.id} belongs to another user")
    if worker.draining:
        return []  # rule 9: already draining; the first drain's reason and deadline stand
    deadline = None
    if cmd.deadline_seconds is not None:
        deadline = cmd.now + timedelta(seconds=cmd.deadline_seconds)
    drain = ev.WorkerDrainRequested(
        worker_id=worker.id, by=cmd.actor.user, reason=cmd.reason, deadline=deadline, at=cmd.now
    )
    draining = worker.model_copy(
        update={"draining_since": cmd.now, "drained_by": cmd.actor.user, "drain_reason": cmd.reason}
    )
    return [drain, *drained_end(state, draining, frozenset(), cmd.now)]


def drained_end(
    state: LedgerState, worker: WorkerState, released: frozenset[str], now: datetime
) -> list[ev.Event]:
    """Rule 9: the end of a draining worker that holds nothing once `released` left it;
    empty when it is not draining or still holds a task."""
    if not worker.draining or worker.is_ended or worker.tasks - released:
        return []
    reason = f"drained: {worker.drain_reason}" if worker.drain_reason else "drained"
    by = worker.drained_by or SYSTEM.user
    left = ev.WorkerLeft(worker_id=worker.id, by=by, reason=reason, at=now)
    return end_worker(state, worker.model_copy(update={"tasks": worker.tasks - released}), left)


def end_worker(
    state: LedgerState, worker: WorkerState, end: ev.WorkerLost | ev.WorkerLeft | ev.WorkerDeleted
) -> list[ev.Event]:
    """The end event, one release per held task, one unlink per linked job."""
    if isinstance(end, ev.WorkerLost):
        reason = end.reason
    else:
        kind = end.type.removeprefix("Worker").lower()
        reason = f"{kind}: {end.reason}" if end.reason else kind
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
    for provider_name in sorted(worker.providers):
        provider = state.live_provider(provider_name)
        if provider is None:
            raise IncompleteStateError(f"provider {provider_name} of {worker.id} was not loaded")
        out.append(
            ev.ProviderRemoved(
                provider_name=provider_name,
                provider_id=provider.id,
                worker_id=worker.id,
                reason=f"worker {reason}",
                by=SYSTEM.user if isinstance(end, ev.WorkerLost) else end.by,
                at=end.at,
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
    error = f"{WORKER_ENDED_ERROR} (worker {reason})"
    if job is not None and job.on_worker_lost is RunningTaskPolicy.REQUEUE:
        budget = f"lost {task.losses + 1} times, budget exhausted"
        error = f"{WORKER_ENDED_ERROR} (worker {reason}; {budget})"
    return ev.TaskFailed(
        task_id=task.id,
        worker_id=worker.id,
        attempt=task.attempt,
        error=error,
        by="@system",
        at=now,
    )
