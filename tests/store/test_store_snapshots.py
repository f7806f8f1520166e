"""Snapshots: taken every N versions after commit, used for loads, never change results."""

from __future__ import annotations

from pathlib import Path

from store_support import at, join, register
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.recorder import RecorderEventStore
from workerledger.adapters.store.snapshots import fold_stream, load_entity
from workerledger.adapters.store.url import open_store
from workerledger.core.events import Event, RoomJoined, RoomLeft


def _long_worker(store: RecorderEventStore, events: int) -> None:
    service = LedgerService(store)
    register(service, "w1")
    join(service, "w1", "s1")
    batch: list[Event] = []
    version = service.view.version("worker:w1")
    for i in range(events):
        kind = RoomLeft if i % 2 == 0 else RoomJoined
        batch.append(kind(worker_id="w1", sid="s1", job_name="lab:modifiers:relax", at=at(i)))
        if len(batch) == 25:
            store.append(batch, {"worker:w1": version})
            version += len(batch)
            batch = []


def test_snapshots_are_taken_every_interval_and_loads_equal_a_full_fold(sql_url: str) -> None:
    store = open_store(sql_url, snapshot_interval=50)
    assert isinstance(store, RecorderEventStore)
    _long_worker(store, 500)
    head = len(store.read_stream("worker:w1"))
    assert store.snapshots_taken == head // 50
    full = fold_stream("worker:w1", None, (r.event for r in store.read_stream("worker:w1")))
    assert store.load_entity("worker:w1") == (full, head)
    for version in (1, 49, 50, 51, 333, head):
        records = store.read_stream("worker:w1")[:version]
        expected = fold_stream("worker:w1", None, (r.event for r in records))
        assert store.load_entity("worker:w1", version) == (expected, version)
    snapshot = store.latest_snapshot("worker:w1", 333)
    assert snapshot is not None and 333 - 50 < snapshot.version <= 333
    store.close()


def test_an_unreadable_snapshot_is_ignored(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}", snapshot_interval=10)
    assert isinstance(store, RecorderEventStore)
    _long_worker(store, 50)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE workerledger_snapshots SET state = x'00ff'")
    records = store.read_stream("worker:w1")
    expected = fold_stream("worker:w1", None, (r.event for r in records))
    assert store.load_entity("worker:w1") == (expected, len(records))
    store.close()


def test_the_memory_store_loads_by_folding(tmp_path: Path) -> None:
    store = open_store("memory://")
    service = LedgerService(store)
    register(service, "w1")
    entity, version = load_entity(store, "worker:w1")
    assert entity == service.view.workers["w1"] and version == 2
