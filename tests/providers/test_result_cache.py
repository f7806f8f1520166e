"""The provider result cache port against both implementations: in memory (TTLs on an
injected clock) and on the machine's Redis (TTLs in real time; two instances on one
prefix are two hosts). Anything expected to happen gets BOUND seconds before the test
fails; nothing is timed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis
from support.services import redis_prefix
from workerledger.adapters.providers.redis_results import RedisResultCache
from workerledger.adapters.providers.results import (
    CachedResult,
    LocalWaiters,
    MemoryResultCache,
    ResultCache,
    await_result,
)

BOUND = 5.0
RESULT = CachedResult("application/octet-stream", b"\x00\xff\x80raw\r\n\x00")
KEY = "provider-result:room:fs:files:3f2a"

Cache = MemoryResultCache | RedisResultCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """Makes caches of one kind and closes them; `short_ttl` and `after` let one test body
    watch a TTL run out on either clock."""

    make: Callable[[], Cache]
    clock: FakeClock | None = None
    url: str = ""
    caches: list[Cache] = field(default_factory=list)

    @property
    def short_ttl(self) -> float:
        return 30.0 if self.clock is not None else 0.05

    def cache(self) -> Cache:
        made = self.make()
        self.caches.append(made)
        return made

    async def after(self, ttl: float, condition: Callable[[], Awaitable[bool]]) -> bool:
        """Whether `condition` holds once `ttl` has passed: the fake clock is advanced past
        it; real time is polled until the condition holds, for at most BOUND seconds."""
        if self.clock is not None:
            self.clock.advance(ttl + 0.001)
            return await condition()
        deadline = asyncio.get_running_loop().time() + BOUND
        while not await condition():
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


@asynccontextmanager
async def redis_caches() -> AsyncIterator[Harness]:
    with redis_prefix() as (url, prefix):  # skips (or fails in CI) without Redis
        made = Harness(make=lambda: RedisResultCache(url, prefix=f"{prefix}:providers:"), url=url)
        try:
            yield made
        finally:
            for cache in made.caches:
                await cache.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "redis":
        async with redis_caches() as made:
            yield made
        return
    clock = FakeClock()
    made = Harness(make=lambda: MemoryResultCache(clock=clock), clock=clock)
    yield made
    for cache in made.caches:
        await cache.aclose()


@pytest.fixture
async def redis_harness() -> AsyncIterator[Harness]:
    """Two hosts share a cache only through Redis."""
    async with redis_caches() as made:
        yield made


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(BOUND):
        while not condition():
            await asyncio.sleep(0.005)


def conforms(cache: Cache) -> ResultCache:
    return cache  # mypy: both implementations satisfy the port


async def test_a_miss_is_none(harness: Harness) -> None:
    cache = conforms(harness.cache())
    assert await cache.get(KEY) is None
    assert await cache.wait_for(KEY, 0) is None


async def test_store_and_get_round_trip_binary_bodies(harness: Harness) -> None:
    cache = harness.cache()
    empty = CachedResult("text/plain; charset=utf-8; name=\u00e9t\u00e9", b"")
    await cache.store(KEY, RESULT, 60)
    await cache.store("other", empty, 60)
    assert await cache.get(KEY) == RESULT
    assert await cache.get("other") == empty
    await cache.store(KEY, empty, 60)  # replaces
    assert await cache.get(KEY) == empty
    assert await cache.acquire_inflight(KEY, 60)  # marks and results are apart
    await cache.delete(KEY)
    assert await cache.get(KEY) is None
    assert not await cache.acquire_inflight(KEY, 60)
    await cache.delete("never-stored")


async def test_a_result_expires_after_its_ttl(harness: Harness) -> None:
    cache = harness.cache()
    await cache.store(KEY, RESULT, harness.short_ttl)

    async def gone() -> bool:
        return await cache.get(KEY) is None

    assert await harness.after(harness.short_ttl, gone)


async def test_inflight_is_acquired_once_until_released_or_expired(harness: Harness) -> None:
    cache = harness.cache()
    assert await cache.acquire_inflight(KEY, 60)
    assert not await cache.acquire_inflight(KEY, 60)
    await cache.release_inflight(KEY)
    assert await cache.acquire_inflight(KEY, 60)
    assert not await cache.acquire_inflight(KEY, 60)
    await cache.release_inflight(KEY)
    await cache.release_inflight(KEY)  # nothing to release: no error

    assert await cache.acquire_inflight(KEY, harness.short_ttl)

    async def free_again() -> bool:
        return await cache.acquire_inflight(KEY, 60)

    assert await harness.after(harness.short_ttl, free_again)
    assert not await cache.acquire_inflight(KEY, 60)


async def test_memory_ttls_end_exactly_on_the_injected_clock() -> None:
    clock = FakeClock()
    cache = MemoryResultCache(clock=clock)
    await cache.store(KEY, RESULT, 10)
    assert await cache.acquire_inflight(KEY, 10)
    clock.advance(9.999)
    assert await cache.get(KEY) == RESULT
    assert not await cache.acquire_inflight(KEY, 10)
    await cache.store(KEY, RESULT, 10)  # a replaced result gets its new TTL
    clock.advance(0.001)
    assert await cache.get(KEY) == RESULT
    assert await cache.acquire_inflight(KEY, 10)
    clock.advance(10)
    assert await cache.get(KEY) is None


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan")])
async def test_ttls_must_be_finite_and_positive(harness: Harness, ttl: float) -> None:
    cache = harness.cache()
    with pytest.raises(ValueError):
        await cache.store(KEY, RESULT, ttl)
    with pytest.raises(ValueError):
        await cache.acquire_inflight(KEY, ttl)


async def test_wait_for_returns_a_cached_result_at_once(harness: Harness) -> None:
    cache = harness.cache()
    await cache.store(KEY, RESULT, 60)
    assert await cache.wait_for(KEY, 0) == RESULT


async def test_a_waiter_is_woken_by_a_later_store_and_notify(harness: Harness) -> None:
    cache = harness.cache()
    waiter = asyncio.create_task(cache.wait_for(KEY, BOUND))
    await until(lambda: cache.blocked_waiters == 1)
    await cache.store(KEY, RESULT, 60)
    await cache.notify(KEY)
    assert await waiter == RESULT
    assert cache.blocked_waiters == 0


async def test_a_wakeup_during_the_read_is_not_lost() -> None:
    # the notification lands while the waiter is reading (after its check, before it
    # parks): the waiter must read again rather than sleep until its deadline
    waiters = LocalWaiters()
    reads: list[int] = []

    async def read() -> CachedResult | None:
        reads.append(1)
        if len(reads) == 1:
            waiters.wake(KEY)  # stored and announced meanwhile
            return None
        return RESULT

    with waiters.registered(KEY) as wake:
        deadline = asyncio.get_running_loop().time() + BOUND
        assert await await_result(read, wake, waiters, deadline) == RESULT
    assert len(reads) == 2


async def test_every_concurrent_waiter_is_woken(harness: Harness) -> None:
    cache = harness.cache()
    waiters = [asyncio.create_task(cache.wait_for(KEY, BOUND)) for _ in range(25)]
    await until(lambda: cache.blocked_waiters == 25)
    await cache.store(KEY, RESULT, 60)
    await cache.notify(KEY)
    assert await asyncio.gather(*waiters) == [RESULT] * 25


async def test_a_waiter_times_out_with_none(harness: Harness) -> None:
    cache = harness.cache()
    other = asyncio.create_task(cache.wait_for(KEY, 0.2))
    await until(lambda: cache.blocked_waiters == 1)
    await cache.store("another-key", RESULT, 60)
    await cache.notify("another-key")
    assert await other is None
    assert cache.blocked_waiters == 0


@pytest.mark.services
async def test_two_hosts_share_results_marks_and_wakeups(redis_harness: Harness) -> None:
    host_a, host_b = redis_harness.cache(), redis_harness.cache()
    assert await host_a.acquire_inflight(KEY, 60)
    assert not await host_b.acquire_inflight(KEY, 60)
    await host_b.release_inflight(KEY)
    assert await host_a.acquire_inflight(KEY, 60)

    waiter = asyncio.create_task(host_a.wait_for(KEY, BOUND))
    await until(lambda: host_a.blocked_waiters == 1)
    await host_b.store(KEY, RESULT, 60)
    await host_b.notify(KEY)
    assert await waiter == RESULT
    assert await host_a.get(KEY) == RESULT


@pytest.mark.services
async def test_a_waiter_outlives_a_lost_subscription(redis_harness: Harness) -> None:
    host_a, host_b = redis_harness.cache(), redis_harness.cache()
    assert isinstance(host_a, RedisResultCache)
    waiter = asyncio.create_task(host_a.wait_for(KEY, BOUND))
    await until(lambda: host_a.blocked_waiters == 1)

    admin = aioredis.Redis.from_url(redis_harness.url)
    try:
        subscribers = [
            entry["id"]
            for entry in await admin.client_list()
            if entry["name"] == host_a.client_name and int(entry["sub"]) > 0
        ]
        assert len(subscribers) == 1
        await admin.client_kill_filter(_id=subscribers[0])
    finally:
        await admin.aclose()

    # host B's notification may fall in the gap; re-subscribing makes A re-read anyway
    await host_b.store(KEY, RESULT, 60)
    await host_b.notify(KEY)
    assert await waiter == RESULT

    again = asyncio.create_task(host_a.wait_for("next", BOUND))
    await until(lambda: host_a.blocked_waiters == 1)
    await host_b.store("next", RESULT, 60)
    await host_b.notify("next")
    assert await again == RESULT


async def test_aclose_ends_waiters_and_leaves_no_task(harness: Harness) -> None:
    before = asyncio.all_tasks()
    cache = harness.make()  # closed here, not by the fixture
    await cache.store("warm", RESULT, 60)
    assert await cache.wait_for("warm", 0) == RESULT
    waiter = asyncio.create_task(cache.wait_for(KEY, 60))
    await until(lambda: cache.blocked_waiters == 1)
    await cache.aclose()
    async with asyncio.timeout(BOUND):
        assert await waiter is None
    assert asyncio.all_tasks() - before == set()
    assert await cache.wait_for(KEY, 60) is None  # closed: no wait
