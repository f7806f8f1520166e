"""The reference host: FastAPI (REST) wrapped by python-socketio's ASGI app.

`create_app(settings)` builds everything at call time (no import-time side effects):
a fresh `AsyncServer`, the ledger on `open_store(DATABASE_URL)`, the Socket.IO
handlers, the REST router and the sweeper, which runs in FastAPI's lifespan after the
ledger caught up with the log. `build_host` returns the parts too (tests, benchmarks).
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
from workerledger.adapters.emitter import CompositeEmitter, SocketIOEmitter
from workerledger.adapters.ledger import Ledger
from workerledger.adapters.read_model_tables import restore_view, tables_of
from workerledger.adapters.rest_router import create_router
from workerledger.adapters.service import LedgerService
from workerledger.adapters.socketio_handlers import WorkerSockets, register_socketio_handlers
from workerledger.adapters.store_url import open_store
from workerledger.adapters.sweeper import Sweeper
from workerledger.adapters.task_waiters import TaskWaiters
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
        socketio.AsyncRedisManager(settings.socketio_manager_url)
        if settings.socketio_manager_url
        else None
    )
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        ping_interval=settings.ping_interval_seconds,
        ping_timeout=settings.ping_timeout_seconds,
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
    )
    sweeper = Sweeper(
        ledger,
        interval_seconds=settings.sweep_interval_seconds,
        heartbeat_timeout_seconds=timeout,
        local_sids=lambda: sockets.local_sids,
        on_tick=waiters.notify_all,
    )

    tables = tables_of(ledger.service.store)

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

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # start from the read-model tables, then fold what the log holds beyond them
        await ledger.call(lambda: restore_view(ledger.service))
        sweeper.start()
        checkpoints = asyncio.create_task(checkpoint_loop())
        try:
            yield
        finally:
            checkpoints.cancel()
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
        )
    )

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    asgi = socketio.ASGIApp(sio, other_asgi_app=api)
    return Host(asgi, api, sio, ledger, sockets, sweeper, settings)


def create_app(settings: Settings | None = None) -> Any:
    """The host as one ASGI app (FastAPI wrapped by `socketio.ASGIApp`)."""
    return build_host(settings).asgi
