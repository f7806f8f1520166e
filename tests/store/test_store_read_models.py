"""Durable read model: checkpoint, load, rebuild and check, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import update
from store_support import lifecycle, register, rich_scenario
from workerledger.adapters.ports import EventStore
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.read_models import (
    ReadModelTables,
    TrackedProjection,
    fold_log,
    open_service,
)
from workerledger.adapters.store.tables import rm_tasks


def _service_with_tracking(store: EventStore) -> LedgerService:
    service = LedgerService(store, view=TrackedProjection())
    return service


def test_a_checkpointed_view_loads_back_equal_to_a_fold_of_the_log(sql_store: EventStore) -> None:
    service = _service_with_tracking(sql_store)
    rich_scenario(service)
    tables = ReadModelTables.for_store(sql_store)
    assert tables.checkpoint(service.view) is True
    loaded = tables.load()
    folded = fold_log(sql_store)
    assert loaded.position == folded.position == service.view.position
    for name in ("workers", "jobs", "tasks", "versions", "_task_seq", "_pending", "_seq_task",
                 "_room_tasks", "_worker_order"):  # fmt: skip
        assert getattr(loaded, name) == getattr(folded, name), name
    assert tables.check(sql_store) == []


def test_checkpoints_write_only_changes_and_a_host_behind_writes_nothing(
    sql_store: EventStore,
) -> None:
    ahead, behind = _service_with_tracking(sql_store), _service_with_tracking(sql_store)
    lifecycle(ahead, 1)
    behind.catch_up()
    lifecycle(ahead, 2)
    ahead.catch_up()
    tables = ReadModelTables.for_store(sql_store)
    assert tables.checkpoint(ahead.view) is True
    # the host that is behind finds the tables further along and writes nothing
    assert tables.checkpoint(behind.view) is False
    assert tables.position() == ahead.view.position
    # a host that starts from the tables catches up with the rest of the log
    lifecycle(ahead, 3)
    started = open_service(sql_store)
    assert started.view.position == ahead.view.position
    assert started.view.tasks == ahead.view.tasks
    assert tables.check(sql_store) == []


def test_check_reports_a_tampered_row_and_rebuild_repairs_it(sql_store: EventStore) -> None:
    service = _service_with_tracking(sql_store)
    for n in range(3):
        lifecycle(service, n)
    tables = ReadModelTables.for_store(sql_store)
    tables.checkpoint(service.view)
    with tables.engine.begin() as conn:
        conn.execute(
            update(rm_tasks)
            .where(rm_tasks.c.id == "t1a")
            .values(
                state=service.view.tasks["t1a"].model_copy(update={"attempt": 7}).model_dump_json()
            )
        )
    found = tables.check(sql_store)
    assert found == ["task:t1a: stored attempt=7, rebuilt attempt=1"]
    seen: list[tuple[int, int]] = []
    rebuilt = tables.rebuild(sql_store, progress=lambda pos, head: seen.append((pos, head)))
    assert seen[-1] == (rebuilt.position, rebuilt.position)
    assert tables.check(sql_store) == []


def test_rebuild_of_an_empty_log_leaves_empty_tables(sql_store: EventStore) -> None:
    tables = ReadModelTables.for_store(sql_store)
    view = tables.rebuild(sql_store)
    assert view.position == 0 and tables.load().workers == {}
    register(LedgerService(sql_store), "w1")
    assert tables.check(sql_store) == []  # the tables are behind, not wrong
