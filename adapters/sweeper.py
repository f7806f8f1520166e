"""The sweeper: the fallback detector for what no disconnect handler reports.

Every `interval_seconds` it
1. refreshes the liveness of the workers whose Socket.IO connection is attached to
   this process (`RecordHeartbeat` as the worker's owner), so that if this process
   dies, the sweeper of any other host reaps them after the heartbeat timeout;
2. issues `SweepWorker` for each of the view's sweep candidates (silent REST-only
   workers, expired grace windows). The core re-checks each one, so racing sweepers
   on other hosts are harmless no-ops;
3. issues `ExpireClaim` for each CLAIMED task whose claim lease ran out (a worker
   that never started it: its claim answer was lost, or it hangs), so a lost answer
   costs at most `claim_timeout_seconds`; the core re-checks each one;
4. wakes long-polls so they see changes committed by other hosts (the fallback bound;
   on PostgreSQL the host's CommitListener wakes them at once, see task_waiters.py).
Errors are logged and the loop continues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from datetime import datetime

from workerledger.core import (
    Actor,
    Command,
    DomainError,
    ExpireClaim,
    RecordHeartbeat,
    SweepWorker,
)

from .auth import Clock, utc_now
from .ledger import Ledger
from .projection import Projection

logger = logging.getLogger(__name__)

DEFAULT_CLAIM_TIMEOUT_SECONDS = 30.0
"""A CLAIMED task its live worker has not started within this long is requeued."""


class Sweeper:
    def __init__(
        self,
        ledger: Ledger,
        *,
        interval_seconds: float,
        heartbeat_timeout_seconds: float,
        local_sids: Callable[[], Collection[str]] = frozenset,
        on_tick: Callable[[], None] | None = None,
        clock: Clock = utc_now,
        claim_timeout_seconds: float | None = DEFAULT_CLAIM_TIMEOUT_SECONDS,
    ) -> None:
        self.ledger = ledger
        self.claim_timeout_seconds = claim_timeout_seconds
        self.interval_seconds = interval_seconds
        self.heartbeat_timeout_seconds = heartbeat_timeout_seconds
        self.local_sids = local_sids
        self.on_tick = on_tick
        self.clock = clock
        self.sweeps = 0  # completed passes (for tests and figures)
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self) -> list[str]:
        """One pass; returns the ids of the workers it ended."""
        now = self.clock()
        await self._refresh_attached(now)
        timeout = self.heartbeat_timeout_seconds
        candidates = await self.ledger.read(lambda view: view.sweep_candidates(now, timeout))
        ended: list[str] = []
        for worker_id in candidates:
            command = SweepWorker(worker_id=worker_id, heartbeat_timeout_seconds=timeout, now=now)
            if await self._run(command):
                ended.append(worker_id)
        await self._expire_claims(now)
        self.sweeps += 1
        if self.on_tick is not None:
            self.on_tick()
        return ended

    async def _expire_claims(self, now: datetime) -> None:
        lease = self.claim_timeout_seconds
        if lease is None:
            return
        expired = await self.ledger.read(lambda view: view.expired_claims(now, lease))
        for task_id in expired:
            if await self._run(ExpireClaim(task_id=task_id, claim_timeout_seconds=lease, now=now)):
                logger.info("task %s requeued: claim not started within %ss", task_id, lease)

    async def _run(self, command: Command) -> bool:
        """Execute one sweep command; True if it recorded anything. Never raises."""
        try:
            return bool((await self.ledger.execute(command)).events)
        except DomainError as error:  # ended or moved on meanwhile
            logger.debug("%s: %s", command.type, error.detail)
        except Exception:
            logger.exception("%s failed", command.type)
        return False

    async def _refresh_attached(self, now: datetime) -> None:
        sids = frozenset(self.local_sids())
        if not sids:
            return

        def attached(view: Projection) -> list[tuple[str, str]]:
            return [(worker.id, worker.user) for worker in view.online_workers_on(sids)]

        for worker_id, user in await self.ledger.read(attached):
            command = RecordHeartbeat(worker_id=worker_id, actor=Actor(user=user), now=now)
            try:
                await self.ledger.execute(command)
            except DomainError as error:  # ended meanwhile
                logger.debug("liveness of %s: %s", worker_id, error.detail)

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                logger.exception("sweep failed")
            await asyncio.sleep(self.interval_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
