"""Room policies the host supplies: which rooms are writable, who may watch a room.

zndraw-joblib 0.1.7 let a host lock a room by overriding one FastAPI dependency
(`verify_writable_room`); ZnDraw locks rooms that way. Here the host passes a
`RoomPolicy` to `LedgerRuntime(room_policy=...)`:

- `check_writable(room_id, actor)` runs before a job or provider is registered in
  `room_id` and before a task is submitted to it; it raises `RoomLockedError` (423
  `room-locked`, nothing recorded) to refuse, or returns to allow.
- `may_watch(room_id, actor)` decides a Socket.IO `join_room` (a watcher's
  subscription to `room:<id>` status events); False answers the error ack
  `forbidden`.

The default, `OpenRooms`, allows every write and lets any authenticated user watch
any room (what workerledger always did).
"""

from __future__ import annotations

from typing import Protocol

from workerledger.core import Actor


class RoomPolicy(Protocol):
    async def check_writable(self, room_id: str, actor: Actor) -> None:
        """Raise `RoomLockedError` if `actor` may not write to `room_id` now."""
        ...

    async def may_watch(self, room_id: str, actor: Actor) -> bool:
        """True if `actor` may receive the status events of `room_id`."""
        ...


class OpenRooms:
    """The default policy: every room is writable and watchable by any authenticated user."""

    async def check_writable(self, room_id: str, actor: Actor) -> None:
        return None

    async def may_watch(self, room_id: str, actor: Actor) -> bool:
        return True
