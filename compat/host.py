"""The workerledger host the peer's tests talk to (run with workerledger's own python).

It embeds workerledger through the package root alone, as README "Host App
Integration" does: one `LedgerRuntime` on a SQLite file, `create_router(runtime)` and
`register_socketio_handlers(sio, runtime)`. Three compat-only additions:

- an `Authenticator` for the bearer token `compat:<user>:<0|1>` (the user, and whether
  it is a superuser), standing in for the peer's fastapi-users users;
- `POST /compat/reset`: stop the runtime and start a fresh one on a new SQLite file
  (one per test: a new process costs ~3 s of imports, a reset ~0.1 s);
  `POST /compat/configure {"policies": {...}}`: restart the runtime on the same
  database with some `LedgerPolicies` fields replaced (the log keeps the state);
- `GET /compat/log?after=N`: every Socket.IO emit and every `@internal` dispatch of
  this process, in order, so the adapter can hand what went on the wire to a test's
  mock `tsio` and what the executor was given to the test's mock taskiq handles;
- a `RoomPolicy` and an `InternalExecutor` steered per request by the adapter: the
  header `X-Compat-Locked-Room: {"room": ..., "detail": ...}` (the peer test's
  `verify_writable_room` override refused that room) and `X-Compat-Internal-Jobs: [...]`
  (the `@internal` jobs of the test's `app.state.internal_registry`). workerledger
  decides when to ask them; the adapter only answers for the test.

Usage: `python compat/host.py --work-dir DIR`; it binds 127.0.0.1 port 0 and prints
`COMPAT_HOST_READY <port>` on stdout once it serves; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import dataclasses
import inspect
import json
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio
import uvicorn
from fastapi import FastAPI, HTTPException
from workerledger.core import RoomLockedError, TaskState

from workerledger import (
    Actor,
    InputLimits,
    LedgerPolicies,
    LedgerRuntime,
    create_router,
    register_socketio_handlers,
)

READY = "COMPAT_HOST_READY"
TOKEN_PREFIX = "compat:"
Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]
LOCKED_ROOM = contextvars.ContextVar[dict[str, str] | None]("locked_room", default=None)
INTERNAL_JOBS = contextvars.ContextVar[frozenset[str]]("internal_jobs", default=frozenset())


def authenticate(token: str) -> Actor | None:
    """`compat:<user>:<0|1>` -> that user (a superuser with 1); anything else -> None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    user, sep, flag = token[len(TOKEN_PREFIX) :].rpartition(":")
    if not sep or not user or flag not in ("0", "1"):
        return None
    return Actor(user=user, superuser=flag == "1")


