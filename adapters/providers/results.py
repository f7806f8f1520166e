"""The provider result cache port and its one-process implementation.

A REST read of a provider answers from this cache, or dispatches one request to the
provider's worker (guarded by an in-flight mark) and waits until the worker's POSTed
result is stored and announced (`notify`). The cache is ephemeral, never part of the
event log; every host of a deployment must share it (see `redis_results`).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Protocol


@dataclass(frozen=True)
class CachedResult:
    """A provider's answer: the raw body with the content type it is served as."""

    content_type: str
    body: bytes


class ResultCache(Protocol):
    """Results by key with a TTL, in-flight marks, and waiters woken from any host.

    Results and in-flight marks live in separate namespaces: one key may name both.
    """

    async def get(self, key: str) -> CachedResult | None:
        """The stored, unexpired result, or None."""
        ...

    async def store(self, key: str, result: CachedResult, ttl_seconds: float) -> None:
        """Store (or replace) the result for `ttl_seconds`; does not wake waiters."""
        ...

    async def acquire_inflight(self, key: str, ttl_seconds: float) -> bool:
        """True for the first caller only, until released or `ttl_seconds` passed (SET NX)."""
        ...

    async def release_inflight(self, key: str) -> None:
        """Drop the in-flight mark (no error when there is none)."""
        ...

    async def wait_for(self, key: str, timeout: float) -> CachedResult | None:
        """The result at once when stored; else wait for a `notify(key)` from any host and
        re-read, until a result is there or `timeout` seconds passed (then None)."""
        ...

    async def notify(self, key: str) -> None:
        """Wake every `wait_for(key)` on every host sharing the cache."""
        ...

    async def delete(self, key: str) -> None:
        """Forget the result (no error when there is none)."""
        ...

    async def aclose(self) -> None:
        """Release connections and tasks; pending `wait_for` calls return None."""
        ...


def check_ttl(ttl_seconds: float) -> None:
    """Refuse a TTL that is not a finite positive number of seconds."""
    if not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
        raise ValueError(f"ttl_seconds must be a finite number > 0, not {ttl_seconds!r}")


class LocalWaiters:
    """The `wait_for` calls parked in one cache instance, by key.

    Each call holds an event that `wake(key)` sets; `blocked` counts the calls parked
    between two reads (what a test awaits before it notifies). `close()` wakes them all
    for good.
    """

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}
        self.blocked = 0
        self.closed = False

    @contextmanager
    def registered(self, key: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._events.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            events = self._events.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[key]

    def wake(self, key: str) -> None:
        for event in self._events.get(key, ()):
            event.set()

    def wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()

    def close(self) -> None:
        self.closed = True
        self.wake_all()

    async def park(self, event: asyncio.Event, deadline: float) -> bool:
        """Wait for `event` until the loop-time `deadline`: True when woken in time."""
        if self.closed:
            return False
        self.blocked += 1
        try:
            async with asyncio.timeout_at(deadline):
                await event.wait()
        except TimeoutError:
            return False
        finally:
            self.blocked -= 1
        return not self.closed


async def await_result(
    read: Callable[[], Awaitable[CachedResult | None]],
    wake: asyncio.Event,
    waiters: LocalWaiters,
    deadline: float,
) -> CachedResult | None:
    """Read; park until woken; read again; until a result or the deadline (None).

    `wake` is cleared before each read, so a wake-up that lands during the read is kept
    and causes one more read instead of being lost.
    """
    while not waiters.closed:
        wake.clear()
        result = await read()
        if result is not None:
            return result
        if not await waiters.park(wake, deadline):
            return None
    return None


class MemoryResultCache:
    """`ResultCache` for one process. TTLs follow the injected monotonic `clock` (tests
    advance it); `wait_for` timeouts follow the event loop's clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._results: dict[str, tuple[float, CachedResult]] = {}
        self._inflight: dict[str, float] = {}
        # (expires_at, is_inflight, key): entries whose expiry no longer matches the
        # stored one (replaced or removed since) are skipped when popped
        self._expiries: list[tuple[float, bool, str]] = []
        self._waiters = LocalWaiters()

    @property
    def blocked_waiters(self) -> int:
        """`wait_for` calls currently parked awaiting a notification."""
        return self._waiters.blocked

    def _purge(self) -> float:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, is_inflight, key = heapq.heappop(self._expiries)
            if is_inflight:
                if self._inflight.get(key) == expires_at:
                    del self._inflight[key]
            else:
                entry = self._results.get(key)
                if entry is not None and entry[0] == expires_at:
                    del self._results[key]
        return now

    async def get(self, key: str) -> CachedResult | None:
        self._purge()
        entry = self._results.get(key)
        return None if entry is None else entry[1]

    async def store(self, key: str, result: CachedResult, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
        expires_at = self._purge() + ttl_seconds
        self._results[key] = (expires_at, result)
        heapq.heappush(self._expiries, (expires_at, False, key))

    async def acquire_inflight(self, key: str, ttl_seconds: float) -> bool:
        check_ttl(ttl_seconds)
        now = self._purge()
        if key in self._inflight:
            return False
        self._inflight[key] = now + ttl_seconds
        heapq.heappush(self._expiries, (now + ttl_seconds, True, key))
        return True

    async def release_inflight(self, key: str) -> None:
        self._inflight.pop(key, None)

    async def wait_for(self, key: str, timeout: float) -> CachedResult | None:
        deadline = asyncio.get_running_loop().time() + max(timeout, 0.0)
        with self._waiters.registered(key) as wake:
            return await await_result(partial(self.get, key), wake, self._waiters, deadline)

    async def notify(self, key: str) -> None:
        self._waiters.wake(key)

    async def delete(self, key: str) -> None:
        self._results.pop(key, None)

    async def aclose(self) -> None:
        self._waiters.close()
