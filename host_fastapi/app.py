"""The reference host: FastAPI (REST) wrapped by python-socketio's ASGI app.

`create_app(settings)` builds everything at call time (no import-time side effects):
a fresh `AsyncServer`, the ledger on `open_store(DATABASE_URL)`, the Socket.IO
handlers, the REST router and the sweeper, which runs in FastAPI's lifespan after the
ledger caught up with the log. `build_host` returns the parts too (tests, benchmarks).

Several hosts: with `SOCKETIO_MANAGER_URL` the server uses `ResyncingRedisManager` on
`SOCKETIO_CHANNEL` (emits and room operations reach every host; after a Redis outage
each host tells its own clients to resynchronise); on PostgreSQL a `CommitListener`
LISTENs for the log's NOTIFY so long-polls wake when another host commits.

Start-up that fails on the store (an event in the log that cannot be decoded, a
database that cannot be read) fails the ASGI lifespan with that StoreError's one line
as the message, instead of a traceback; unreadable read-model rows never fail it
(`restore_view` folds the log instead).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import socketio
from fastapi import FastAPI
from workerledger.adapters.auth import StaticTokens
from workerledger.adapters.ledger import Ledger
from workerledger.adapters.ports import StoreError
from workerledger.adapters.realtime.emitter import CompositeEmitter, SocketIOEmitter
from workerledger.adapters.realtime.handlers import (
    ResyncingRedisManager,
    WorkerSockets,
    register_socketio_handlers,
)
from workerledger.adapters.rest.router import create_router
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.read_models import restore_view, tables_of
from workerledger.adapters.store.url import open_store
from workerledger.adapters.sweeper import Sweeper
from workerledger.adapters.task_waiters import (
    CommitListener,
    TaskWaiters,
    notify_channel,
    postgres_conninfo,
)
from workerledger.core import Actor

from .settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Host:
    asgi: Any  # socketio.ASGIApp
    api: FastAPI
    sio: Any  # socketio.AsyncServer
    ledger: Ledger
    sockets: WorkerSockets
    sweeper: Sweeper
    settings: Settings


def build_host(settings: Settings | None = None) -> Host:
    settings = settings or Settings()
    if not settings.auth_tokens:
        raise ValueError("WORKERLEDGER_AUTH_TOKENS is empty: every route needs a token")
    authenticate = StaticTokens(
        {
            token: Actor(user=i.user, superuser=i.superuser)
            for token, i in settings.auth_tokens.items()
        }
    )
    manager = (
        ResyncingRedisManager(settings.socketio_manager_url, channel=settings.socketio_channel)
        if settings.socketio_manager_url
        else None
    )
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        ping_interval=settings.ping_interval_seconds,
        ping_timeout=settings.ping_timeout_seconds,
        max_http_buffer_size=settings.max_body_bytes,
    )
    waiters = TaskWaiters()
    ledger = Ledger(
        LedgerService(open_store(settings.database_url)),
        emitter=CompositeEmitter(SocketIOEmitter(sio), waiters),
    )
    timeout = settings.heartbeat_timeout_seconds
    sockets = register_socketio_handlers(
        sio,
        ledger,
        authenticate,
        grace_seconds=settings.disconnect_grace_seconds,
        heartbeat_timeout_seconds=timeout,
        limits=settings.input_limits(),
        events_per_second=settings.socketio_rate,
        event_burst=settings.socketio_burst,
    )
    if manager is not None:
        manager.on_resubscribe = sockets.resync_local
    sweeper = Sweeper(
        ledger,
        interval_seconds=settings.sweep_interval_seconds,
        heartbeat_timeout_seconds=timeout,
        local_sids=lambda: sockets.local_sids,
        on_tick=waiters.notify_all,
        claim_timeout_seconds=settings.claim_timeout_seconds,
    )

    tables = tables_of(ledger.service.store)
    commits = _commit_listener(settings.database_url, ledger, waiters)

    async def checkpoint_read_model() -> None:
        if tables is not None:
            await ledger.read(tables.checkpoint)

    async def checkpoint_loop() -> None:
        while True:
            await asyncio.sleep(settings.checkpoint_interval_seconds)
            try:
                await checkpoint_read_model()
            except Exception:
                logger.exception("read-model checkpoint failed; retrying next interval")

    startup_failures: list[str] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # start from the read-model tables, then fold what the log holds beyond them
        try:
            await ledger.call(lambda: restore_view(ledger.service))
        except StoreError as error:
            startup_failures.append(f"workerledger cannot start: {error}")
            await asyncio.to_thread(ledger.close)
            raise
        if manager is not None and not sio.manager_initialized:
            # subscribe now rather than at the first connection, so that a client's
            # first room operations already hear the other hosts
            sio.manager_initialized = True
            manager.initialize()
        if commits is not None:
            commits.start()
        sweeper.start()
        checkpoints = asyncio.create_task(checkpoint_loop())
        try:
            yield
        finally:
            checkpoints.cancel()
            if commits is not None:
                await commits.stop()
            await sweeper.stop()
            await sockets.aclose()
            await checkpoint_read_model()
            await asyncio.to_thread(ledger.close)

    api = FastAPI(title="workerledger", lifespan=lifespan)
    api.include_router(
        create_router(
            ledger,
            authenticate,
            waiters=waiters,
            allowed_categories=settings.allowed_categories,
            long_poll_max_wait_seconds=settings.long_poll_max_wait_seconds,
            limits=settings.input_limits(),
        )
    )

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    asgi = _reporting_startup_failures(socketio.ASGIApp(sio, other_asgi_app=api), startup_failures)
    return Host(asgi, api, sio, ledger, sockets, sweeper, settings)


def _reporting_startup_failures(app: Any, failures: list[str]) -> Any:
    """`app`, whose failed lifespan start-up says `failures[-1]` instead of a traceback."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)

        async def send_message(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed" and failures:
                message = {**message, "message": failures[-1]}
            await send(message)

        await app(scope, receive, send_message)

    return asgi


def _commit_listener(
    database_url: str, ledger: Ledger, waiters: TaskWaiters
) -> CommitListener | None:
    """On PostgreSQL: wake this host's long-polls when any host commits (LISTEN/NOTIFY)."""
    conninfo = postgres_conninfo(database_url)
    channel = notify_channel(ledger.service.store)
    if conninfo is None or channel is None:
        return None

    async def wake() -> None:
        watched = waiters.watched()
        if watched:
            versions = await ledger.read(
                lambda view: {task_id: view.version(f"task:{task_id}") for task_id in watched}
            )
            waiters.wake_changed(versions)

    return CommitListener(conninfo, channel, wake)


def create_app(settings: Settings | None = None) -> Any:
    """The host as one ASGI app (FastAPI wrapped by `socketio.ASGIApp`)."""
    return build_host(settings).asgi
