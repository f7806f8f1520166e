"""`RedisResultCache`: the provider result cache shared by every host through Redis.

Keys (under `prefix`): `result:{key}` holds a framed value (4-byte big-endian length
of the UTF-8 content type, the content type, the body) set with PX; `inflight:{key}` is
a SET NX PX mark. `notify` publishes the key on the one channel `{prefix}notify`; each
instance keeps one subscriber connection whose listener wakes its local waiters. A
waiter registers, waits until the subscription is confirmed, then re-reads, so a
notification published after its read reaches it. When the subscription is lost and
comes back, every local waiter re-reads (what was published meanwhile is gone); a
waiter whose Redis stays away returns None at its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import uuid
from functools import partial
from typing import Any, cast

import redis.asyncio as aioredis

from .results import CachedResult, LocalWaiters, await_result, check_ttl

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
_MAX_RETRY_SECONDS = 2.0


def _frame(result: CachedResult) -> bytes:
    content_type = result.content_type.encode()
    return _LENGTH.pack(len(content_type)) + content_type + result.body


def _unframe(raw: bytes) -> CachedResult:
    (length,) = _LENGTH.unpack_from(raw)
    start = _LENGTH.size
    return CachedResult(raw[start : start + length].decode(), raw[start + length :])


def _milliseconds(ttl_seconds: float) -> int:
    check_ttl(ttl_seconds)
    return max(1, math.ceil(ttl_seconds * 1000))


class RedisResultCache:
    """`ResultCache` on Redis (`redis.asyncio`), shared by every host using `prefix`."""

    def __init__(self, url: str, *, prefix: str = "workerledger:providers:") -> None:
        self.prefix = prefix
        self.channel = f"{prefix}notify"
        # a name per instance, so one instance's connections can be told apart on the server
        self.client_name = f"wl-providers-{uuid.uuid4().hex[:12]}"
        self._client = aioredis.Redis.from_url(
            url, client_name=self.client_name, socket_connect_timeout=5
        )
        self._waiters = LocalWaiters()
        self._subscribed = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    @property
    def blocked_waiters(self) -> int:
        """`wait_for` calls of this instance currently parked awaiting a notification."""
        return self._waiters.blocked

    def _result_key(self, key: str) -> str:
        return f"{self.prefix}result:{key}"

    def _inflight_key(self, key: str) -> str:
        return f"{self.prefix}inflight:{key}"

    async def get(self, key: str) -> CachedResult | None:
        # the client does not decode responses: a value is bytes
        raw = cast("bytes | None", await self._client.get(self._result_key(key)))
        return None if raw is None else _unframe(raw)

    async def store(self, key: str, result: CachedResult, ttl_seconds: float) -> None:
        await self._client.set(self._result_key(key), _frame(result), px=_milliseconds(ttl_seconds))

    async def acquire_inflight(self, key: str, ttl_seconds: float) -> bool:
        px = _milliseconds(ttl_seconds)
        return bool(await self._client.set(self._inflight_key(key), b"1", nx=True, px=px))

    async def release_inflight(self, key: str) -> None:
        await self._client.delete(self._inflight_key(key))

    async def delete(self, key: str) -> None:
        await self._client.delete(self._result_key(key))

    async def notify(self, key: str) -> None:
        self._waiters.wake(key)  # this host's waiters at once; the others through Redis
        await self._client.publish(self.channel, key)

    async def wait_for(self, key: str, timeout: float) -> CachedResult | None:
        if self._waiters.closed:
            return None
        deadline = asyncio.get_running_loop().time() + max(timeout, 0.0)
        cached = await self.get(key)
        if cached is not None:
            return cached
        with self._waiters.registered(key) as wake:
            self._start_listener()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._subscribed.wait()
            except TimeoutError:
                return None
            return await await_result(partial(self.get, key), wake, self._waiters, deadline)

    def _start_listener(self) -> None:
        if self._listener is None and not self._waiters.closed:
            self._listener = asyncio.create_task(self._listen(), name=f"{self.client_name}-sub")

    async def _listen(self) -> None:
        """Keep one subscription to the channel; dispatch its notifications locally."""
        retry = 0.05
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    retry = 0.05
                    self._dispatch(message)
            except Exception as error:  # the listener must outlive any failure
                logger.warning(
                    "provider result cache lost its Redis subscription (%s); retrying in %.2f s",
                    error,
                    retry,
                )
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await asyncio.sleep(retry)
            retry = min(retry * 2, _MAX_RETRY_SECONDS)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            # confirmed, the first time or again after a reconnect (redis-py re-subscribes
            # on its own): whatever was published in between is lost, so everyone re-reads
            self._subscribed.set()
            self._waiters.wake_all()
        elif kind == "message":
            data = message.get("data")
            if isinstance(data, bytes):
                self._waiters.wake(data.decode(errors="replace"))

    async def aclose(self) -> None:
        self._waiters.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        self._subscribed.set()  # a waiter still awaiting the subscription returns None
        await self._client.aclose()
