"""`workerledger migrate | rebuild [--check] | history` on a test database: in this process
through `workerledger.cli.main`, and as the real `python -m workerledger` subprocess for one
case of each exit code (0: migrate, 1: rebuild --check differences, 2: a bad URL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update
from store_support import lifecycle
from support.cli_runner import cli
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.read_models import ReadModelTables, TrackedProjection
from workerledger.adapters.store.tables import rm_workers
from workerledger.adapters.store.url import open_store

pytestmark = pytest.mark.slow


@pytest.fixture
def db(sql_url: str) -> str:
    store = open_store(sql_url)
    service = LedgerService(store, view=TrackedProjection())
    for n in range(3):
        lifecycle(service, n)
    ReadModelTables.for_store(store).checkpoint(service.view)
    store.close()
    return sql_url


def test_history_prints_a_readable_timeline(db: str) -> None:
    result = cli("history", "w1", "--database-url", db)
    assert result.returncode == 0, result.stderr
    assert "worker w1" in result.stdout and "status lost" in result.stdout
    assert "lost: disconnected (transport close)" in result.stdout
    assert "task t1b attempt 1: requeued" in result.stdout


def test_history_json_and_at(db: str) -> None:
    result = cli("history", "w1", "--json", "--at", "2025-06-01T12:00:00Z", "--database-url", db)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["state"]["status"] == "online"
    assert data["state"]["tasks"] == ["t1b"]
    assert len(data["timeline"]) == 7
    task = cli("history", "t1b", "--task", "--database-url", db)
    assert "1: worker w1, requeued" in task.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history", "nobody"], "no worker 'nobody' in the log"),
        (["history", "w1", "--at", "noon"], "not an ISO 8601 timestamp"),
    ],
)
def test_bad_input_exits_2(db: str, args: list[str], message: str) -> None:
    result = cli(*args, "--database-url", db)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_urls_exit_2(tmp_path: Path) -> None:
    for url, message, process in [
        ("mysql://x/y", "unsupported database URL", True),
        (f"sqlite:///{tmp_path / 'missing.db'}", "does not exist", False),
    ]:
        result = cli("rebuild", "--check", "--database-url", url, process=process)
        assert result.returncode == 2 and message in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "missing.db").exists()


def test_rebuild_check_exit_codes(db: str) -> None:
    assert cli("rebuild", "--check", "--database-url", db).returncode == 0
    store = open_store(db)
    engine = ReadModelTables.for_store(store).engine
    with engine.begin() as conn:
        conn.execute(update(rm_workers).where(rm_workers.c.id == "w2").values(state="{}"))
    store.close()
    # the row no longer parses: check reports it as a clear error
    broken = cli("rebuild", "--check", "--database-url", db)
    assert broken.returncode in (1, 2) and "Traceback" not in broken.stderr
    rebuilt = cli("rebuild", "--database-url", db)
    assert rebuilt.returncode == 0 and "rebuild:" in rebuilt.stderr
    assert "3 workers" in rebuilt.stdout
    assert cli("rebuild", "--check", "--database-url", db).returncode == 0


def test_rebuild_check_prints_differences_and_exits_1(db: str) -> None:
    store = open_store(db)
    tables = ReadModelTables.for_store(store)
    view = tables.load()
    worker = view.workers["w2"]
    with tables.engine.begin() as conn:
        conn.execute(
            update(rm_workers)
            .where(rm_workers.c.id == "w2")
            .values(state=worker.model_copy(update={"user": "mallory"}).model_dump_json())
        )
    store.close()
    result = cli("rebuild", "--check", "--database-url", db, process=True)
    assert result.returncode == 1
    assert "worker:w2: stored user='mallory', rebuilt user='alice'" in result.stdout


def test_migrate_is_idempotent(sql_url: str) -> None:
    for process in (True, False):
        result = cli("migrate", "--database-url", sql_url, process=process)
        assert result.returncode == 0 and "ready" in result.stdout
