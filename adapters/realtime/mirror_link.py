"""`MirrorLink`: keeps a host's `RoomMirror` (room_mirror.py) fed from Redis.

One task per host, on a pub/sub connection of its own (never stalled behind the
Socket.IO messages the manager handles): it subscribes to the directory channel, loads
the mirror once the subscription is confirmed (so no announcement falls between the
load and the subscription), applies announcements and acknowledgements in the order
published, acknowledges other hosts' announcements, and renews the lease every third
of its length. Any failure invalidates the mirror (every emit then goes through the
directory's script) until the link is back and has loaded it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .room_directory import RoomDirectory
from .room_mirror import RoomMirror

logger = logging.getLogger(__name__)


class MirrorLink:
    """Feeds `mirror` from the directory's channel, through `redis()` (the manager's
    current client) and `call` (its reconnect-and-retry)."""

    def __init__(
        self,
        directory: RoomDirectory,
        mirror: RoomMirror,
        redis: Callable[[], Any],
        call: Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]],
        *,
        max_retry_seconds: float = 5.0,
    ) -> None:
        self.directory = directory
        self.mirror = mirror
        self._redis = redis
        self._call = call
        self.max_retry_seconds = max_retry_seconds

    async def run(self) -> None:
        retry = 0.0
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retry = min(max(2 * retry, 0.25), self.max_retry_seconds)
                logger.warning("room mirror: Redis unreachable (%s); retrying", exc)
            finally:
                self.mirror.invalidate()
            await asyncio.sleep(retry)  # a back-off, not a synchronisation

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        pubsub = self._redis().pubsub(ignore_subscribe_messages=False)
        try:
            await pubsub.subscribe(self.directory.announcements)
            renew_at = float("inf")  # once subscribed: load, then renew
            while True:
                timeout = max(0.0, renew_at - loop.time()) if renew_at < float("inf") else None
                message = await pubsub.get_message(timeout=timeout)
                if message is not None and message.get("type") == "subscribe":
                    renew_at = loop.time()  # the first load
                elif message is not None and message.get("type") == "message":
                    await self._handle(message["data"])
                    if self.mirror.epoch is None:  # an announcement was missed
                        renew_at = min(renew_at, loop.time())
                if loop.time() >= renew_at:
                    renew_at = await self._renew()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _renew(self) -> float:
        """Renew the lease (a load when the mirror is not loaded); the next renewal's time."""
        loop = asyncio.get_running_loop()
        mirror = self.mirror
        issued = loop.time()
        load = mirror.epoch is None
        leased = await self._call(
            lambda redis: self.directory.lease(redis, mirror.lease_seconds, load=load)
        )
        if load:
            mirror.loaded(leased.epoch, leased.seq, leased.rooms, issued)
        elif not mirror.renewed(leased.epoch, leased.seq, issued):
            return loop.time()  # another epoch: load again at once
        if mirror.lease_seconds <= 0:  # never trusted: the load only follows announcements
            return issued + 1.0
        return issued + max(mirror.lease_seconds / 3, 0.05)

    async def _handle(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            epoch, seq = str(message["e"]), int(message["s"])
        except (ValueError, KeyError, TypeError):
            logger.warning("room mirror: ignored a malformed directory message")
            return
        if "a" in message:  # an acknowledgement
            self.mirror.acked(str(message["a"]), epoch, seq)
            return
        if message.get("h") == self.directory.host_id:
            self.mirror.own(epoch, seq)
            return
        self.mirror.announced(epoch, seq, (str(key) for key in message.get("k", ())))
        await self._call(lambda redis: self.directory.acknowledge(redis, epoch, seq))
