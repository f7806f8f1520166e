"""Deliver core emissions to python-socketio, and the typed face of its AsyncServer.

python-socketio has no type annotations; `SocketIOServer` names the few coroutines
the adapters call, so everything else stays strictly typed. `SocketIOEmitter` is a
one-to-one `match` from emission to server verb; an event to a room nobody on this
host is in is dropped before python-socketio encodes it, when the server's manager is
the single-host one (a Redis-managed cluster may have listeners on other hosts: there
`ResyncingRedisManager` publishes an emit to a watcher, job or provider room only when
another host has a member in it, redis_manager.py). Delivery runs after the commit, so a
failure is logged and never raised: the state change already happened and clients
resynchronise from the REST listings (at-most-once notifications).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import socketio
from workerledger.core import DisconnectSid, Emission, Emit, EnterRoom, LeaveRoom

from ..ledger import Emitter
from .redis_manager import ResyncingRedisManager

logger = logging.getLogger(__name__)


class SocketIOServer(Protocol):
    """The subset of `socketio.AsyncServer` the adapters use."""

    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None: ...

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None: ...

    async def emit(
        self, event: str, data: Any = None, to: str | None = None, namespace: str | None = None
    ) -> None: ...

    async def disconnect(self, sid: str, namespace: str | None = None) -> None: ...

    async def get_session(self, sid: str, namespace: str | None = None) -> dict[str, Any]: ...

    async def save_session(
        self, sid: str, session: dict[str, Any], namespace: str | None = None
    ) -> None: ...

    def on(
        self, event: str, handler: Callable[..., Any] | None = None, namespace: str | None = None
    ) -> Any: ...


class SocketIOEmitter:
    """`Emitter` over a python-socketio `AsyncServer` (or its Redis-managed cluster)."""

    def __init__(self, sio: SocketIOServer, namespace: str = "/") -> None:
        self.sio = sio
        self.namespace = namespace

    async def deliver(self, emissions: Sequence[Emission]) -> None:
        for emission in emissions:
            try:
                await self._deliver_one(emission)
            except Exception:
                logger.exception("could not deliver %s", emission.type)

    async def _deliver_one(self, emission: Emission) -> None:
        ns = self.namespace
        match emission:
            case EnterRoom(sid=sid, room=room):
                await self.sio.enter_room(sid, room, namespace=ns)
            case LeaveRoom(sid=sid, room=room):
                await self.sio.leave_room(sid, room, namespace=ns)
            case Emit(event=event, data=data, to=to):
                if not self._nobody_in(to):
                    await self.sio.emit(event, data, to=to, namespace=ns)
            case DisconnectSid(sid=sid):
                await self.sio.disconnect(sid, namespace=ns)

    def _nobody_in(self, room: str | None) -> bool:
        """True when `room` (a room or a sid) has no participant anywhere: known for
        python-socketio's single-host manager, and for a tracked room that the Redis
        manager's mirror knows no host is in (redis_manager.py)."""
        manager = getattr(self.sio, "manager", None)
        if room is None or manager is None:
            return False
        if isinstance(manager, ResyncingRedisManager):
            return manager.nobody_in(self.namespace, room)
        if type(manager) is not socketio.AsyncManager:
            return False
        rooms: dict[str, dict[str, Any]] = manager.rooms
        return not rooms.get(self.namespace, {}).get(room)


class CompositeEmitter:
    """Deliver to several emitters in order; one failing never stops the others."""

    def __init__(self, *emitters: Emitter) -> None:
        self.emitters = emitters

    async def deliver(self, emissions: Sequence[Emission]) -> None:
        for emitter in self.emitters:
            try:
                await emitter.deliver(emissions)
            except Exception:
                logger.exception("emitter %r failed", emitter)
