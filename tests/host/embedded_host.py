"""The README's "Host App Integration" example, verbatim: a host app with its own
FastAPI and AsyncServer that embeds workerledger (tested by test_embedding.py)."""

import logging
from contextlib import asynccontextmanager

import socketio
from fastapi import FastAPI
from workerledger.adapters.auth import StaticTokens
from workerledger.adapters.ledger import Ledger
from workerledger.adapters.realtime.emitter import SocketIOEmitter
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.url import open_store
from workerledger.adapters.sweeper import Sweeper
from workerledger.core import Actor

from workerledger import cleanup_worker, create_router, register_socketio_handlers

logger = logging.getLogger("myhost")


def build_app(database_url: str = "sqlite:///./myhost.db") -> socketio.ASGIApp:
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=5, ping_timeout=5)
    ledger = Ledger(LedgerService(open_store(database_url)), emitter=SocketIOEmitter(sio))
    authenticate = StaticTokens({"secret-token": Actor(user="alice")})  # or your own JWT check

    # connect (bearer token), join_job_room / leave_job_room, join_room / leave_room;
    # this host keeps its own disconnect handler, so it asks for none
    sockets = register_socketio_handlers(sio, ledger, authenticate, handle_disconnect=False)

    @sio.on("disconnect")
    async def on_disconnect(sid: str, reason: str) -> None:
        try:
            # ... the host's own bookkeeping ...
            for worker_id in await sockets.detach(sid):  # worker ids of this connection
                await cleanup_worker(ledger, worker_id, sid, reason=str(reason))
        except Exception:  # never raise here: python-socketio would strand the sid
            logger.exception("disconnect cleanup failed")

    sweeper = Sweeper(  # silent REST-only workers; keeps this host's sockets alive
        ledger,
        interval_seconds=5,
        heartbeat_timeout_seconds=60,
        local_sids=lambda: sockets.local_sids,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sweeper.start()
        yield
        await sweeper.stop()
        ledger.close()

    api = FastAPI(lifespan=lifespan)
    api.include_router(create_router(ledger, authenticate))  # /v1/joblib/...
    return socketio.ASGIApp(sio, other_asgi_app=api)
