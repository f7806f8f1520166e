"""Ledger: the asyncio face of LedgerService, and the delivery of emissions.

The eventsourcing library and SQLite are synchronous, so every command and every
read runs on one dedicated thread (never on the event loop). Emissions are handed
to the Emitter only after `execute` returned, i.e. after the events were committed:
persist, then deliver. If the process dies in between, the emissions are lost
(at-most-once delivery); watchers resynchronise from the REST listings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from workerledger.core import ClaimTask, Command, Decision, Emission

from .projection import Projection
from .service import Claimed, LedgerService

T = TypeVar("T")


class Emitter(Protocol):
    async def deliver(self, emissions: Sequence[Emission]) -> None:
        """Carry out emissions; must not raise (the events are already committed)."""
        ...


class Ledger:
    """`service` on one thread, and `emitter` for what it decided (after the commit).

    The emitter is given once, at construction: a host's `LedgerRuntime` composes
    Socket.IO delivery and the long-poll waiters into one `CompositeEmitter`.
    """

    def __init__(self, service: LedgerService, emitter: Emitter | None = None) -> None:
        self.service = service
        self.emitter = emitter
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workerledger")

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def execute(self, command: Command) -> Decision:
        decision = await self._run(lambda: self.service.execute(command))
        await self.deliver(decision.emissions)
        return decision

    async def claim_next(self, command: ClaimTask) -> Claimed | None:
        claimed = await self._run(lambda: self.service.claim_next(command))
        if claimed is not None:
            await self.deliver(claimed.decision.emissions)
        return claimed

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the ledger's thread (store I/O that must not block the loop)."""
        return await self._run(fn)

    async def read(
        self, query: Callable[[Projection], T], *, liveness: bool = True, catch_up: bool = True
    ) -> T:
        """Run a query on an up-to-date view, on the ledger's thread.

        `liveness=False` skips reading other hosts' heartbeats (for queries that do not
        show or judge them: the hot paths of submit, claim and task reads).
        `catch_up=False` reads the view as it is, without a store read: for answering a
        command this host just ran (the service folds its own committed events into
        the view before it returns the decision).
        """

        def run() -> T:
            if catch_up:
                self.service.catch_up(liveness=liveness)
            return query(self.service.view)

        return await self._run(run)

    async def deliver(self, emissions: Sequence[Emission]) -> None:
        if self.emitter is not None and emissions:
            await self.emitter.deliver(emissions)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.service.close()
