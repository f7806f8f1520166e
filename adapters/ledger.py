"""Ledger: the asyncio face of LedgerService, and the delivery of emissions.

The eventsourcing library and SQLite are synchronous, so every command and every
read runs on one dedicated thread (never on the event loop). Commands that arrive
while that thread is deciding or committing wait in a queue; the next turn takes all
of them as one group (`LedgerService.run_group`: one transaction for the group, each
command answered after it committed). Under light load a group is one command and
nothing waits longer than before. Emissions are handed
to the Emitter only after `execute` returned, i.e. after the events were committed:
persist, then deliver. If the process dies in between, the emissions are lost
(at-most-once delivery); watchers resynchronise from the REST listings.

Observers (metrics, the lifecycle log) see each committed decision, its events
included, right after the commit and before its emissions are delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Protocol, TypeVar

from workerledger.core import ClaimTask, Command, Decision, DomainError, Emission, LedgerState

from .commit_group import Claimed, Pending
from .ports import StoreError
from .projection import Projection
from .service import LedgerService

T = TypeVar("T")
logger = logging.getLogger(__name__)


class Emitter(Protocol):
    async def deliver(self, emissions: Sequence[Emission]) -> None:
        """Carry out emissions; must not raise (the events are already committed)."""
        ...


class DecisionObserver(Protocol):
    def observe(self, decision: Decision) -> None:
        """Look at a committed decision (runs on the event loop: quick, no I/O waits).

        A refusal the core recorded (a stale task report) is observed as a decision
        holding the recorded events and an empty state. Exceptions are logged, never
        raised to the command's caller (the events are already committed).
        """
        ...


class Ledger:
    """`service` on one thread, and `emitter` for what it decided (after the commit).

    The emitter and the observers are given once, at construction: a host's
    `LedgerRuntime` composes Socket.IO delivery and the long-poll waiters into one
    `CompositeEmitter`, and observes with its metrics and lifecycle log.
    """

    def __init__(
        self,
        service: LedgerService,
        emitter: Emitter | None = None,
        observers: Sequence[DecisionObserver] = (),
    ) -> None:
        self.service = service
        self.emitter = emitter
        self.observers = tuple(observers)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workerledger")
        self._queue: list[tuple[Pending, asyncio.Future[None] | None]] = []
        self._busy: asyncio.AbstractEventLoop | None = None  # the loop whose group runs
        self._committer: asyncio.Task[None] | None = None

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _decide(self, pending: Pending) -> Decision | Claimed | None:
        """Run `pending` at once when no group is in flight; otherwise queue it for the
        next group. Either way, return after its group committed."""
        loop = asyncio.get_running_loop()
        if self._busy is not loop:  # idle (or a stopped loop's leftover): run it now
            self._busy = loop
            try:
                await self._commit([(pending, None)])
            finally:
                self._next_group(loop)
            return pending.outcome()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((pending, done))
        await asyncio.shield(done)  # a cancelled caller does not cancel its group
        return pending.outcome()

    def _next_group(self, loop: asyncio.AbstractEventLoop) -> None:
        """After a group: hand what queued meanwhile to a committer task, or go idle."""
        if self._queue:
            self._committer = loop.create_task(self._commit_queued())
        else:
            self._busy = None

    async def _commit_queued(self) -> None:
        """Run groups on the ledger's thread until the queue is empty."""
        try:
            while self._queue:
                queued, self._queue = self._queue, []
                await self._commit(queued)
        finally:
            self._busy = None
            left, self._queue = self._queue, []  # cancelled: the loop is stopping
            _settle(left)

    async def _commit(self, queued: list[tuple[Pending, asyncio.Future[None] | None]]) -> None:
        group = [pending for pending, _ in queued]
        try:
            await self._run(partial(self.service.run_group, group))
        except Exception as error:  # not one member's outcome: the whole group's
            for pending in group:
                if not pending.done:
                    pending.fail(error)
        finally:
            _settle(queued)

    async def execute(
        self, command: Command, *, check: Callable[[Projection], None] | None = None
    ) -> Decision:
        """Decide and commit `command`; the decision once it is durable.

        `check` runs on the ledger's thread on the view the command is decided on, just
        before it is (a host rule the core does not know, such as the orphan rule of a
        submit); a DomainError it raises refuses the command and changes nothing."""
        try:
            decision = await self._decide(Pending(command, check=check))
        except DomainError as error:
            if error.record:  # the service stored them before re-raising
                recorded = Decision.model_construct(
                    state=LedgerState(), events=error.record, emissions=()
                )
                self.observe(recorded)
            raise
        assert isinstance(decision, Decision)
        self.observe(decision)
        await self.deliver(decision.emissions)
        return decision

    async def claim_next(self, command: ClaimTask) -> Claimed | None:
        claimed = await self._decide(Pending(command, claim=True))
        assert claimed is None or isinstance(claimed, Claimed)
        if claimed is not None:
            self.observe(claimed.decision)
            await self.deliver(claimed.decision.emissions)
        return claimed

    def observe(self, decision: Decision) -> None:
        """Show a committed decision to every observer; a failing one is logged."""
        if not decision.events:
            return
        for observer in self.observers:
            try:
                observer.observe(decision)
            except Exception:
                logger.exception("decision observer %r failed", observer)

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


def _settle(queued: Sequence[tuple[Pending, asyncio.Future[None] | None]]) -> None:
    """Wake every waiter of `queued`; a member its group never decided (the loop is
    stopping) fails rather than answering nothing."""
    for pending, done in queued:
        if not pending.done:
            pending.fail(StoreError("the ledger stopped before this command's group"))
        if done is not None and not done.done():
            done.set_result(None)
