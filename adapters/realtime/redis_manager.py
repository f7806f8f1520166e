"""`ResyncingRedisManager`: python-socketio's Redis manager, told when it subscribes again,
that publishes an emit to one of workerledger's rooms only when another host is in it.

Several hosts share rooms and emits through Redis; pub/sub is fire-and-forget, so what
was published while a host's subscription was down is lost to it. The manager counts
each re-subscription and lets a consumer await the next one (`resubscribed`); the
host's `LedgerRuntime` does, and makes its own clients resynchronise
(`WorkerSockets.resync_local`). The manager knows nothing of the handlers, so it can be
built before the AsyncServer that needs it, and nothing is attached to it afterwards.

Room directory (room_directory.py): every host records in Redis which tracked rooms
(`room:`, `jobs:`, `providers:`) have a local member, and with `skip_empty_rooms` an
emit to such a room is delivered locally and published only when some OTHER live host
has a member (one script: the check and the PUBLISH), instead of every host receiving
and decoding every message. The rule that no event a client is entitled to is lost:

- a local sid entering a tracked room (`enter_room`, or another host's `enter_room`
  request, `_handle_enter_room`) first writes this host's field, so any emit made after
  the enter returned (after the client's join ack) sees the room occupied;
- the field is removed only when the room has no local member left (after a leave or a
  disconnect, under the same per-room lock as entering; best effort: a stale field
  only costs a publish), and a refresh task (every `refresh_seconds`) re-asserts the
  fields of rooms with local members, removes the others, renews the host's liveness
  key (TTL `liveness_ttl_seconds`) and removes the fields of hosts whose key is gone;
- when the directory may have lost this host's entries (Redis restarted: the
  subscription comes back; the liveness key had lapsed, so others removed its fields;
  a field was missing at a refresh; a registration failed), the host re-registers
  every room with a local member FIRST and then counts a re-subscription, so its
  clients resynchronise and re-read what they may have missed.

`skip_empty_rooms=False` publishes every emit as python-socketio does (rooms are still
registered): for a rolling upgrade from hosts that do not register, turn it on once
every host does.

Room mirror (room_mirror.py, mirror_link.py): the manager also keeps a local copy of
the rooms other hosts are in, under a lease of `mirror_lease_seconds`, and skips the
script (and, through `nobody_in`, the emitter skips python-socketio's emit) for a room
that has no local member and that the copy says no other host is in. A registration
that added a field waits, before the sid enters, until the other hosts acknowledged
it (`_others_know`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

import socketio

from .mirror_link import MirrorLink
from .room_directory import Asserted, RoomDirectory
from .room_mirror import RoomMirror

logger = logging.getLogger(__name__)

T = TypeVar("T")
LOCK_STRIPES = 64  # per-room locks, striped: entering and removing a field never interleave


class ResyncingRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """`socketio.AsyncRedisManager` that reports every re-subscription after a lost
    connection to Redis (`resubscribed`, and the optional `on_resubscribe` hook), and
    retries at most every `max_retry_seconds` instead of the library's 60 s; with
    `skip_empty_rooms`, an emit to a tracked room is published only when another live
    host has a member in it (the module docstring has the rule).

    `_redis_listen_with_retries` follows python-socketio 5.18's own loop (pinned <6);
    only the hook, the cap and the directory's recovery are added. Messages published
    while the subscription was down are gone; the hook is where the host makes its
    clients resynchronise.
    """

    connected: bool  # python-socketio's: whether `redis` was (re)built

    def __init__(
        self,
        url: str,
        *,
        channel: str,
        on_resubscribe: Callable[[], Coroutine[Any, Any, object]] | None = None,
        max_retry_seconds: float = 5.0,
        skip_empty_rooms: bool = True,
        liveness_ttl_seconds: float = 30.0,
        refresh_seconds: float | None = None,
        mirror_lease_seconds: float = 3.0,
    ) -> None:
        super().__init__(url, channel=channel)
        self.on_resubscribe = on_resubscribe
        self.max_retry_seconds = max_retry_seconds
        self.skip_empty_rooms = skip_empty_rooms
        self.directory = RoomDirectory(channel, self.host_id, ttl_seconds=liveness_ttl_seconds)
        self.refresh_seconds = (
            refresh_seconds if refresh_seconds is not None else liveness_ttl_seconds / 3
        )
        self.resubscriptions = 0
        self.room_emits_published = 0  # emits to tracked rooms another host was in
        self.room_emits_skipped = 0  # ... and those nobody else was in (not published)
        self.room_emits_checked = 0  # ... of those, the ones the directory's script checked
        # the rooms other hosts are in, kept from the directory's announcements: emits to
        # the others skip the script (room_mirror.py); a lease of 0 never skips it
        self.mirror = RoomMirror(mirror_lease_seconds)
        self.mirror_link = MirrorLink(
            self.directory,
            self.mirror,
            self._current_redis,
            self._redis_call,
            max_retry_seconds=max_retry_seconds,
        )
        self.join_waits = 0  # joins that waited for a host that did not acknowledge
        self._mirror_task: asyncio.Task[None] | None = None
        self._hooks: set[asyncio.Task[object]] = set()
        self._changed = asyncio.Event()  # set (and replaced) at every re-subscription
        self._locks = tuple(asyncio.Lock() for _ in range(LOCK_STRIPES))
        self._registered: set[tuple[str, str]] = set()  # (namespace, room) we may have a field in
        self._pending: set[tuple[str, str]] = set()  # rooms whose last local member left
        self._removed_meanwhile: set[str] | None = None  # fields removed during a refresh
        self._alive = False  # this host's liveness key was written
        self._resync_due = False  # entries may be missing: re-assert, then resynchronise
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._refreshing = asyncio.Lock()
        self._directory_task: asyncio.Task[None] | None = None
        self._closing = False

    # --- re-subscriptions ---------------------------------------------------------------

    async def resubscribed(self, after: int) -> int:
        """Wait until there were more than `after` re-subscriptions; returns how many.

        A consumer loops `seen = await manager.resubscribed(seen)`: re-subscriptions
        while it was busy are coalesced into one wake-up, none is missed. A recovery of
        the room directory counts as one (clients resynchronise the same way).
        """
        while self.resubscriptions <= after:
            await self._changed.wait()
        return self.resubscriptions

    async def _redis_listen_with_retries(self) -> Any:
        retry_sleep = 1.0
        subscribed = False
        lost = False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    await self.pubsub.subscribe(self.channel)
                    subscribed = True
                    retry_sleep = 1.0
                    if lost:
                        await self.refresh()  # a restarted Redis has no directory
                        lost = False
                        self._resubscribed()
                async for message in self.pubsub.listen():
                    yield message
            except Exception as exc:
                logger.warning(
                    "Socket.IO manager cannot receive from Redis (%s); retrying in %.0f s",
                    exc,
                    retry_sleep,
                )
                subscribed = False
                lost = True
                await asyncio.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, self.max_retry_seconds)

    def _resubscribed(self, why: str = "subscribed to Redis again") -> None:
        self.resubscriptions += 1
        logger.warning("Socket.IO manager %s; resynchronising clients", why)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self.on_resubscribe is not None:
            task = asyncio.get_running_loop().create_task(self.on_resubscribe())
            self._hooks.add(task)
            task.add_done_callback(self._hooks.discard)

    # --- start and stop ------------------------------------------------------------------

    def initialize(self) -> None:
        super().initialize()
        if self._directory_task is None:
            loop = asyncio.get_running_loop()
            self._directory_task = loop.create_task(self._keep_directory(), name="room-directory")
            self._mirror_task = loop.create_task(self.mirror_link.run(), name="room-mirror")

    async def aclose(self) -> None:
        """Stop the refresh task and remove this host's entries (best effort; without
        it they lapse with the liveness key)."""
        tasks = {t for t in (self._directory_task, self._mirror_task) if t is not None}
        self._directory_task = self._mirror_task = None
        self._closing = True
        self._wake.set()
        while tasks := {task for task in tasks if not task.done()}:
            for task in tasks:
                task.cancel()  # again if redis-py swallowed it (8.2 can, mid-command)
            await asyncio.wait(tasks, timeout=0.1)
        try:
            await self._redis_call(self.directory.release)
        except Exception as exc:
            logger.warning("could not remove this host's rooms from Redis (%s)", exc)

    # --- emitting ------------------------------------------------------------------------

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        room = message.get("room")
        if isinstance(room, str) and room not in self.rooms.get(message.get("namespace"), {}):
            return  # no local participant: python-socketio would encode it for nobody
        await super()._handle_emit(message)

    def nobody_in(self, namespace: str, room: object) -> bool:
        """True when an emit to `room` would reach nobody: no local member, and the
        mirror holds that no other host is in it (counted as a skipped emit)."""
        if not self.skip_empty_rooms or not isinstance(room, str):
            return False
        key = self.directory.room_key(namespace, room)
        return key is not None and not self._occupied(namespace, room) and self._skips(key)

    def _skips(self, key: str) -> bool:
        """Whether the mirror holds that no other host is in the room (a skipped emit)."""
        if not self.mirror.nobody_else_in(key, asyncio.get_running_loop().time()):
            return False
        self.room_emits_skipped += 1
        return True

    async def _publish(self, data: dict[str, Any]) -> Any:
        key = self._tracked_emit(data) if self.skip_empty_rooms else None
        if key is None:
            return await super()._publish(data)
        if self._skips(key):
            return -1
        message = self.json.dumps(data)
        try:  # python-socketio's reconnect-and-retry, as its own _publish
            receivers, seq = await self._redis_call(
                lambda redis: self.directory.publish_if_occupied(redis, key, message)
            )
        except Exception as exc:
            self._get_logger().error(
                "Cannot publish to redis... giving up", extra={"redis_exception": str(exc)}
            )
            return None
        self.room_emits_checked += 1
        if receivers < 0:
            self.room_emits_skipped += 1
            self.mirror.found_empty(key, seq)
        else:
            self.room_emits_published += 1
        return receivers

    def _tracked_emit(self, data: dict[str, Any]) -> str | None:
        if data.get("method") != "emit" or data.get("callback") is not None:
            return None
        return self.directory.room_key(data.get("namespace"), data.get("room"))

    # --- entering and leaving ------------------------------------------------------------

    async def enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> Any:
        if not self._is_local(sid, namespace):
            return await super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        return await self._registered_first(
            namespace, room, lambda: super(ResyncingRedisManager, self).enter_room(
                sid, namespace, room, eio_sid=eio_sid
            )
        )  # fmt: skip

    async def _handle_enter_room(self, message: dict[str, Any]) -> Any:
        sid, namespace = message.get("sid"), message.get("namespace")
        if not self._is_local(sid, namespace):
            return await super()._handle_enter_room(message)
        return await self._registered_first(
            namespace or "/", message.get("room"),
            lambda: super(ResyncingRedisManager, self)._handle_enter_room(message),
        )  # fmt: skip

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        if self.directory.tracks(room) and not self._occupied(namespace, room):
            self._pending.add((namespace, room))
            self._settled.clear()
            self._wake.set()

    def _is_local(self, sid: Any, namespace: Any) -> bool:
        return bool(self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace))

    def _occupied(self, namespace: str, room: str) -> bool:
        return bool(self.rooms.get(namespace, {}).get(room))

    @contextlib.asynccontextmanager
    async def _room_lock(self, key: str) -> AsyncIterator[None]:
        async with self._locks[hash(key) % LOCK_STRIPES]:
            yield

    async def _registered_first(
        self, namespace: str, room: Any, enter: Callable[[], Awaitable[T]]
    ) -> T:
        """`enter()` (a local sid entering `room`) once this host's field is in the room's
        hash; a room that already has a local member has it (or its loss is seen and
        resynchronised). When Redis cannot be reached the sid enters all the same and
        the next refresh re-registers and resynchronises."""
        key = self.directory.room_key(namespace, room)
        if key is None:
            return await enter()
        async with self._room_lock(key):
            if not self._occupied(namespace, room):
                try:
                    asserted: Asserted = await self._redis_call(
                        lambda redis: self.directory.assert_rooms(redis, [key])
                    )
                except Exception as exc:
                    logger.warning("could not register room %s in Redis (%s)", room, exc)
                    self._resync_due = True
                    self._wake.set()
                else:
                    self._registered.add((namespace, room))
                    if not asserted.existed and self._alive:
                        self._resync_due = True  # the liveness key had lapsed
                        self._wake.set()
                    self._alive = True
                    await self._others_know(asserted, room)
            return await enter()

    async def _others_know(self, asserted: Asserted, room: object) -> None:
        """Until no other host can skip an emit to the room just announced: each lease
        holder acknowledged the announcement, or a lease could have lapsed meanwhile
        (room_mirror.py). A fresh epoch (Redis lost the directory) waits for that too:
        its lease holders from before cannot be listed."""
        if not asserted.seq:
            return
        bound = self.mirror.lease_seconds * 1.1 + 0.1  # the lease key's TTL
        loop = asyncio.get_running_loop()
        lapsed_at = loop.time() + bound - asserted.epoch_age_seconds  # leases of before
        holders, epoch, seq = asserted.lease_holders, asserted.epoch, asserted.seq
        try:
            async with asyncio.timeout(bound):
                await self.mirror.all_acked(holders, epoch, seq)
        except TimeoutError:
            self.join_waits += 1
            missing = sorted(self.mirror.missing_acks(holders, epoch, seq))
            logger.warning("room %s: hosts %s did not acknowledge it; waited out their lease",
                           room, missing)  # fmt: skip
        if loop.time() < lapsed_at:  # a fresh epoch: a lease from before may still be held
            self.join_waits += 1
            await asyncio.sleep(lapsed_at - loop.time())

    async def settled(self) -> None:
        """Wait until every room that lost its last local member was removed from the
        directory (tests)."""
        await self._settled.wait()

    # --- the refresh task ----------------------------------------------------------------

    async def refresh(self) -> bool:
        """Remove the fields of rooms without a local member, re-assert those with one,
        renew the liveness key and remove dead hosts' fields. True when entries of this
        host were missing (lapsed liveness key, a lost field, a failed registration):
        its clients must resynchronise."""
        async with self._refreshing:
            self._pending.update(r for r in self._registered if not self._occupied(*r))
            await self._remove_pending()
            occupied = [
                (namespace, room)
                for namespace, rooms in self.rooms.items()
                for room, members in rooms.items()
                if members and self.directory.tracks(room)
            ]
            keys = {key: r for r in occupied if (key := self.directory.room_key(*r))}
            due, self._resync_due = self._resync_due, False
            self._removed_meanwhile = set()
            try:
                asserted = await self._redis_call(
                    lambda redis: self.directory.assert_rooms(redis, list(keys), reap=True)
                )
                existed, added = asserted.existed, asserted.missing
            except BaseException:
                self._resync_due = self._resync_due or due
                raise
            finally:
                removed, self._removed_meanwhile = self._removed_meanwhile, None
            self._registered.update(keys.values())
            for key in removed:  # its last member left while we re-asserted it
                if key in keys and not self._occupied(*keys[key]):
                    self._pending.add(keys[key])
                    self._wake.set()
            lost = [key for key in added if key not in removed]
            lapsed = self._alive and not existed
            self._alive = True
            if lost or lapsed:
                logger.warning(
                    "room directory had lost entries of this host (%s)",
                    "liveness key lapsed" if lapsed else f"{len(lost)} room(s)",
                )
            # the clients resynchronise once this returns: by then no other host may
            # skip an emit to a room re-registered here
            await self._others_know(asserted, f"{len(added)} re-registered room(s)")
            return due or lapsed or bool(lost)

    async def _remove_pending(self) -> None:
        while self._pending:
            namespace, room = self._pending.pop()
            key = self.directory.room_key(namespace, room)
            if key is None:
                continue
            async with self._room_lock(key):
                if self._occupied(namespace, room):
                    continue
                try:
                    await self._redis_call(partial(self.directory.remove, room_key=key))
                except BaseException:
                    self._pending.add((namespace, room))
                    raise
                self._registered.discard((namespace, room))
                if self._removed_meanwhile is not None:
                    self._removed_meanwhile.add(key)
        self._settled.set()

    async def _keep_directory(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time()  # at once: the liveness key
        retry = 0.0
        while not self._closing:
            delay = next_refresh - loop.time()
            if delay > 0 and not self._pending and not self._resync_due:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):  # not wait_for: 3.11's can eat a cancel
                        await self._wake.wait()
            self._wake.clear()
            try:
                await self._remove_pending()
                if self._resync_due or loop.time() >= next_refresh:
                    if await self.refresh():
                        self._resubscribed("re-registered its rooms in Redis")
                    next_refresh = loop.time() + self.refresh_seconds
                retry = 0.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retry = min(max(2 * retry, 0.5), self.max_retry_seconds, self.refresh_seconds)
                logger.warning("room directory: Redis unreachable (%s); retrying", exc)
                next_refresh = min(next_refresh, loop.time() + retry)
                await asyncio.sleep(retry)  # a back-off, not a synchronisation

    def _current_redis(self) -> Any:
        if not self.connected:
            self._redis_connect()
        return self.redis

    async def _redis_call(self, operation: Callable[[Any], Awaitable[T]]) -> T:
        """`operation(redis)` with python-socketio's reconnect-and-retry (2 attempts)."""
        for retries_left in range(1, -1, -1):
            try:
                return await operation(self._current_redis())
            except Exception:
                if retries_left == 0:
                    raise
                self.connected = False
        raise AssertionError("unreachable")
