"""evolve(state, event) -> state: the fold. Total and pure; never raises.

An event whose entity is absent from a partial state leaves that state unchanged,
so the store can fold just the streams it loaded.
"""

from __future__ import annotations

from collections.abc import Iterable

from .events import (
    ConnectionAttached,
    Event,
    HeartbeatRecorded,
    JobRegistered,
    JobWorkerLinked,
    JobWorkerUnlinked,
    ProviderRegistered,
    ProviderRemoved,
    ProviderRoomJoined,
    ProviderRoomLeft,
    RoomJoined,
    RoomLeft,
    TaskCancelled,
    TaskClaimed,
    TaskCompleted,
    TaskDispatched,
    TaskFailed,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    WorkerDeleted,
    WorkerDisconnected,
    WorkerDrainRequested,
    WorkerJobLinked,
    WorkerLeft,
    WorkerLost,
    WorkerProviderLinked,
    WorkerProviderUnlinked,
    WorkerRegistered,
    WorkerResumed,
    WorkerTaskAssigned,
    WorkerTaskReleased,
)
from .model import TaskStatus, WorkerStatus, build, copy_with
from .state import (
    CLAIM_KEYS_KEPT,
    JobState,
    LedgerState,
    ProviderState,
    TaskState,
    WorkerState,
    later,
)
from .streams import StreamKind


def fold(events: Iterable[Event], state: LedgerState | None = None) -> LedgerState:
    """Fold events from `state` (default: empty) in order."""
    current = state if state is not None else LedgerState()
    for event in events:
        current = evolve(current, event)
    return current


def evolve(state: LedgerState, event: Event) -> LedgerState:
    """`state` after `event`: only the entity of the event's stream changes."""
    kind, key = event.stream_kind, event.stream_key
    if kind is StreamKind.TASK:
        task = state.tasks.get(key)
        after_task = evolve_task(task, event)
        return state if after_task is None or after_task is task else state.with_task(after_task)
    if kind is StreamKind.WORKER:
        worker = state.workers.get(key)
        after_worker = evolve_worker(worker, event)
        if after_worker is None or after_worker is worker:
            return state
        return state.with_worker(after_worker)
    if kind is StreamKind.JOB:
        job = state.jobs.get(key)
        after_job = evolve_job(job, event)
        return state if after_job is None or after_job is job else state.with_job(after_job)
    provider = state.providers.get(key)
    after_provider = evolve_provider(provider, event)
    if after_provider is None or after_provider is provider:
        return state
    return state.with_provider(after_provider)


# One step per stream kind: the entity of the event's stream (None: absent) after the
# event, None while it stays absent. `evolve` is these steps on a `LedgerState`; the
# projection applies them to its own maps.


def evolve_worker(worker: WorkerState | None, event: Event) -> WorkerState | None:
    """The worker of a worker-stream event after it (None: absent)."""
    if isinstance(event, WorkerRegistered):
        return WorkerState(
            id=event.worker_id,
            user=event.user,
            created_at=event.at,
            last_heartbeat=event.at,
            request_hash=event.request_hash,
        )
    return None if worker is None else _evolve_worker(worker, event)


def evolve_task(task: TaskState | None, event: Event) -> TaskState | None:
    """The task of a task-stream event after it (None: absent)."""
    if isinstance(event, TaskSubmitted):
        return build(  # the submit's fields were validated with the event
            TaskState,
            {
                "id": event.task_id,
                "job_name": event.job_name,
                "room_id": event.room_id,
                "payload": dict(event.payload),  # validation would copy it too
                "submitted_by": event.by,
                "created_at": event.at,
                "request_hash": event.request_hash,
            },
        )
    return None if task is None else _evolve_task(task, event)


def evolve_job(job: JobState | None, event: Event) -> JobState | None:
    """The job of a job-stream event after it (None: absent)."""
    if isinstance(event, JobRegistered):
        return _evolve_job(job, event)
    if job is None:
        return None
    if isinstance(event, JobWorkerLinked):
        return copy_with(job, {"workers": job.workers | {event.worker_id}})
    if isinstance(event, JobWorkerUnlinked):
        return copy_with(job, {"workers": job.workers - {event.worker_id}})
    return job


def evolve_provider(provider: ProviderState | None, event: Event) -> ProviderState | None:
    """The provider of a provider-stream event after it (None: absent)."""
    if isinstance(event, ProviderRegistered):
        return _evolve_provider(provider, event)
    if isinstance(event, ProviderRemoved) and provider is not None:
        removed = {"removed_at": event.at, "removal_reason": event.reason}
        return copy_with(provider, removed)
    return provider


def _evolve_job(existing: JobState | None, event: JobRegistered) -> JobState:
    return JobState(
        full_name=event.job_name,
        room_id=event.room_id,
        category=event.category,
        name=event.name,
        schema=event.schema_,
        created_at=existing.created_at if existing else event.at,
        workers=existing.workers if existing else frozenset(),
        on_worker_lost=event.on_worker_lost,
        max_worker_losses=event.max_worker_losses,
    )


def _evolve_provider(existing: ProviderState | None, event: ProviderRegistered) -> ProviderState:
    kept = existing is not None and existing.is_live and existing.id == event.provider_id
    return ProviderState(
        id=event.provider_id,
        full_name=event.provider_name,
        room_id=event.room_id,
        category=event.category,
        name=event.name,
        schema=event.schema_,
        content_type=event.content_type,
        user=event.user,
        worker_id=event.worker_id,
        created_at=existing.created_at if kept and existing is not None else event.at,
    )


