"""Emissions: what the host must tell Socket.IO after the events are committed.

Named after python-socketio's server verbs, so the emitter is a one-to-one match.
They are computed from new events only (`emissions_for`), never inside `evolve`, so
folding a stored log never re-sends anything.

`task_status_event` carries `queue_position: None`; the host's delivery step fills in
the rank of pending tasks from its read model (a view concern, not a decision).

A drain tells the worker's connection `worker_drain` (again to each new connection that
attaches while it drains) after taking it out of its job rooms; an operator requeue
tells the old holder's connection `task_cancelled`, so an SDK stops that attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from . import events as ev
from .evolve import evolve
from .model import (
    INTERNAL_ROOM,
    Frozen,
    TaskStatus,
    room_of_job,
    room_of_provider,
    room_of_watchers,
    split_job_name,
)
from .state import LedgerState, TaskState, WorkerState


class EnterRoom(Frozen):
    type: Literal["EnterRoom"] = "EnterRoom"
    sid: str
    room: str


class LeaveRoom(Frozen):
    type: Literal["LeaveRoom"] = "LeaveRoom"
    sid: str
    room: str


class Emit(Frozen):
    """`sio.emit(event, data, to=to)`; `to` is a room name or a sid."""

    type: Literal["Emit"] = "Emit"
    event: str
    data: dict[str, Any]
    to: str


class DisconnectSid(Frozen):
    type: Literal["DisconnectSid"] = "DisconnectSid"
    sid: str


Emission = Annotated[EnterRoom | LeaveRoom | Emit | DisconnectSid, Field(discriminator="type")]
EMISSION_ADAPTER: TypeAdapter[Emission] = TypeAdapter(Emission)


def emissions_for(state: LedgerState, events: Sequence[ev.Event]) -> tuple[Emission, ...]:
    """Emissions for `events` applied in order to `state`, deduplicated, in order.

    A decision wakes each job's workers once: of several `task_available` for one job
    (a worker's end requeueing many tasks) only the first is kept; claims are FIFO.
    """
    return fold_with_emissions(state, events)[1]


def fold_with_emissions(
    state: LedgerState, events: Sequence[ev.Event]
) -> tuple[LedgerState, tuple[Emission, ...]]:
    """`fold(events, state)` and `emissions_for(state, events)` in one pass."""
    out: list[Emission] = []
    seen: set[str] = set()
    for event in events:
        after = evolve(state, event)
        for emission in _for_event(state, after, event):
            key = _dedupe_key(emission)
            if key not in seen:
                seen.add(key)
                out.append(emission)
        state = after
    return state, tuple(out)


def _dedupe_key(emission: Emission) -> str:
    if isinstance(emission, Emit) and emission.event == "task_available":
        return f"task_available\0{emission.to}"
    return emission.model_dump_json()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def task_status_payload(task: TaskState, queue_position: int | None = None) -> dict[str, Any]:
    """The wire payload of `task_status_event` (zndraw-joblib fields plus `attempt`)."""
    return {
        "id": task.id,
        "name": task.job_name,
        "room_id": task.room_id,
        "status": task.status.value,
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at),
        "completed_at": _iso(task.completed_at),
        "queue_position": queue_position if task.status is TaskStatus.PENDING else None,
        "worker_id": task.worker_id,
        "error": task.error,
        "attempt": task.attempt,
    }


def invalidate(event: str, full_name: str) -> Emit:
    """`jobs_invalidate` / `providers_invalidate` to the watchers of the room that a
    job's or provider's full name (`room:category:name`) belongs to."""
    parts = split_job_name(full_name)
    room_id = parts[0] if parts else full_name
    return Emit(event=event, data={}, to=room_of_watchers(room_id))


def _task_available(task: TaskState) -> Emit:
    data = {"job_name": task.job_name, "room_id": task.room_id, "task_id": task.id}
    return Emit(event="task_available", data=data, to=room_of_job(task.job_name))


def _leave_all(state: LedgerState, worker_id: str) -> list[Emission]:
    worker = state.workers.get(worker_id)
    if worker is None or worker.sid is None:
        return []
    rooms = [room_of_job(job) for job in sorted(worker.rooms)]
    rooms += [room_of_provider(name) for name in sorted(worker.provider_rooms)]
    return [LeaveRoom(sid=worker.sid, room=room) for room in rooms]


def _leave_provider_room(before: LedgerState, worker_id: str, provider_name: str) -> list[Emission]:
    worker = before.workers.get(worker_id)
    if worker is None or worker.sid is None or provider_name not in worker.provider_rooms:
        return []
    return [LeaveRoom(sid=worker.sid, room=room_of_provider(provider_name))]


def drain_payload(worker: WorkerState) -> dict[str, Any]:
    """The wire payload of `worker_drain`."""
    return {
        "worker_id": worker.id,
        "reason": worker.drain_reason,
        "deadline": _iso(worker.drain_deadline),
        "by": worker.drained_by,
    }


def _drain_notice(before: LedgerState, after: LedgerState, worker_id: str) -> list[Emission]:
    """Take a draining worker's connection out of its job rooms and tell it to drain."""
    worker, old = after.workers.get(worker_id), before.workers.get(worker_id)
    if worker is None or old is None or old.sid is None:
        return []
    leave = [LeaveRoom(sid=old.sid, room=room_of_job(job)) for job in sorted(old.rooms)]
    return [*leave, Emit(event="worker_drain", data=drain_payload(worker), to=old.sid)]


def _drain_reminder(after: LedgerState, worker_id: str, sid: str) -> list[Emission]:
    """`worker_drain` to a new connection of a worker that is draining."""
    worker = after.workers.get(worker_id)
    if worker is None or not worker.draining or worker.is_ended:
        return []
    return [Emit(event="worker_drain", data=drain_payload(worker), to=sid)]


def _for_event(before: LedgerState, after: LedgerState, event: ev.Event) -> list[Emission]:
    match event:
        case ev.WorkerDrainRequested(worker_id=worker_id):
            return _drain_notice(before, after, worker_id)
        case ev.ConnectionAttached(worker_id=worker_id, sid=sid):
            return [*_leave_all(before, worker_id), *_drain_reminder(after, worker_id, sid)]
        case ev.RoomJoined(sid=sid, job_name=job):
            return [EnterRoom(sid=sid, room=room_of_job(job))]
        case ev.RoomLeft(sid=sid, job_name=job):
            return [LeaveRoom(sid=sid, room=room_of_job(job))]
        case ev.ProviderRoomJoined(sid=sid, provider_name=name):
            return [EnterRoom(sid=sid, room=room_of_provider(name))]
        case ev.ProviderRoomLeft(sid=sid, provider_name=name):
            return [LeaveRoom(sid=sid, room=room_of_provider(name))]
        case ev.WorkerProviderUnlinked(worker_id=worker_id, provider_name=name):
            return _leave_provider_room(before, worker_id, name)
        case ev.ProviderRegistered() | ev.ProviderRemoved():
            return [invalidate("providers_invalidate", event.provider_name)]
        case ev.WorkerDisconnected() | ev.WorkerLeft():
            return _leave_all(before, event.worker_id)
        case ev.WorkerLost() | ev.WorkerDeleted():
            worker = before.workers.get(event.worker_id)
            kick = [DisconnectSid(sid=worker.sid)] if worker and worker.sid else []
            return [*_leave_all(before, event.worker_id), *kick]
        case ev.JobRegistered() | ev.JobWorkerLinked() | ev.JobWorkerUnlinked():
            return [invalidate("jobs_invalidate", event.job_name)]
        case ev.TaskCancelled():
            return _task_events(after, event.task_id) + _cancel_notice(before, event)
        case ev.TaskSubmitted() | ev.TaskRequeued():
            task = after.tasks.get(event.task_id)
            if task is None or task.job_name.startswith(INTERNAL_ROOM + ":"):
                return []  # an internal task is announced once, by its TaskDispatched
            notice = _requeue_notice(before, event) if isinstance(event, ev.TaskRequeued) else []
            return [*_task_events(after, event.task_id), _task_available(task), *notice]
        case (
            ev.TaskClaimed()
            | ev.TaskDispatched()
            | ev.TaskStarted()
            | ev.TaskCompleted()
            | ev.TaskFailed()
        ):
            return _task_events(after, event.task_id)
    return []


def _task_events(state: LedgerState, task_id: str) -> list[Emission]:
    task = state.tasks.get(task_id)
    if task is None:
        return []
    data = task_status_payload(task)
    return [Emit(event="task_status_event", data=data, to=room_of_watchers(task.room_id))]


def _requeue_notice(before: LedgerState, event: ev.TaskRequeued) -> list[Emission]:
    """Tell the old holder's connection that an operator took its attempt away."""
    worker = before.workers.get(event.worker_id)
    if event.by is None or worker is None or worker.sid is None:
        return []
    data = {"task_id": event.task_id, "attempt": event.attempt, "error": event.reason}
    return [Emit(event="task_cancelled", data=data, to=worker.sid)]


def _cancel_notice(before: LedgerState, event: ev.TaskCancelled) -> list[Emission]:
    """Tell the holding worker's connection that its task was cancelled."""
    worker = before.workers.get(event.worker_id) if event.worker_id else None
    if worker is None or worker.sid is None:
        return []
    data = {"task_id": event.task_id, "attempt": event.attempt, "error": event.error}
    return [Emit(event="task_cancelled", data=data, to=worker.sid)]
