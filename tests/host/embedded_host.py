"""The README's "Host App Integration" example, verbatim: a host app with its own
FastAPI and AsyncServer that embeds workerledger (tested by test_embedding.py)."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import socketio
from fastapi import FastAPI

from workerledger import (
    Actor,
    LedgerPolicies,
    LedgerRuntime,
    StaticTokens,
    cleanup_worker,
    create_router,
    register_socketio_handlers,
)

logger = logging.getLogger("myhost")


def build_app(database_url: str = "sqlite:///./myhost.db") -> socketio.ASGIApp:
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=5, ping_timeout=5)
    # the composition root: store, view, service, ledger, handlers, sweeper, checkpoints
    runtime = LedgerRuntime(
        database_url,
        authenticate=StaticTokens({"secret-token": Actor(user="alice")}),  # or your own JWT
        sio=sio,
        policies=LedgerPolicies(heartbeat_timeout_seconds=60, sweep_interval_seconds=5),
    )

    # connect (bearer token), join_job_room / leave_job_room, join_room / leave_room;
    # this host keeps its own disconnect handler, so it asks for none
    sockets = register_socketio_handlers(sio, runtime, handle_disconnect=False)

    @sio.on("disconnect")
    async def on_disconnect(sid: str, reason: str) -> None:
        try:
            # ... the host's own bookkeeping ...
            for worker_id in await sockets.detach(sid):  # worker ids of this connection
                await cleanup_worker(runtime.ledger, worker_id, sid, reason=str(reason))
        except Exception:  # never raise here: python-socketio would strand the sid
            logger.exception("disconnect cleanup failed")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()  # folds the log; starts the sweeper and the checkpoints
        yield
        await runtime.stop()  # finishes releases, writes a last checkpoint, closes

    api = FastAPI(lifespan=lifespan)
    api.include_router(create_router(runtime))  # /v1/joblib/...
    return socketio.ASGIApp(sio, other_asgi_app=api)
