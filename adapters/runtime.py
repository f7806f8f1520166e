"""`LedgerRuntime`: the composition root. One object builds every part of a host, once.

From explicit arguments (a database URL or an `EventStore`, the authenticator, an
optional python-socketio server, the policies, the input limits, the clock) the
constructor builds, in the order each needs the other:

    store -> view (restored from the read-model tables) -> LedgerService(timed store, view)
          -> Ledger(service, emitter = Socket.IO + task waiters [+ yours],
                    observers = metrics + lifecycle log)
          -> WorkerSockets (the Socket.IO handlers) -> Sweeper -> CommitListener

Nothing is attached afterwards: `create_router(runtime)` and
`register_socketio_handlers(sio, runtime)` read what they need from the runtime, and
the Redis manager is only listened to (`ResyncingRedisManager.resubscribed`), never
given a callback. `start()` and `stop()` run in the ASGI lifespan; between them the
host serves. The constructor reads the read-model tables (a quick start); everything
that folds the log or starts a task waits for `start()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from workerledger.core import DEFAULT_CATEGORIES, Stream

from .auth import Authenticator, Clock, utc_now
from .input_limits import DEFAULT_LIMITS, InputLimits
from .internal import InternalExecutor
from .ledger import Emitter, Ledger
from .observability.lifecycle_log import LifecycleLog
from .observability.metrics import LedgerMetrics
from .ports import EventStore
from .providers.results import MemoryResultCache, ResultCache
from .realtime.acks import EVENT_BURST, EVENTS_PER_SECOND
from .realtime.emitter import CompositeEmitter, SocketIOEmitter, SocketIOServer
from .realtime.handlers import WorkerSockets
from .realtime.redis_manager import ResyncingRedisManager
from .rest.context import ProviderSettings
from .room_policy import OpenRooms, RoomPolicy
from .service import LedgerService
from .store.read_models import RestoredView, finish_restore, load_view, tables_of
from .store.url import open_store
from .sweeper import DEFAULT_CLAIM_TIMEOUT_SECONDS, Sweeper
from .task_waiters import CommitListener, TaskWaiters, commit_channel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LedgerPolicies:
    """The host's rules and timers (the `WORKERLEDGER_*` settings of the same names).

    The core is told the rules on the commands that use them, so the log records each
    decision with the policy it was made under.
    """

    heartbeat_timeout_seconds: float = 60.0  # a silent worker is lost after this
    disconnect_grace_seconds: float = 10.0  # a dropped socket keeps its claims this long
    sweep_interval_seconds: float = 5.0  # reaping lag; liveness refresh of own sockets
    claim_timeout_seconds: float | None = DEFAULT_CLAIM_TIMEOUT_SECONDS  # claim lease
    checkpoint_interval_seconds: float = 10.0  # read-model tables brought up to date
    allowed_categories: tuple[str, ...] = DEFAULT_CATEGORIES
    long_poll_max_wait_seconds: float = 60.0  # cap on `Prefer: wait=N`
    allowed_provider_categories: tuple[str, ...] | None = None  # None: any category
    provider_result_ttl_seconds: float = 300.0  # a provider's answer is served this long
    provider_inflight_ttl_seconds: float = 30.0  # one request per read until answered
    provider_long_poll_default_seconds: float = 5.0  # a read waits this long by default
    provider_long_poll_max_seconds: float = 30.0  # cap on a read's `Prefer: wait=N`
    events_per_second: float = EVENTS_PER_SECOND  # Socket.IO rate per connection
    event_burst: int = EVENT_BURST  # Socket.IO events a connection may send at once


class LedgerRuntime:
    """Every part of one host, built once from explicit arguments; `start()` / `stop()`.

    `store`: a database URL (`open_store`) or an open `EventStore` (the runtime closes
    it at `stop()`). `room_policy`: the host's writable-room and watcher rules
    (default `OpenRooms`). `internal_executor`: runs tasks of `@internal` jobs (none:
    they are refused with 503). `provider_results`: the provider result cache
    (default in memory; a `RedisResultCache` shares it between hosts). `sio`: the host's
    `socketio.AsyncServer`, if it serves Socket.IO;
    committed emissions go to it and `sockets` holds the handlers for
    `register_socketio_handlers(sio, runtime)`. `emitters` receive every committed
    batch after Socket.IO and the long-poll waiters (tests, your own delivery).
    `metrics` (a `LedgerMetrics`, served by `create_metrics_route(runtime)`) and the
    lifecycle log (logger `workerledger.lifecycle`) observe every committed decision.
    """

    def __init__(
        self,
        store: EventStore | str,
        *,
        authenticate: Authenticator,
        sio: SocketIOServer | None = None,
        policies: LedgerPolicies | None = None,
        limits: InputLimits = DEFAULT_LIMITS,
        clock: Clock = utc_now,
        namespace: str = "/",
        emitters: Sequence[Emitter] = (),
        room_policy: RoomPolicy | None = None,
        internal_executor: InternalExecutor | None = None,
        provider_results: ResultCache | None = None,
    ) -> None:
        self.policies = policies if policies is not None else LedgerPolicies()
        self.room_policy: RoomPolicy = room_policy if room_policy is not None else OpenRooms()
        self.internal_executor = internal_executor
        self.provider_results: ResultCache = (
            provider_results if provider_results is not None else MemoryResultCache()
        )
        self.authenticate, self.sio, self.limits, self.clock = authenticate, sio, limits, clock
        self.store = open_store(store) if isinstance(store, str) else store
        try:
            self._restored: RestoredView | None = load_view(self.store)
        except BaseException:
            self.store.close()
            raise
        self.metrics = LedgerMetrics()  # this process's figures, in their own registry
        self.service = LedgerService(
            self.metrics.timed(self.store),
            view=self._restored.view,
            current_appends=True,  # PostgreSQL: no catch-up read before each decision
        )
        self.waiters = TaskWaiters()
        delivery: list[Emitter] = [SocketIOEmitter(sio, namespace)] if sio is not None else []
        self.ledger = Ledger(
            self.service,
            emitter=CompositeEmitter(*delivery, self.waiters, *emitters),
            observers=(self.metrics, LifecycleLog()),
        )
        self.sockets = self._sockets(sio, namespace) if sio is not None else None
        self.sweeper = Sweeper(
            self.ledger,
            interval_seconds=self.policies.sweep_interval_seconds,
            heartbeat_timeout_seconds=self.policies.heartbeat_timeout_seconds,
            local_sids=self._local_sids,
            on_tick=self.waiters.notify_all,
            clock=clock,
            claim_timeout_seconds=self.policies.claim_timeout_seconds,
        )
        self.tables = tables_of(self.store)
        self.commits = self._commit_listener()
        self._tasks: list[asyncio.Task[None]] = []

    def provider_settings(self) -> ProviderSettings:
        """What the provider routes need: the result cache and the provider policies."""
        policies = self.policies
        return ProviderSettings(
            results=self.provider_results,
            allowed_categories=policies.allowed_provider_categories,
            result_ttl_seconds=policies.provider_result_ttl_seconds,
            inflight_ttl_seconds=policies.provider_inflight_ttl_seconds,
            long_poll_default_seconds=policies.provider_long_poll_default_seconds,
            long_poll_max_seconds=policies.provider_long_poll_max_seconds,
        )

    def _sockets(self, sio: SocketIOServer, namespace: str) -> WorkerSockets:
        policies = self.policies
        return WorkerSockets(
            sio,
            self.ledger,
            self.authenticate,
            grace_seconds=policies.disconnect_grace_seconds,
            heartbeat_timeout_seconds=policies.heartbeat_timeout_seconds,
            clock=self.clock,
            namespace=namespace,
            limits=self.limits,
            events_per_second=policies.events_per_second,
            event_burst=policies.event_burst,
            room_policy=self.room_policy,
        )

    def _local_sids(self) -> Collection[str]:
        return self.sockets.local_sids if self.sockets is not None else frozenset()

    def _commit_listener(self) -> CommitListener | None:
        """On PostgreSQL: wake this host's long-polls when any host commits (LISTEN/NOTIFY,
        only while one is open)."""
        channel = commit_channel(self.store)
        if channel is None:
            return None
        waiters, ledger = self.waiters, self.ledger

        async def wake() -> None:
            watched = waiters.watched()
            if watched:
                versions = await ledger.read(
                    lambda view: {task: view.version(Stream.task(task).text) for task in watched}
                )
                waiters.wake_changed(versions)

        return CommitListener(*channel, wake, demand=waiters.demand)

    def _redis_manager(self) -> ResyncingRedisManager | None:
        manager = getattr(self.sio, "manager", None)
        return manager if isinstance(manager, ResyncingRedisManager) else None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Fold the log beyond the restored view, then start the background work.

        A StoreError (an event the log holds but this build cannot decode, a database
        that cannot be read) propagates after the store was closed: the host cannot
        start. Unreadable read-model rows never fail it (the cache rule).
        """
        restored, self._restored = self._restored, None
        if restored is not None:
            try:
                await self.ledger.call(lambda: finish_restore(self.service, restored))
            except BaseException:
                await asyncio.to_thread(self.ledger.close)
                raise
        loop = asyncio.get_running_loop()
        manager = self._redis_manager()
        if manager is not None:
            self._subscribe_now(manager)
            if self.sockets is not None:
                resync = self._resync_after_outages(manager, self.sockets)
                self._tasks.append(loop.create_task(resync, name="socketio-resync"))
        if self.commits is not None:
            self.commits.start()
        self.sweeper.start()
        if self.tables is not None:
            self._tasks.append(loop.create_task(self._checkpoints(), name="checkpoints"))

    async def stop(self) -> None:
        """Stop the background work, finish releases in flight (grace timers are
        cancelled: their deadlines are in the log), write a last checkpoint, close."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        manager = self._redis_manager()
        if manager is not None:  # this host's rooms leave the Redis room directory now
            await manager.aclose()
        if self.commits is not None:
            await self.commits.stop()
        await self.sweeper.stop()
        if self.sockets is not None:
            await self.sockets.aclose()
        closers = [self.provider_results.aclose()]
        executor_close = getattr(self.internal_executor, "aclose", None)
        if callable(executor_close):
            closers.append(executor_close())
        await asyncio.gather(*closers, return_exceptions=True)
        try:
            await self.checkpoint()
        finally:
            await asyncio.to_thread(self.ledger.close)

    async def checkpoint(self) -> bool:
        """Write what the view changed to the read-model tables; False if nothing moved."""
        if self.tables is None:
            return False
        return await self.ledger.read(self.tables.checkpoint)

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.policies.checkpoint_interval_seconds)
            try:
                await self.checkpoint()
            except Exception:
                logger.exception("read-model checkpoint failed; retrying next interval")

    def _subscribe_now(self, manager: ResyncingRedisManager) -> None:
        """Subscribe to Redis now rather than at the first connection, so that a
        client's first room operations already hear the other hosts."""
        sio: Any = self.sio
        if not sio.manager_initialized:
            sio.manager_initialized = True
            manager.initialize()

    @staticmethod
    async def _resync_after_outages(manager: ResyncingRedisManager, sockets: WorkerSockets) -> None:
        """After each re-subscription, tell this host's own clients to resynchronise
        (what other hosts published meanwhile was lost to them)."""
        seen = manager.resubscriptions
        while True:
            seen = await manager.resubscribed(seen)
            await sockets.resync_local()
