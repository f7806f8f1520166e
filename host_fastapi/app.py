"""The reference host: FastAPI (REST) wrapped by python-socketio's ASGI app.

`create_app(settings)` builds everything at call time (no import-time side effects):
a fresh `AsyncServer` and one `LedgerRuntime` (the composition root: store, view,
service, ledger, Socket.IO handlers, sweeper, checkpoints, commit listener), then
mounts the runtime's REST router and `/metrics` (Prometheus; a token only with
`METRICS_REQUIRE_TOKEN`) and installs its Socket.IO handlers. FastAPI's
lifespan calls `runtime.start()` and `runtime.stop()`. `build_host` returns the parts
too (tests, benchmarks).

Several hosts: with `SOCKETIO_MANAGER_URL` the server uses `ResyncingRedisManager` on
`SOCKETIO_CHANNEL` (emits and room operations reach every host; after a Redis outage
the runtime tells this host's own clients to resynchronise); on PostgreSQL the
runtime's `CommitListener` LISTENs for the log's NOTIFY so long-polls wake when
another host commits.

Start-up that fails on the store (an event in the log that cannot be decoded, a
database that cannot be read) fails the ASGI lifespan with that StoreError's one line
as the message, instead of a traceback; unreadable read-model rows never fail it
(the runtime folds the log instead).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import socketio
from fastapi import FastAPI
from workerledger.adapters.auth import StaticTokens
from workerledger.adapters.console import create_console_router
from workerledger.adapters.internal import InternalExecutor
from workerledger.adapters.ledger import Emitter, Ledger
from workerledger.adapters.observability.route import create_metrics_route
from workerledger.adapters.ports import StoreError
from workerledger.adapters.providers.results import ResultCache
from workerledger.adapters.realtime.handlers import (
    ResyncingRedisManager,
    WorkerSockets,
    register_socketio_handlers,
)
from workerledger.adapters.rest.fast_lane import fast_lane
from workerledger.adapters.rest.router import create_router
from workerledger.adapters.room_policy import RoomPolicy
from workerledger.adapters.runtime import LedgerRuntime
from workerledger.adapters.sweeper import Sweeper
from workerledger.core import Actor

from .settings import Settings

ASGIApp = Any  # an ASGI callable (python-socketio and uvicorn are untyped here)


@dataclass
class Host:
    asgi: ASGIApp  # socketio.ASGIApp around `api`, reporting start-up failures
    api: FastAPI
    sio: Any  # socketio.AsyncServer
    runtime: LedgerRuntime
    settings: Settings

    @property
    def ledger(self) -> Ledger:
        return self.runtime.ledger

    @property
    def sweeper(self) -> Sweeper:
        return self.runtime.sweeper

    @property
    def sockets(self) -> WorkerSockets:
        sockets = self.runtime.sockets
        if sockets is None:  # never: build_host gives the runtime its AsyncServer
            raise RuntimeError("this host's runtime has no Socket.IO server")
        return sockets


def build_host(
    settings: Settings | None = None,
    *,
    emitters: Sequence[Emitter] = (),
    room_policy: RoomPolicy | None = None,
    internal_executor: InternalExecutor | None = None,
) -> Host:
    """The reference host for `settings`; `emitters` also receive every committed batch.

    `room_policy` and `internal_executor` are the host's own code (LedgerRuntime's
    arguments of the same names). With a Redis manager, provider results are cached in
    the same Redis, so every host answers every read."""
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
        ResyncingRedisManager(
            settings.socketio_manager_url,
            channel=settings.socketio_channel,
            skip_empty_rooms=settings.socketio_skip_empty_rooms,
            mirror_lease_seconds=settings.socketio_mirror_lease_seconds,
        )
        if settings.socketio_manager_url
        else None
    )
    limits = settings.input_limits()
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        ping_interval=settings.ping_interval_seconds,
        ping_timeout=settings.ping_timeout_seconds,
        max_http_buffer_size=limits.max_body_bytes,
    )
    runtime = LedgerRuntime(
        settings.database_url,
        authenticate=authenticate,
        sio=sio,
        policies=settings.policies(),
        limits=limits,
        emitters=emitters,
        room_policy=room_policy,
        internal_executor=internal_executor,
        provider_results=_shared_results(settings),
    )
    register_socketio_handlers(sio, runtime)
    startup_failures: list[str] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.start()
        except StoreError as error:
            startup_failures.append(f"workerledger cannot start: {error}")
            raise
        try:
            yield
        finally:
            await runtime.stop()

    api = FastAPI(title="workerledger", lifespan=lifespan)
    api.include_router(create_router(runtime))
    api.include_router(create_console_router(runtime))  # /console: the operator console
    api.include_router(create_metrics_route(runtime, require_token=settings.metrics_require_token))

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    rest: ASGIApp = fast_lane(api, runtime) if settings.rest_fast_lane else api
    asgi = _reporting_startup_failures(socketio.ASGIApp(sio, other_asgi_app=rest), startup_failures)
    return Host(asgi, api, sio, runtime, settings)


def _shared_results(settings: Settings) -> ResultCache | None:
    """Provider results in the Redis of the Socket.IO manager, if there is one (the
    `redis` extra is imported only then)."""
    if not settings.socketio_manager_url:
        return None
    from workerledger.adapters.providers.redis_results import RedisResultCache

    prefix = f"{settings.socketio_channel}:providers:"
    return RedisResultCache(settings.socketio_manager_url, prefix=prefix)


def _reporting_startup_failures(app: ASGIApp, failures: list[str]) -> ASGIApp:
    """`app`, whose failed lifespan start-up says `failures[-1]` instead of a traceback."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_message(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed" and failures:
                message = {**message, "message": failures[-1]}
            await send(message)

        await app(scope, receive, send_message)

    return asgi


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The host as one ASGI app (FastAPI wrapped by `socketio.ASGIApp`)."""
    return build_host(settings).asgi