class RecordingServer(socketio.AsyncServer):  # type: ignore[misc]
    """An AsyncServer that also records every emit (event, data, room) it sends."""

    def __init__(self, record: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._record = record

    async def emit(self, event: str, data: Any = None, to: Any = None, **kwargs: Any) -> None:
        room = to if to is not None else kwargs.get("room")
        self._record.append({"kind": "emit", "event": event, "data": data, "room": room})
        await super().emit(event, data, to=to, **kwargs)


class RequestRooms:
    """`RoomPolicy`: refuses the room the request's `X-Compat-Locked-Room` names."""

    async def check_writable(self, room_id: str, actor: Actor) -> None:
        locked = LOCKED_ROOM.get()
        if locked is not None and locked.get("room") == room_id:
            raise RoomLockedError(locked.get("detail") or "Room is locked")

    async def may_watch(self, room_id: str, actor: Actor) -> bool:
        return True


class RecordingExecutor:
    """`InternalExecutor`: handles the request's `X-Compat-Internal-Jobs`; a dispatch is
    recorded (queued, as taskiq's `kiq` does) for the adapter to replay."""

    def __init__(self, record: list[dict[str, Any]]) -> None:
        self._record = record

    def handles(self, job_name: str) -> bool:
        return job_name in INTERNAL_JOBS.get()

    async def dispatch(self, task: TaskState, report: Any) -> None:
        self._record.append(
            {
                "kind": "dispatch",
                "job_name": task.job_name,
                "task_id": task.id,
                "room_id": task.room_id,
                "payload": task.payload,
            }
        )


def runtime_options(record: list[dict[str, Any]]) -> dict[str, Any]:
    """The room policy and executor, for a `LedgerRuntime` that takes them."""
    accepted = inspect.signature(LedgerRuntime).parameters
    wanted = {"room_policy": RequestRooms(), "internal_executor": RecordingExecutor(record)}
    return {name: value for name, value in wanted.items() if name in accepted}


def steer(scope: Scope) -> None:
    """Set this request's room refusal and `@internal` jobs from the adapter's headers."""
    headers = dict(scope.get("headers") or [])
    locked = headers.get(b"x-compat-locked-room")
    LOCKED_ROOM.set(json.loads(locked) if locked else None)
    jobs = headers.get(b"x-compat-internal-jobs")
    INTERNAL_JOBS.set(frozenset(json.loads(jobs)) if jobs else frozenset())


@dataclass
class Generation:
    """One runtime on one SQLite file, with its own AsyncServer and FastAPI app."""

    runtime: LedgerRuntime
    asgi: ASGI
    database: Path


@dataclass
class CompatHost:
    work_dir: Path
    log: list[dict[str, Any]] = field(default_factory=list)
    current: Generation | None = None
    policies: LedgerPolicies = field(default_factory=LedgerPolicies)
    _count: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _serving: asyncio.Event = field(default_factory=asyncio.Event)  # a runtime is up

    async def _start(self, database: Path) -> Generation:
        limits = InputLimits()
        sio = RecordingServer(
            self.log, async_mode="asgi", max_http_buffer_size=limits.max_body_bytes
        )
        runtime = LedgerRuntime(
            f"sqlite:///{database}",
            authenticate=authenticate,
            sio=sio,
            policies=self.policies,
            limits=limits,
            **runtime_options(self.log),
        )
        register_socketio_handlers(sio, runtime)
        api = FastAPI(title="workerledger (compat)")
        api.include_router(create_router(runtime))
        await runtime.start()
        return Generation(runtime, socketio.ASGIApp(sio, other_asgi_app=api), database)

    async def _stop(self, *, remove: bool) -> Path | None:
        old, self.current = self.current, None
        self._serving.clear()
        if old is None:
            return None
        await old.runtime.stop()
        if remove:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{old.database}{suffix}").unlink(missing_ok=True)
        return old.database

    async def reset(self) -> None:
        """A fresh runtime on a new SQLite file with the default policies."""
        async with self._lock:
            await self._stop(remove=True)
            self.policies = LedgerPolicies()
            self._count += 1
            self.current = await self._start(self.work_dir / f"gen-{self._count}.db")
            self._serving.set()

    async def configure(self, overrides: dict[str, Any]) -> None:
        """Restart the runtime on the same database with `overrides` of the policies."""
        names = {f.name for f in dataclasses.fields(LedgerPolicies)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise HTTPException(422, f"LedgerPolicies has no field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()
        }
        async with self._lock:
            database = await self._stop(remove=False)
            self.policies = dataclasses.replace(self.policies, **values)
            if database is None:
                self._count += 1
                database = self.work_dir / f"gen-{self._count}.db"
            self.current = await self._start(database)
            self._serving.set()

    def control_app(self) -> FastAPI:
        control = FastAPI()

        @control.post("/compat/reset")
        async def reset() -> dict[str, int]:
            await self.reset()
            return {"next": len(self.log)}

        @control.post("/compat/configure")
        async def configure(body: dict[str, Any]) -> dict[str, str]:
            await self.configure(dict(body.get("policies") or {}))
            return {"status": "ok"}

        @control.get("/compat/log")
        async def log(after: int = 0) -> dict[str, Any]:
            return {"next": len(self.log), "items": self.log[after:]}

        return control

    def asgi(self) -> ASGI:
        control = self.control_app()

        async def app(scope: Scope, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            elif scope["type"] == "http" and scope["path"].startswith("/compat/"):
                await control(scope, receive, send)
            else:  # a request during a reset (a previous test's thread) waits for it
                while self.current is None:
                    await self._serving.wait()
                steer(scope)
                await self.current.asgi(scope, receive, send)

        return app

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.reset()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop(remove=False)
                await send({"type": "lifespan.shutdown.complete"})
                return


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            print(f"{READY} {sockets[0].getsockname()[1]}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    host = CompatHost(args.work_dir)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        host.asgi(),
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    asyncio.run(_Server(config).serve(sockets=[sock]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