def _ended(worker: WorkerState, status: WorkerStatus, event: Event, reason: str) -> WorkerState:
    return copy_with(
        worker,
        {
            "status": status,
            "sid": None,
            "rooms": frozenset(),
            "provider_rooms": frozenset(),
            "tasks": frozenset(),
            "providers": frozenset(),
            "grace_deadline": None,
            "ended_at": event.at,
            "end_reason": reason,
        },
    )


def _why(what: str, reason: str | None) -> str:
    return f"{what}: {reason}" if reason else what


def _evolve_worker(worker: WorkerState, event: Event) -> WorkerState:
    match event:  # the most frequent first (the cases exclude each other)
        case WorkerTaskAssigned(task_id=task_id, request_key=key):
            keys = worker.claim_keys
            if key is not None:
                keys = (*keys, (key, task_id))[-CLAIM_KEYS_KEPT:]
            return copy_with(worker, {"tasks": worker.tasks | {task_id}, "claim_keys": keys})
        case WorkerTaskReleased(task_id=task_id):
            return copy_with(worker, {"tasks": worker.tasks - {task_id}})
        case WorkerJobLinked(job_name=job_name):
            return copy_with(worker, {"jobs": worker.jobs | {job_name}})
        case HeartbeatRecorded(at=at):
            return copy_with(worker, {"last_heartbeat": later(worker.last_heartbeat, at)})
        case ConnectionAttached(sid=sid):
            return copy_with(
                worker, {"sid": sid, "rooms": frozenset(), "provider_rooms": frozenset()}
            )
        case RoomJoined(job_name=job_name):
            return copy_with(worker, {"rooms": worker.rooms | {job_name}})
        case RoomLeft(job_name=job_name):
            return copy_with(worker, {"rooms": worker.rooms - {job_name}})
        case ProviderRoomJoined(provider_name=name):
            return copy_with(worker, {"provider_rooms": worker.provider_rooms | {name}})
        case ProviderRoomLeft(provider_name=name):
            return copy_with(worker, {"provider_rooms": worker.provider_rooms - {name}})
        case WorkerProviderLinked(provider_name=name):
            return copy_with(worker, {"providers": worker.providers | {name}})
        case WorkerProviderUnlinked(provider_name=name):
            return copy_with(
                worker,
                {
                    "providers": worker.providers - {name},
                    "provider_rooms": worker.provider_rooms - {name},
                },
            )
        case WorkerDisconnected(reason=reason, grace_deadline=deadline, at=at):
            return copy_with(
                worker,
                {
                    "status": WorkerStatus.DISCONNECTED,
                    "sid": None,
                    "rooms": frozenset(),
                    "provider_rooms": frozenset(),
                    "disconnected_at": at,
                    "disconnect_reason": reason,
                    "grace_deadline": deadline,
                },
            )
        case WorkerResumed(at=at):  # a sign of life: its heartbeat deadline starts again
            return copy_with(
                worker,
                {
                    "status": WorkerStatus.ONLINE,
                    "grace_deadline": None,
                    "last_heartbeat": later(worker.last_heartbeat, at),
                },
            )
        case WorkerDrainRequested(by=by, reason=reason, deadline=deadline, at=at):
            return copy_with(
                worker,
                {
                    "draining_since": at,
                    "drain_deadline": deadline,
                    "drain_reason": reason,
                    "drained_by": by,
                    "rooms": frozenset(),  # its connection left every job room
                },
            )
        case WorkerLost(reason=reason):
            return _ended(worker, WorkerStatus.LOST, event, reason)
        case WorkerLeft(by=by, reason=reason):
            return _ended(worker, WorkerStatus.LEFT, event, _why(f"left (by {by})", reason))
        case WorkerDeleted(by=by, reason=reason):
            return _ended(worker, WorkerStatus.DELETED, event, _why(f"deleted (by {by})", reason))
    return worker


def _evolve_task(task: TaskState, event: Event) -> TaskState:
    match event:
        case TaskClaimed(worker_id=worker_id, attempt=attempt, at=at):
            return copy_with(
                task,
                {
                    "status": TaskStatus.CLAIMED,
                    "worker_id": worker_id,
                    "attempt": attempt,
                    "attempt_workers": (*task.attempt_workers, worker_id),
                    "claimed_at": at,
                },
            )
        case TaskDispatched(attempt=attempt, at=at):
            return copy_with(
                task, {"status": TaskStatus.CLAIMED, "attempt": attempt, "claimed_at": at}
            )
        case TaskStarted(at=at):
            return copy_with(task, {"status": TaskStatus.RUNNING, "started_at": at})
        case TaskCompleted(at=at):
            return copy_with(task, {"status": TaskStatus.COMPLETED, "completed_at": at})
        case TaskFailed(error=error, at=at):
            return copy_with(
                task, {"status": TaskStatus.FAILED, "completed_at": at, "error": error}
            )
        case TaskCancelled(error=error, at=at):
            return copy_with(
                task, {"status": TaskStatus.CANCELLED, "completed_at": at, "error": error}
            )
        case TaskRequeued(was_running=was_running, by=by):
            lost = was_running and by is None  # an operator's requeue is no worker loss
            return copy_with(
                task,
                {
                    "status": TaskStatus.PENDING,
                    "worker_id": None,
                    "claimed_at": None,
                    "started_at": None,
                    "losses": task.losses + (1 if lost else 0),
                    "requeues": task.requeues + 1,
                },
            )
    return task
