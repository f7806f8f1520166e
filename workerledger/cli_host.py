"""`workerledger serve`: run the reference host under uvicorn.

Exit codes: 0 after a normal shutdown, 2 when the host cannot start (a bad database
URL, an event in the log that cannot be decoded, ...): the reason is printed as one
line (by uvicorn for failures inside the lifespan), never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import socket
import sys
from typing import Any

import uvicorn

CANNOT_START = 2


def add_commands(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the reference host (REST + Socket.IO)",
        description="Run the reference host. Settings come from WORKERLEDGER_* variables "
        "(DATABASE_URL, AUTH_TOKENS, HEARTBEAT_TIMEOUT_SECONDS, SWEEP_INTERVAL_SECONDS, "
        "DISCONNECT_GRACE_SECONDS, PING_INTERVAL_SECONDS, PING_TIMEOUT_SECONDS, ...).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    serve.add_argument("--log-level", default="warning", help="uvicorn log level")
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from workerledger.adapters.ports import StoreError
    from workerledger.host_fastapi.app import create_app
    from workerledger.host_fastapi.settings import Settings, TokenInfo

    settings = Settings()
    if not settings.auth_tokens:
        token = secrets.token_urlsafe(24)
        settings = settings.model_copy(
            update={"auth_tokens": {token: TokenInfo(user="admin", superuser=True)}}
        )
        print(f"no WORKERLEDGER_AUTH_TOKENS set; admin token (shown once): {token}", flush=True)
    try:
        app = create_app(settings)
    except StoreError as error:
        print(f"workerledger: error: {error}", file=sys.stderr)
        return CANNOT_START
    started = True
    with contextlib.suppress(KeyboardInterrupt):
        started = asyncio.run(_serve(app, args.host, args.port, args.log_level))
    return 0 if started else CANNOT_START


class _Server(uvicorn.Server):
    """Prints the real address once uvicorn listens (also for --port 0)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(f"workerledger listening on http://{shown}:{port}", flush=True)


async def _serve(app: Any, host: str, port: int, log_level: str) -> bool:
    """Serve until shut down; False if the app failed to start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP; without it every keep-alive response waits ~40 ms (Nagle + delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="on",
        ws_ping_interval=None,  # engine.io pings already; uvicorn's own would also close
        ws_ping_timeout=None,  # silent sockets ("transport close") on its own schedule
    )
    server = _Server(config)
    try:
        await server.serve(sockets=[sock])
    except SystemExit:  # uvicorn exits (3) when the lifespan start-up failed; it said why
        if server.started:
            raise
    return server.started
