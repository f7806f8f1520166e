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

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from . import events as ev
from .evolve import evolve
from .model import (
    INTERNAL_ROOM,
    Frozen,
    TaskStatus,
    build,
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
    dedupe = _Dedupe()
    for event in events:
        after = evolve(state, event)
        step = _STEPS.get(type(event))
        if step is not None:
            for emission in step(state, after, event):
                if dedupe.is_new(emission):
                    out.append(emission)
        state = after
    return state, tuple(out)


class _Dedupe:
    """Which emissions of one decision were not emitted before in it: equal JSON is the
    same emission, and one `task_available` per room. JSON is only written for
    emissions that share their kind and addressee with an earlier one."""

    def __init__(self) -> None:
        self.first: dict[tuple[object, ...], Emission] = {}  # by kind and addressee
        self.texts: dict[tuple[object, ...], set[str]] = {}  # their JSON, once compared

    def is_new(self, emission: Emission) -> bool:
        if isinstance(emission, Emit):
            if emission.event == "task_available":
                if ("task_available", emission.to) in self.first:
                    return False
                self.first["task_available", emission.to] = emission
                return True
            coarse: tuple[object, ...] = (Emit, emission.event, emission.to)
        elif isinstance(emission, DisconnectSid):
            coarse = (DisconnectSid, emission.sid)
        else:
            coarse = (type(emission), emission.sid, emission.room)
        first = self.first.get(coarse)
        if first is None:  # nothing alike yet: new whatever its JSON
            self.first[coarse] = emission
            return True
        texts = self.texts.get(coarse)
        if texts is None:
            texts = self.texts[coarse] = {first.model_dump_json()}
        text = emission.model_dump_json()
        if text in texts:
            return False
        texts.add(text)
        return True


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
    return _emit("task_available", data, room_of_job(task.job_name))


def _leave_all(state: LedgerState, worker_id: str) -> list[Emission]:
    worker = state.workers.get(worker_id)
    if worker is None or worker.sid is None:
        return []
    rooms = [room_of_job(job) for job in sorted(worker.rooms)]
    rooms += [room_of_provider(name) for name in sorted(worker.provider_rooms)]
    return [_leave(worker.sid, room) for room in rooms]


def _leave_provider_room(before: LedgerState, worker_id: str, provider_name: str) -> list[Emission]:
    worker = before.workers.get(worker_id)
    if worker is None or worker.sid is None or provider_name not in worker.provider_rooms:
        return []
    return [_leave(worker.sid, room_of_provider(provider_name))]


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
    leave = [_leave(old.sid, room_of_job(job)) for job in sorted(old.rooms)]
    return [*leave, _emit("worker_drain", drain_payload(worker), old.sid)]


def _drain_reminder(after: LedgerState, worker_id: str, sid: str) -> list[Emission]:
    """`worker_drain` to a new connection of a worker that is draining."""
    worker = after.workers.get(worker_id)
    if worker is None or not worker.draining or worker.is_ended:
        return []
    return [_emit("worker_drain", drain_payload(worker), sid)]


def _emit(event: str, data: dict[str, Any], to: str) -> Emit:
    """`Emit(event=..., data=..., to=...)` of values built here (not validated again)."""
    return build(Emit, {"event": event, "data": data, "to": to})


def _enter(sid: str, room: str) -> EnterRoom:
    return build(EnterRoom, {"sid": sid, "room": room})


def _leave(sid: str, room: str) -> LeaveRoom:
    return build(LeaveRoom, {"sid": sid, "room": room})


# The emissions of each event type (none for a type without a step), from the state
# before the event, the state after it and the event.
_Step = Callable[[LedgerState, LedgerState, Any], list[Emission]]


def _on_drain(
    before: LedgerState, after: LedgerState, event: ev.WorkerDrainRequested
) -> list[Emission]:
    return _drain_notice(before, after, event.worker_id)


def _on_attach(
    before: LedgerState, after: LedgerState, event: ev.ConnectionAttached
) -> list[Emission]:
    return [
        *_leave_all(before, event.worker_id),
        *_drain_reminder(after, event.worker_id, event.sid),
    ]


def _on_room_joined(_b: LedgerState, _a: LedgerState, event: ev.RoomJoined) -> list[Emission]:
    return [_enter(event.sid, room_of_job(event.job_name))]


def _on_room_left(_b: LedgerState, _a: LedgerState, event: ev.RoomLeft) -> list[Emission]:
    return [_leave(event.sid, room_of_job(event.job_name))]


def _on_provider_room_joined(
    _b: LedgerState, _a: LedgerState, event: ev.ProviderRoomJoined
) -> list[Emission]:
    return [_enter(event.sid, room_of_provider(event.provider_name))]


def _on_provider_room_left(
    _b: LedgerState, _a: LedgerState, event: ev.ProviderRoomLeft
) -> list[Emission]:
    return [_leave(event.sid, room_of_provider(event.provider_name))]


def _on_provider_unlinked(
    before: LedgerState, _a: LedgerState, event: ev.WorkerProviderUnlinked
) -> list[Emission]:
    return _leave_provider_room(before, event.worker_id, event.provider_name)


def _on_provider(
    _b: LedgerState, _a: LedgerState, event: ev.ProviderRegistered | ev.ProviderRemoved
) -> list[Emission]:
    return [invalidate("providers_invalidate", event.provider_name)]


def _on_leave(
    before: LedgerState, _a: LedgerState, event: ev.WorkerDisconnected | ev.WorkerLeft
) -> list[Emission]:
    return _leave_all(before, event.worker_id)


def _on_kick(
    before: LedgerState, _a: LedgerState, event: ev.WorkerLost | ev.WorkerDeleted
) -> list[Emission]:
    worker = before.workers.get(event.worker_id)
    kick: list[Emission] = (
        [build(DisconnectSid, {"sid": worker.sid})] if worker and worker.sid else []
    )
    return [*_leave_all(before, event.worker_id), *kick]


def _on_job(
    _b: LedgerState,
    _a: LedgerState,
    event: ev.JobRegistered | ev.JobWorkerLinked | ev.JobWorkerUnlinked,
) -> list[Emission]:
    return [invalidate("jobs_invalidate", event.job_name)]


def _on_cancel(before: LedgerState, after: LedgerState, event: ev.TaskCancelled) -> list[Emission]:
    return _task_events(after, event.task_id) + _cancel_notice(before, event)


def _on_pending(
    before: LedgerState, after: LedgerState, event: ev.TaskSubmitted | ev.TaskRequeued
) -> list[Emission]:
    task = after.tasks.get(event.task_id)
    if task is None or task.job_name.startswith(INTERNAL_ROOM + ":"):
        return []  # an internal task is announced once, by its TaskDispatched
    notice = _requeue_notice(before, event) if isinstance(event, ev.TaskRequeued) else []
    return [*_task_events(after, event.task_id), _task_available(task), *notice]


def _on_task(
    _b: LedgerState,
    after: LedgerState,
    event: ev.TaskClaimed | ev.TaskDispatched | ev.TaskStarted | ev.TaskCompleted | ev.TaskFailed,
) -> list[Emission]:
    return _task_events(after, event.task_id)


_STEPS: dict[type[ev.Event], _Step] = {
    ev.WorkerDrainRequested: _on_drain,
    ev.ConnectionAttached: _on_attach,
    ev.RoomJoined: _on_room_joined,
    ev.RoomLeft: _on_room_left,
    ev.ProviderRoomJoined: _on_provider_room_joined,
    ev.ProviderRoomLeft: _on_provider_room_left,
    ev.WorkerProviderUnlinked: _on_provider_unlinked,
    ev.ProviderRegistered: _on_provider,
    ev.ProviderRemoved: _on_provider,
    ev.WorkerDisconnected: _on_leave,
    ev.WorkerLeft: _on_leave,
    ev.WorkerLost: _on_kick,
    ev.WorkerDeleted: _on_kick,
    ev.JobRegistered: _on_job,
    ev.JobWorkerLinked: _on_job,
    ev.JobWorkerUnlinked: _on_job,
    ev.TaskCancelled: _on_cancel,
    ev.TaskSubmitted: _on_pending,
    ev.TaskRequeued: _on_pending,
    ev.TaskClaimed: _on_task,
    ev.TaskDispatched: _on_task,
    ev.TaskStarted: _on_task,
    ev.TaskCompleted: _on_task,
    ev.TaskFailed: _on_task,
}


def _task_events(state: LedgerState, task_id: str) -> list[Emission]:
    task = state.tasks.get(task_id)
    if task is None:
        return []
    data = task_status_payload(task)
    return [_emit("task_status_event", data, room_of_watchers(task.room_id))]


def _requeue_notice(before: LedgerState, event: ev.TaskRequeued) -> list[Emission]:
    """Tell the old holder's connection that an operator took its attempt away."""
    worker = before.workers.get(event.worker_id)
    if event.by is None or worker is None or worker.sid is None:
        return []
    data = {"task_id": event.task_id, "attempt": event.attempt, "error": event.reason}
    return [_emit("task_cancelled", data, worker.sid)]


def _cancel_notice(before: LedgerState, event: ev.TaskCancelled) -> list[Emission]:
    """Tell the holding worker's connection that its task was cancelled."""
    worker = before.workers.get(event.worker_id) if event.worker_id else None
    if worker is None or worker.sid is None:
        return []
    data = {"task_id": event.task_id, "attempt": event.attempt, "error": event.error}
    return [_emit("task_cancelled", data, worker.sid)]
