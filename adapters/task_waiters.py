"""Wake long-polls (`GET /tasks/{id}` with `Prefer: wait=N`) on task status changes.

`TaskWaiters` is an `Emitter`: the ledger hands it every committed batch, and each
`task_status_event` wakes the requests waiting on that task. Changes committed by
another host do not pass through this process:

- on PostgreSQL every append also sends `NOTIFY` on the event table's channel (the
  eventsourcing recorder does it inside the insert transaction). `CommitListener`
  LISTENs on it while some request is waiting (`TaskWaiters.demand`; a host with no
  long-poll open receives no notification, its own appends' included); after each
  burst of notifications, and once after each LISTEN (commits before it sent nothing
  it could hear), the host catches up once and `TaskWaiters.wake_changed` wakes the
  long-polls whose task's stream version moved. A remote completion reaches a
  long-poll within a few milliseconds.
- as a fallback (no PostgreSQL, or the LISTEN connection is down and reconnecting)
  the sweeper calls `notify_all()` after each pass: a long-poll then sees a remote
  change within one sweep interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from workerledger.core import Emission, Emit

from .ports import EventStore

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)


class TaskWaiters:
    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._seen: dict[str, int] = {}  # task id -> stream version at the last wake pass
        self.demand = asyncio.Event()  # set while some request waits (CommitListener)

    @contextmanager
    def watch(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set on every change of `task_id` while the block runs."""
        changed = asyncio.Event()
        self._waiting.setdefault(task_id, set()).add(changed)
        self.demand.set()
        try:
            yield changed
        finally:
            waiting = self._waiting.get(task_id)
            if waiting is not None:
                waiting.discard(changed)
                if not waiting:
                    del self._waiting[task_id]
                    self._seen.pop(task_id, None)
                    if not self._waiting:
                        self.demand.clear()

    def watched(self) -> list[str]:
        """The ids of the tasks someone is waiting on."""
        return list(self._waiting)

    def notify(self, task_id: str) -> None:
        for changed in self._waiting.get(task_id, ()):
            changed.set()

    def notify_all(self) -> None:
        for waiting in self._waiting.values():
            for changed in waiting:
                changed.set()

    def wake_changed(self, versions: Mapping[str, int]) -> int:
        """Wake the waiters of every task whose stream version differs from the last pass
        (or was not looked at before: one spurious re-read is cheaper than a missed
        change). Returns how many tasks were woken."""
        woken = 0
        for task_id, version in versions.items():
            if task_id in self._waiting and self._seen.get(task_id) != version:
                self._seen[task_id] = version
                self.notify(task_id)
                woken += 1
        return woken

    async def deliver(self, emissions: Sequence[Emission]) -> None:
        for emission in emissions:
            if isinstance(emission, Emit) and emission.event == "task_status_event":
                self.notify(str(emission.data.get("id")))


class CommitListener:
    """LISTEN on a PostgreSQL channel and run `on_commit` after each burst of NOTIFYs.

    Notifications are coalesced: however many commits arrive while `on_commit` runs,
    it runs once more afterwards. With `demand`, the listener LISTENs only while that
    event is set and UNLISTENs within `idle_check_seconds` after it was cleared: a
    host with nobody waiting spends nothing on the notifications of every append
    (its own included). `on_commit` runs after every LISTEN (after a (re)connection,
    or when demand returns), since commits made while the listener was not listening
    sent nothing it could hear. A lost connection is retried every `retry_seconds`;
    the sweeper's fallback covers the gap.
    """

    def __init__(
        self,
        conninfo: str,
        channel: str,
        on_commit: Callable[[], Awaitable[object]],
        *,
        demand: asyncio.Event | None = None,
        retry_seconds: float = 1.0,
        idle_check_seconds: float = 1.0,
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.on_commit = on_commit
        self.demand = demand
        self.retry_seconds = retry_seconds
        self.idle_check_seconds = idle_check_seconds
        self.notifications = 0  # received (for tests and figures)
        self.listens = 0  # LISTENs issued (for tests and figures)
        self.connected = asyncio.Event()  # set while LISTENing
        self._pending = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._listen(), name="commit-listener"),
                loop.create_task(self._consume(), name="commit-consumer"),
            ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await self._serve(conn)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning(
                    "commit listener on %r lost its connection (%s); retrying in %.1f s",
                    self.channel,
                    error,
                    self.retry_seconds,
                )
            self.connected.clear()
            await asyncio.sleep(self.retry_seconds)

    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """LISTEN while there is demand, UNLISTEN while there is none (until cancelled)."""
        from psycopg import sql

        channel = sql.Identifier(self.channel)
        demand = self.demand
        idle_check = None if demand is None else self.idle_check_seconds
        while True:
            if demand is not None:
                await demand.wait()
            await conn.execute(sql.SQL("LISTEN {}").format(channel))
            self.listens += 1
            self.connected.set()
            self._pending.set()  # catch up with what was committed while not listening
            while demand is None or demand.is_set():
                notifies = conn.notifies(timeout=idle_check)
                async with contextlib.aclosing(notifies):
                    async for _ in notifies:
                        self.notifications += 1
                        self._pending.set()
            await conn.execute(sql.SQL("UNLISTEN {}").format(channel))
            self.connected.clear()  # nothing committed from here on is heard

    async def _consume(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            try:
                await self.on_commit()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("waking long-polls after a remote commit failed")


def commit_channel(store: EventStore) -> tuple[str, str] | None:
    """(libpq connection string, channel) of the NOTIFY the store's recorder sends at
    every append; None for a store that sends none (memory://, SQLite)."""
    engine = getattr(store, "engine", None)
    channel = getattr(getattr(store, "events", None), "channel_name", None)
    if not isinstance(engine, Engine) or engine.dialect.name != "postgresql":
        return None
    if not isinstance(channel, str) or not channel:
        return None
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return conninfo, channel
