"""`ResyncingRedisManager`: python-socketio's Redis manager, told when it subscribes again.

Several hosts share rooms and emits through Redis; pub/sub is fire-and-forget, so what
was published while a host's subscription was down is lost to it. The manager counts
each re-subscription and lets a consumer await the next one (`resubscribed`); the
host's `LedgerRuntime` does, and makes its own clients resynchronise
(`WorkerSockets.resync_local`). The manager knows nothing of the handlers, so it can be
built before the AsyncServer that needs it, and nothing is attached to it afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import socketio

logger = logging.getLogger(__name__)


class ResyncingRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """`socketio.AsyncRedisManager` that reports every re-subscription after a lost
    connection to Redis (`resubscribed`, and the optional `on_resubscribe` hook), and
    retries at most every `max_retry_seconds` instead of the library's 60 s.

    `_redis_listen_with_retries` follows python-socketio 5.18's own loop (pinned <6);
    only the hook and the cap are added. Messages published while the subscription was
    down are gone; the hook is where the host makes its clients resynchronise.
    """

    def __init__(
        self,
        url: str,
        *,
        channel: str,
        on_resubscribe: Callable[[], Coroutine[Any, Any, object]] | None = None,
        max_retry_seconds: float = 5.0,
    ) -> None:
        super().__init__(url, channel=channel)
        self.on_resubscribe = on_resubscribe
        self.max_retry_seconds = max_retry_seconds
        self.resubscriptions = 0
        self._hooks: set[asyncio.Task[object]] = set()
        self._changed = asyncio.Event()  # set (and replaced) at every re-subscription

    async def resubscribed(self, after: int) -> int:
        """Wait until there were more than `after` re-subscriptions; returns how many.

        A consumer loops `seen = await manager.resubscribed(seen)`: re-subscriptions
        while it was busy are coalesced into one wake-up, none is missed.
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

    def _resubscribed(self) -> None:
        self.resubscriptions += 1
        logger.warning("Socket.IO manager subscribed to Redis again; resynchronising clients")
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self.on_resubscribe is not None:
            task = asyncio.get_running_loop().create_task(self.on_resubscribe())
            self._hooks.add(task)
            task.add_done_callback(self._hooks.discard)
