"""Bad input: wrong URLs, unreadable or foreign files, corrupt payloads -> clear StoreError."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent
from support.services import fresh_postgres_database
from workerledger.adapters.ports import StoreError
from workerledger.adapters.store.recorder import EVENT_TOPIC, RecorderEventStore, stream_uuid
from workerledger.adapters.store.url import open_store


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/ledger", "unsupported database URL"),
        ("workerledger.db", "malformed database URL"),
        ("sqlite://relative.db", "malformed SQLite URL"),
        ("sqlite:///", "unsupported SQLite URL"),
        ("sqlite:///:memory:", "use memory://"),
        ("sqlite:///x.db?mode=ro", "without parameters"),
        ("postgresql://localhost", "names no database"),
        ("postgresql://127.0.0.1:1/nowhere", "cannot connect to postgresql://127.0.0.1:1/nowhere"),
    ],
)
def test_a_wrong_url_is_named_in_the_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message.replace("?", r"\?")):
        open_store(url)


def test_a_text_file_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("my shopping list\n" * 100)
    with pytest.raises(StoreError, match=f"{path} is not a SQLite database"):
        open_store(f"sqlite:///{path}")
    assert path.read_text().startswith("my shopping list")


def test_a_sqlite_database_of_another_app_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(StoreError, match=r"another application \(tables: customers\)"):
        open_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert names == {"customers"}


def test_a_missing_directory_a_directory_and_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"directory .* does not exist"):
        open_store(f"sqlite:///{tmp_path / 'no' / 'such.db'}")
    with pytest.raises(StoreError, match="is a directory"):
        open_store(f"sqlite:///{tmp_path}")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path / 'absent.db'}", create=False)
    locked = tmp_path / "locked.db"
    open_store(f"sqlite:///{locked}").close()
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads anything: nothing to test then
            pytest.skip("running as a user that ignores file permissions")
        with pytest.raises(StoreError, match="permission denied"):
            open_store(f"sqlite:///{locked}")
    finally:
        locked.chmod(0o644)


def test_a_database_of_a_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE workerledger_meta SET value='99' WHERE key='layout'")
    with pytest.raises(StoreError, match="layout '99'"):
        open_store(f"sqlite:///{path}")


def test_a_corrupt_payload_is_reported_with_its_position(sql_url: str) -> None:
    store = open_store(sql_url)
    assert isinstance(store, RecorderEventStore)
    garbage = StoredEvent(
        stream_uuid("worker:x"), 1, EVENT_TOPIC + "WorkerRegistered", b"{not json"
    )
    store.events.insert_events([garbage])
    with pytest.raises(StoreError, match=r"corrupt event at position \d+ .*WorkerRegistered"):
        store.read(0, 10)
    with pytest.raises(StoreError, match="corrupt event"):
        store.read_stream("worker:x")
    store.close()


def test_postgres_without_migrate_says_so() -> None:
    with fresh_postgres_database() as url:
        with pytest.raises(StoreError, match="run `workerledger migrate` first"):
            open_store(url)
        with pytest.raises(StoreError, match="does not exist"):
            open_store(url.rsplit("/", 1)[0] + "/wl_no_such_database")
