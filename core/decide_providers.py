"""Decisions about providers: a worker's resources that serve reads on demand.

Rules:
1. A provider is named `room:category:name` like a job, and is registered (upserted)
   by a user for one of their live workers, or for a worker created with it. Only a
   superuser registers in `@global` or `@internal`; the category must be allowed when
   the host restricts provider categories.
2. Re-registering a live provider keeps its id and creation time and takes the new
   schema, content type and worker; another user may do so only as a superuser (it
   then becomes theirs). A re-registration that changes nothing records nothing.
3. The owner or a superuser removes a provider by its id; a removed provider's id is
   unknown from then on. A worker's end removes all its providers (decide_workers).
4. A connection joins a provider's room (`providers:<name>`) for the worker that
   serves it, under the same ownership and session rules as job rooms.
"""

from __future__ import annotations

from datetime import datetime

from . import commands as c
from . import errors as e
from . import events as ev
from .decide_workers import IncompleteStateError, attach_connection, live_worker, require_owner
from .model import (
    GLOBAL_ROOM,
    INTERNAL_ROOM,
    Actor,
    invalid_room_detail,
    is_valid_room_id,
    job_full_name,
)
from .state import LedgerState, ProviderState, WorkerState


def register_provider(state: LedgerState, cmd: c.RegisterProvider) -> list[ev.Event]:
    if not is_valid_room_id(cmd.room_id):
        raise e.InvalidRoomIdError(invalid_room_detail(cmd.room_id))
    if cmd.room_id in (GLOBAL_ROOM, INTERNAL_ROOM) and not cmd.actor.superuser:
        raise e.ForbiddenError(f"only a superuser may register providers in {cmd.room_id}")
    if cmd.allowed_categories is not None and cmd.category not in cmd.allowed_categories:
        raise e.InvalidCategoryError(
            f"provider category {cmd.category!r} is not in the allowed list "
            f"{list(cmd.allowed_categories)}"
        )
    full_name = job_full_name(cmd.room_id, cmd.category, cmd.name)
    existing = state.live_provider(full_name)
    if existing is not None and existing.user != cmd.actor.user and not cmd.actor.superuser:
        raise e.ForbiddenError(f"provider {full_name} was registered by another user")
    out: list[ev.Event] = []
    worker = state.workers.get(cmd.worker_id)
    if worker is None and cmd.create_worker:
        out.append(ev.WorkerRegistered(worker_id=cmd.worker_id, user=cmd.actor.user, at=cmd.now))
        served: frozenset[str] = frozenset()
    else:
        worker = live_worker(state, cmd.worker_id)
        if worker.user != cmd.actor.user:
            raise e.WorkerNotFoundError(f"worker {cmd.worker_id} not found")
        served = worker.providers
    if existing is not None and _unchanged(existing, cmd):
        return out
    if existing is not None and existing.worker_id != cmd.worker_id:
        out.append(_unlink(state, existing, f"moved to worker {cmd.worker_id}", cmd.now))
    out.append(
        ev.ProviderRegistered(
            provider_name=full_name,
            provider_id=existing.id if existing is not None else cmd.provider_id,
            room_id=cmd.room_id,
            category=cmd.category,
            name=cmd.name,
            schema=cmd.schema_,
            content_type=cmd.content_type,
            worker_id=cmd.worker_id,
            user=cmd.actor.user,
            by=cmd.actor.user,
            at=cmd.now,
        )
    )
    if full_name not in served:
        out.append(
            ev.WorkerProviderLinked(worker_id=cmd.worker_id, provider_name=full_name, at=cmd.now)
        )
    return out


def _unchanged(provider: ProviderState, cmd: c.RegisterProvider) -> bool:
    return (
        provider.schema_ == cmd.schema_
        and provider.content_type == cmd.content_type
        and provider.worker_id == cmd.worker_id
        and provider.user == cmd.actor.user
    )


def _unlink(
    state: LedgerState, provider: ProviderState, reason: str, now: datetime
) -> ev.WorkerProviderUnlinked:
    worker = state.workers.get(provider.worker_id)
    if worker is None:
        raise IncompleteStateError(f"worker {provider.worker_id} of {provider.full_name}")
    return ev.WorkerProviderUnlinked(
        worker_id=worker.id, provider_name=provider.full_name, reason=reason, at=now
    )


def remove_provider(state: LedgerState, cmd: c.RemoveProvider) -> list[ev.Event]:
    provider = state.live_provider(cmd.provider_name)
    if provider is None or provider.id != cmd.provider_id:
        raise e.ProviderNotFoundError(f"provider {cmd.provider_id} not found")
    if cmd.actor.user != provider.user and not cmd.actor.superuser:
        raise e.ForbiddenError(f"provider {provider.full_name} belongs to another user")
    reason = "deleted" if cmd.actor.user == provider.user else f"deleted by {cmd.actor.user}"
    return [
        ev.ProviderRemoved(
            provider_name=provider.full_name,
            provider_id=provider.id,
            worker_id=provider.worker_id,
            reason=reason,
            by=cmd.actor.user,
            at=cmd.now,
        ),
        _unlink(state, provider, reason, cmd.now),
    ]


def join_provider_room(state: LedgerState, cmd: c.JoinProviderRoom) -> list[ev.Event]:
    worker = _serving_worker(state, cmd.worker_id, cmd.provider_name, cmd.actor)
    out = attach_connection(worker, cmd.sid, cmd.now)
    if cmd.provider_name not in (worker.provider_rooms if not out else frozenset()):
        out.append(
            ev.ProviderRoomJoined(
                worker_id=worker.id, sid=cmd.sid, provider_name=cmd.provider_name, at=cmd.now
            )
        )
    return out


def leave_provider_room(state: LedgerState, cmd: c.LeaveProviderRoom) -> list[ev.Event]:
    worker = live_worker(state, cmd.worker_id)
    require_owner(cmd.actor, worker)
    if worker.sid != cmd.sid:
        raise e.StaleSessionError(f"connection {cmd.sid} does not speak for {worker.id}")
    if cmd.provider_name not in worker.provider_rooms:
        raise e.NotInRoomError(f"worker {worker.id} is not in the room of {cmd.provider_name}")
    return [
        ev.ProviderRoomLeft(
            worker_id=worker.id, sid=cmd.sid, provider_name=cmd.provider_name, at=cmd.now
        )
    ]


def _serving_worker(
    state: LedgerState, worker_id: str, provider_name: str, actor: Actor
) -> WorkerState:
    worker = live_worker(state, worker_id)
    require_owner(actor, worker)
    if state.live_provider(provider_name) is None:
        raise e.ProviderNotFoundError(f"provider {provider_name} not found")
    if provider_name not in worker.providers:
        raise e.ForbiddenError(f"worker {worker.id} does not serve provider {provider_name}")
    return worker
