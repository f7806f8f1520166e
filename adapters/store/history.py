"""Worker and task history from their streams: timelines, claims, attempts, state at a time.

History is just the stream, so it survives the worker's end and deletion. The
functions are synchronous (they read the store): call them from asyncio through the
Ledger's executor. The models are JSON-ready for the REST layer
(`GET /v1/joblib/workers/{worker_id}/history`, `GET /v1/joblib/tasks/{task_id}/history`).
Order is the stream's version order; `at` compares with the events' own timestamps,
which come from the deciding host's clock. Serialize with `history_json`, not
pydantic's JSON: a task's payload or a job's schema may be nested deeper than
pydantic's serializer goes (~255 levels), and history must show whatever the log holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeGuard

from pydantic import BaseModel
from workerledger.core import (
    SYSTEM,
    WORKER_ENDS,
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
    Stream,
    TaskCancelled,
    TaskClaimed,
    TaskCompleted,
    TaskDispatched,
    TaskFailed,
    TaskReportRejected,
    TaskRequeued,
    TaskStarted,
    TaskState,
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
    WorkerState,
    WorkerTaskAssigned,
    WorkerTaskReleased,
)

from ..ports import EventStore, StoredEvent
from .json_codec import model_json, to_plain
from .snapshots import load_entity


class HistoryNotFoundError(LookupError):
    """The stream has no events: the id never existed."""


class TimelineEntry(BaseModel):
    position: int
    version: int
    at: datetime
    type: str
    summary: str
    event: dict[str, Any]


class Claim(BaseModel):
    """A claim the worker made, and how that attempt ended (from the task's stream)."""

    task_id: str
    attempt: int
    claimed_at: datetime
    outcome: str  # claimed, running, completed, failed, cancelled, requeued
    ended_at: datetime | None = None
    reason: str | None = None


class Release(BaseModel):
    """A requeue or failure that the worker's end caused."""

    task_id: str
    attempt: int
    at: datetime
    outcome: str  # requeued or failed
    reason: str | None = None


class ServedProvider(BaseModel):
    """A provider the worker served, and how that ended (from the provider's stream)."""

    provider_name: str
    provider_id: str
    registered_at: datetime
    removed_at: datetime | None = None
    reason: str | None = None  # deleted, moved to another worker, or the worker's end


class WorkerHistory(BaseModel):
    worker_id: str
    at: datetime | None  # the moment the state is taken at (None: now)
    version: int  # stream version the state reflects
    state: WorkerState | None  # None if the worker did not exist yet at `at`
    timeline: list[TimelineEntry]
    claims: list[Claim]
    caused: list[Release]
    providers: list[ServedProvider] = []


class Attempt(BaseModel):
    attempt: int
    worker_id: str | None  # None: the server's internal executor ran it
    claimed_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str  # claimed, running, completed, failed, cancelled, requeued
    reason: str | None = None


class TaskHistory(BaseModel):
    task_id: str
    state: TaskState | None
    timeline: list[TimelineEntry]
    attempts: list[Attempt]


def worker_history(store: EventStore, worker_id: str, at: datetime | None = None) -> WorkerHistory:
    """The worker's timeline up to `at` (default: all), its state then, claims and releases."""
    stream = Stream.worker(worker_id)
    records = _read(store, stream)
    if at is not None:
        records = [r for r in records if r.event.at <= at]
    version = records[-1].version if records else 0
    state, _ = load_entity(store, stream.text, version) if records else (None, 0)
    task_streams: dict[str, list[StoredEvent]] = {}

    def task_events(task_id: str) -> list[Event]:
        if task_id not in task_streams:
            task_streams[task_id] = store.read_stream(Stream.task(task_id).text)
        return [r.event for r in task_streams[task_id] if at is None or r.event.at <= at]

    claims = [
        _claim(r.event, task_events(r.event.task_id))
        for r in records
        if isinstance(r.event, WorkerTaskAssigned)
    ]
    ends = {r.event.at for r in records if isinstance(r.event, WORKER_ENDS)}
    caused = [
        Release(
            task_id=e.task_id,
            attempt=e.attempt,
            at=e.at,
            outcome="requeued" if isinstance(e, TaskRequeued) else "failed",
            reason=e.reason if isinstance(e, TaskRequeued) else e.error,
        )
        for task_id in sorted({c.task_id for c in claims})
        for e in task_events(task_id)
        if _released_by_an_end(e) and e.worker_id == worker_id and e.at in ends
    ]
    linked = sorted(
        {r.event.provider_name for r in records if isinstance(r.event, WorkerProviderLinked)}
    )
    return WorkerHistory(
        worker_id=worker_id,
        at=at,
        version=version,
        state=state if isinstance(state, WorkerState) else None,
        timeline=[_entry(r) for r in records],
        claims=claims,
        caused=caused,
        providers=[served for name in linked for served in _served(store, name, worker_id, at)],
    )


def _released_by_an_end(event: Event) -> TypeGuard[TaskRequeued | TaskFailed]:
    """A requeue or failure a worker's end decides (not an operator's or a report's, which
    may share the instant of a drained worker's end)."""
    if isinstance(event, TaskRequeued):
        return event.by is None
    return isinstance(event, TaskFailed) and event.by == SYSTEM.user


def _served(
    store: EventStore, provider_name: str, worker_id: str, at: datetime | None
) -> list[ServedProvider]:
    """The spans in which `worker_id` served `provider_name`, oldest first."""
    out: list[ServedProvider] = []
    for record in store.read_stream(Stream.provider(provider_name).text):
        event = record.event
        if at is not None and event.at > at:
            break
        serving = out and out[-1].removed_at is None
        if isinstance(event, ProviderRegistered):
            if event.worker_id == worker_id and not serving:
                out.append(
                    ServedProvider(
                        provider_name=provider_name, provider_id=event.provider_id,
                        registered_at=event.at,
                    )
                )  # fmt: skip
            elif event.worker_id != worker_id and serving:
                moved = {"removed_at": event.at, "reason": f"moved to worker {event.worker_id}"}
                out[-1] = out[-1].model_copy(update=moved)
        elif isinstance(event, ProviderRemoved) and serving:
            out[-1] = out[-1].model_copy(update={"removed_at": event.at, "reason": event.reason})
    return out


def task_history(store: EventStore, task_id: str) -> TaskHistory:
    """The task's timeline and every attempt: who claimed it and how the attempt ended."""
    stream = Stream.task(task_id)
    records = _read(store, stream)
    attempts: list[Attempt] = []
    for record in records:
        event = record.event
        if isinstance(event, TaskClaimed):
            attempts.append(
                Attempt(
                    attempt=event.attempt,
                    worker_id=event.worker_id,
                    claimed_at=event.at,
                    outcome="claimed",
                )
            )
        elif isinstance(event, TaskDispatched):
            attempts.append(
                Attempt(
                    attempt=event.attempt, worker_id=None, claimed_at=event.at, outcome="claimed"
                )
            )
        elif attempts and getattr(event, "attempt", None) == attempts[-1].attempt:
            attempts[-1] = _advance(attempts[-1], event)
    state, _ = load_entity(store, stream.text)
    return TaskHistory(
        task_id=task_id,
        state=state if isinstance(state, TaskState) else None,
        timeline=[_entry(r) for r in records],
        attempts=attempts,
    )


def _read(store: EventStore, stream: Stream) -> list[StoredEvent]:
    records = store.read_stream(stream.text)
    if not records:
        raise HistoryNotFoundError(f"no {stream.kind.value} {stream.key!r} in the log")
    return records


def _claim(assigned: WorkerTaskAssigned, task_events: list[Event]) -> Claim:
    attempt = Attempt(
        attempt=assigned.attempt, worker_id=assigned.worker_id, claimed_at=assigned.at,
        outcome="claimed",
    )  # fmt: skip
    for event in task_events:
        if not isinstance(event, TaskClaimed) and getattr(event, "attempt", None) == (
            assigned.attempt
        ):
            attempt = _advance(attempt, event)
    return Claim(
        task_id=assigned.task_id,
        attempt=assigned.attempt,
        claimed_at=assigned.at,
        outcome=attempt.outcome,
        ended_at=attempt.ended_at,
        reason=attempt.reason,
    )


def _advance(attempt: Attempt, event: Event) -> Attempt:
    """The attempt after one more event of its task (same attempt number)."""
    match event:
        case TaskStarted(at=at):
            return attempt.model_copy(update={"outcome": "running", "started_at": at})
        case TaskCompleted(at=at):
            return attempt.model_copy(update={"outcome": "completed", "ended_at": at})
        case TaskFailed(at=at, error=error) | TaskCancelled(at=at, error=error):
            outcome = "failed" if isinstance(event, TaskFailed) else "cancelled"
            return attempt.model_copy(update={"outcome": outcome, "ended_at": at, "reason": error})
        case TaskRequeued(at=at, reason=reason):
            return attempt.model_copy(
                update={"outcome": "requeued", "ended_at": at, "reason": reason}
            )
    return attempt


def _entry(record: StoredEvent) -> TimelineEntry:
    event = record.event
    return TimelineEntry(
        position=record.position,
        version=record.version,
        at=event.at,
        type=event.type,
        summary=summarize(event),
        event=to_plain(event),
    )


def history_json(history: WorkerHistory | TaskHistory, indent: int | None = None) -> str:
    """The history as JSON (what pydantic would write, at any nesting depth)."""
    return model_json(history, indent)


def summarize(event: Event) -> str:
    """One readable line per event."""
    match event:
        case WorkerRegistered(user=user):
            return f"registered by {user}"
        case WorkerJobLinked(job_name=job):
            return f"registered for job {job}"
        case HeartbeatRecorded():
            return "heartbeat"
        case ConnectionAttached(sid=sid, previous_sid=previous):
            return f"connected as {sid}" + (f" (replacing {previous})" if previous else "")
        case RoomJoined(job_name=job, sid=sid):
            return f"joined the room of {job} ({sid})"
        case RoomLeft(job_name=job):
            return f"left the room of {job}"
        case WorkerDisconnected(reason=reason, grace_deadline=deadline):
            return f"disconnected ({reason}); grace until {deadline.isoformat()}"
        case WorkerResumed(sid=sid):
            return f"resumed as {sid}"
        case WorkerDrainRequested(by=by, reason=reason, deadline=deadline):
            until = f"; deadline {deadline.isoformat()}" if deadline else ""
            return f"drain requested by {by}: {reason}{until}"
        case WorkerLost(reason=reason):
            return f"lost: {reason}"
        case WorkerLeft(by=by, reason=reason):
            return f"left (by {by})" + (f": {reason}" if reason else "")
        case WorkerDeleted(by=by, reason=reason):
            return f"deleted by {by}" + (f": {reason}" if reason else "")
        case WorkerTaskAssigned(task_id=task, attempt=n):
            return f"claimed task {task} (attempt {n})"
        case WorkerTaskReleased(task_id=task, status=status):
            return f"released task {task} ({status.value})"
        case JobRegistered(by=by, on_worker_lost=policy):
            return f"job registered by {by} (running tasks of lost workers: {policy.value})"
        case JobWorkerLinked(worker_id=worker):
            return f"worker {worker} linked"
        case JobWorkerUnlinked(worker_id=worker, reason=reason):
            return f"worker {worker} unlinked ({reason})"
        case TaskSubmitted(by=by, job_name=job, room_id=room):
            return f"submitted by {by} in room {room} for {job}"
        case TaskClaimed(worker_id=worker, attempt=n):
            return f"claimed by worker {worker} (attempt {n})"
        case WorkerProviderLinked(provider_name=name):
            return f"serves provider {name}"
        case WorkerProviderUnlinked(provider_name=name, reason=reason):
            return f"no longer serves provider {name} ({reason})"
        case ProviderRoomJoined(provider_name=name, sid=sid):
            return f"joined the room of provider {name} ({sid})"
        case ProviderRoomLeft(provider_name=name):
            return f"left the room of provider {name}"
        case ProviderRegistered(worker_id=worker, by=by, content_type=content_type):
            return f"provider registered by {by} for worker {worker} ({content_type})"
        case ProviderRemoved(worker_id=worker, reason=reason):
            return f"provider removed (worker {worker}): {reason}"
        case TaskDispatched(attempt=n, executor=executor):
            return f"claimed by the server for its {executor} executor (attempt {n})"
        case TaskStarted(worker_id=worker, attempt=n):
            return f"started by worker {worker} (attempt {n})"
        case TaskCompleted(worker_id=worker, attempt=n):
            return f"completed by worker {worker} (attempt {n})"
        case TaskFailed(worker_id=worker, attempt=n, error=error, by=by):
            return f"failed (attempt {n}, worker {worker}, by {by})" + (
                f": {error}" if error else ""
            )
        case TaskCancelled(attempt=n, error=error, by=by):
            return f"cancelled by {by} (attempt {n})" + (f": {error}" if error else "")
        case TaskRequeued(worker_id=worker, attempt=n, reason=reason, was_running=running, by=by):
            state = "running" if running else "claimed"
            if by is not None:  # an operator's: the reason names who and why
                return f"{reason} (attempt {n} of worker {worker} was {state})"
            return f"requeued: worker {worker} {reason} (attempt {n} was {state})"
        case TaskReportRejected(requested=req, attempt=n, worker_id=worker, current_attempt=cur):
            return (
                f"stale report rejected: {req.value} for attempt {n} by worker {worker} "
                f"(current attempt {cur})"
            )
    return event.type
