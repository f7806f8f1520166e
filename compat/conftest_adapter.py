"""Adapter conftest: zndraw-joblib 0.1.7's own tests against workerledger's REST router.

`python -m compat` copies this file over the sdist's `tests/conftest.py` (the peer's
original is kept as `tests/_peer_conftest.py`; its helper classes are reused). The test
modules are the sdist's, unmodified. One compat host (compat/host.py, run with
workerledger's python) serves the session; every test starts on a fresh runtime and a
fresh SQLite file (`POST /compat/reset`). Users are the peer's: the default user is the
fixed UUID with `is_superuser`, `client_factory(identity)` users are uuid5 of the
identity, sent as the bearer token `compat:<uuid>:<0|1>`.

Tests that cannot be pointed at another server are deselected at collection
(compat/classify.py says which and why); the verdicts are written to
`$COMPAT_CLASSIFICATION` for the report.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from tests._compat_classify import classify
from tests._compat_peer_side import (
    CompatApp,
    HostProcess,
    auth_headers,
    translate_row_deletes,
)
from tests._peer_conftest import _FsProvider, _MockClientApi

pytest_plugins = ["pytest_asyncio"]

DEFAULT_USER = "12345678-1234-5678-1234-567812345678"  # the peer's test_user_id
ADMIN_USER = "compat-admin"  # stands in for direct writes to the peer's tables


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    verdicts = {item.nodeid: classify(item.nodeid, item.fixturenames) for item in items}
    out = os.environ.get("COMPAT_CLASSIFICATION")
    if out:
        Path(out).write_text(
            json.dumps(
                {n: {"portable": v.portable, "reason": v.reason} for n, v in verdicts.items()},
                indent=1,
            )
        )
    deselected = [item for item in items if not verdicts[item.nodeid].portable]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if verdicts[item.nodeid].portable]


@pytest.fixture(scope="session")
def compat_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    work = Path(os.environ.get("COMPAT_WORK_DIR") or tmp_path_factory.mktemp("compat-host"))
    host = HostProcess(
        python=os.environ["COMPAT_WL_PYTHON"],
        script=os.environ["COMPAT_HOST_SCRIPT"],
        work_dir=work / "databases",
        log=work / "host.log",
    )
    host.start()
    yield host
    host.stop()


@pytest.fixture(autouse=True)
def _fresh_host(compat_host: HostProcess) -> HostProcess:
    compat_host.reset()
    return compat_host


@pytest.fixture
def test_user_id() -> uuid.UUID:
    return uuid.UUID(DEFAULT_USER)


@pytest.fixture
def app(compat_host: HostProcess) -> CompatApp:
    return CompatApp(compat_host, DEFAULT_USER, superuser=True)


@pytest.fixture
def client(compat_host: HostProcess, app: CompatApp) -> httpx.Client:
    return compat_host.client(DEFAULT_USER, True, app)


@pytest.fixture
def seeded_client(client: httpx.Client) -> httpx.Client:
    resp = client.put(
        "/v1/joblib/rooms/@global/jobs",
        json={"category": "modifiers", "name": "Rotate", "schema": {}},
    )
    client.seeded_worker_id = resp.json().get("worker_id")  # type: ignore[attr-defined]
    return client


@pytest.fixture
def client_factory(compat_host: HostProcess) -> Callable[..., httpx.Client]:
    def create_client(identity: str, is_superuser: bool = True) -> httpx.Client:
        user_id = uuid.uuid5(uuid.NAMESPACE_DNS, identity)
        opened = compat_host.client(str(user_id), is_superuser)
        opened.user_id = user_id  # type: ignore[attr-defined]
        return opened

    return create_client


@pytest.fixture
def threadsafe_client(compat_host: HostProcess) -> httpx.Client:
    return compat_host.client(DEFAULT_USER, True)


@pytest.fixture
def threadsafe_engine(tmp_path: Path, compat_host: HostProcess) -> AsyncEngine:
    path = tmp_path / "peer-rows.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE worker (id TEXT)")
        db.execute("CREATE TABLE provider (id TEXT)")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", poolclass=NullPool)
    translate_row_deletes(engine.sync_engine, compat_host.client(ADMIN_USER, True))
    return engine


@pytest.fixture
async def async_client(compat_host: HostProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=compat_host.url, headers=auth_headers(DEFAULT_USER, True), timeout=60.0
    ) as opened:
        yield opened


@pytest.fixture
def mock_client_api() -> type[_MockClientApi]:
    return _MockClientApi


@pytest.fixture
def api(client: httpx.Client) -> _MockClientApi:
    return _MockClientApi(client)


@pytest.fixture
def fs_provider() -> type[_FsProvider]:
    return _FsProvider
