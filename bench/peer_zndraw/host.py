"""Minimal FastAPI host for zndraw-joblib 0.1.7, run by the peer virtualenv's python.

This file never runs in workerledger's environment: `bench/peer_zndraw/__init__.py`
starts it as `<peer venv>/bin/python host.py --port N --database PATH`.

It mounts the library's router the way zndraw-joblib's own test suite does
(tests/conftest.py, `_build_app`): the problem+json exception handler, the session
maker and the current user / superuser dependencies overridden with one fixed superuser
(a MagicMock of `zndraw_auth.User`, as in the fixture `test_user`), an in-memory result
backend, and `JobLibSettings()` read from the `ZNDRAW_JOBLIB_*` environment. The
database is a SQLite file; by default every session is taken under one asyncio lock,
as the suite's concurrent fixture (`async_client`) and ZnDraw's SQLite setup do. The
sweeper runs in the lifespan, as in a real host; no Socket.IO server is configured, so
the library emits nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any
from unittest.mock import MagicMock

import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from zndraw_auth import Base, User, current_active_user, current_superuser
from zndraw_auth.db import create_engine_for_url, get_session_maker
from zndraw_auth.users import current_user_scoped_session
from zndraw_joblib.dependencies import get_result_backend
from zndraw_joblib.exceptions import ProblemException, problem_exception_handler
from zndraw_joblib.router import router
from zndraw_joblib.settings import JobLibSettings
from zndraw_joblib.sweeper import run_sweeper

FIXED_USER_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def fixed_user() -> Any:
    """The test suite's `test_user`: an active, verified superuser."""
    user = MagicMock(spec=User)
    user.id = FIXED_USER_ID
    user.email = "bench@example.com"
    user.is_active = True
    user.is_superuser = True
    user.is_verified = True
    return user


class InMemoryResultBackend:
    """Provider result cache (unused by the jobs/tasks/workers routes)."""

    def __init__(self) -> None:
        self._store: dict[str, bytes] = {}
        self._inflight: set[str] = set()

    async def store(self, key: str, data: bytes, ttl: int) -> None:
        self._store[key] = data

    async def get(self, key: str) -> bytes | None:
        return self._store.get(key)

    async def delete(self, key: str) -> None:
        self._store.pop(key, None)

    async def acquire_inflight(self, key: str, ttl: int) -> bool:
        if key in self._inflight:
            return False
        self._inflight.add(key)
        return True

    async def release_inflight(self, key: str) -> None:
        self._inflight.discard(key)

    async def wait_for_key(self, key: str, timeout: float) -> bytes | None:
        return self._store.get(key)

    async def notify_key(self, key: str) -> None:
        return None


def build_app(database: str, *, lock: bool) -> FastAPI:
    engine = create_engine_for_url(f"sqlite+aiosqlite:///{database}")
    factory = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    db_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def locked_session_maker() -> AsyncIterator[AsyncSession]:
        async with db_lock, factory() as session:
            yield session

    session_maker: Callable[[], Any] = locked_session_maker if lock else factory
    settings = JobLibSettings()

    async def sweeper_sessions() -> AsyncGenerator[AsyncSession, None]:
        async with session_maker() as session:
            yield session

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sweeper = asyncio.create_task(run_sweeper(sweeper_sessions, settings))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await engine.dispose()

    user = fixed_user()

    async def get_current_user() -> Any:
        return user

    result_backend = InMemoryResultBackend()
    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    app.add_exception_handler(ProblemException, problem_exception_handler)  # type: ignore[arg-type]
    app.dependency_overrides[get_session_maker] = lambda: session_maker
    app.dependency_overrides[current_active_user] = get_current_user
    app.dependency_overrides[current_superuser] = get_current_user
    app.dependency_overrides[current_user_scoped_session] = get_current_user
    app.dependency_overrides[get_result_backend] = lambda: result_backend
    app.state.joblib_settings = settings
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True, help="SQLite file path")
    parser.add_argument(
        "--no-lock", action="store_true", help="do not serialize sessions with one lock"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = build_app(args.database, lock=not args.no_lock)
    print(f"zndraw-joblib peer listening on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
