"""`CommitListener` on a real PostgreSQL: it LISTENs only while long-polls wait
(`TaskWaiters.demand`), and catches up once after every LISTEN, so a commit made while
it was not listening is still seen by the wake pass that follows.

NOTIFYs are sent by a connection of the test's own (`pg_notify` on the listener's
channel), the way every append's transaction sends one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg
import pytest
from workerledger.adapters.task_waiters import CommitListener, TaskWaiters

pytestmark = pytest.mark.services

CHANNEL = "workerledger_events"  # what the recorder's channel looks like; any name works


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `condition` (the listener's own state) to a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Passes:
    """Counts `on_commit` passes; `next()` awaits the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    async def __call__(self) -> None:
        self.count += 1
        self._changed.set()

    async def after(self, seen: int) -> int:
        while self.count <= seen:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 10)
        return self.count


def notify(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))


async def started(
    url: str, waiters: TaskWaiters, passes: Callable[[], Awaitable[None]]
) -> CommitListener:
    listener = CommitListener(url, CHANNEL, passes, demand=waiters.demand, idle_check_seconds=0.05)
    listener.start()
    return listener


async def test_listens_only_while_a_request_waits(postgres_url: str) -> None:
    waiters, passes = TaskWaiters(), Passes()
    listener = await started(postgres_url, waiters, passes)
    try:
        await asyncio.to_thread(notify, postgres_url)  # nobody waits: not listening
        assert listener.listens == 0 and not listener.connected.is_set()

        with waiters.watch("task-1"):
            await asyncio.wait_for(listener.connected.wait(), 10)
            assert listener.listens == 1
            seen = await passes.after(0)  # the catch-up pass after the LISTEN
            await asyncio.to_thread(notify, postgres_url)
            seen = await passes.after(seen)  # woken by the NOTIFY
            assert listener.notifications == 1

        await until(lambda: not listener.connected.is_set(), "UNLISTEN after the last waiter")
        await asyncio.to_thread(notify, postgres_url)  # sent while not listening: never heard

        with waiters.watch("task-2"):
            await passes.after(seen)  # LISTEN again, then a catch-up pass covers the gap
            assert listener.listens == 2
            await asyncio.to_thread(notify, postgres_url)
            await until(lambda: listener.notifications == 2, "the NOTIFY after the second LISTEN")
        assert listener.notifications == 2  # the one sent while not listening never arrived
    finally:
        await listener.stop()


async def test_demand_follows_the_waiting_requests() -> None:
    waiters = TaskWaiters()
    assert not waiters.demand.is_set()
    with waiters.watch("a"), waiters.watch("a"):
        assert waiters.demand.is_set()
        with waiters.watch("b"):
            pass
        assert waiters.demand.is_set()  # "a" still waits
    assert not waiters.demand.is_set()


async def test_without_demand_it_always_listens(postgres_url: str) -> None:
    passes = Passes()
    listener = CommitListener(postgres_url, CHANNEL, passes)
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        seen = await passes.after(0)
        await asyncio.to_thread(notify, postgres_url)
        await passes.after(seen)
        assert listener.notifications == 1 and listener.listens == 1
    finally:
        await listener.stop()
