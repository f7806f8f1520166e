"""The cache rule: start-up never depends on a derived row; the log is the only truth.

Read-model rows and snapshots that cannot be read are ignored and refolded from the
log; `rebuild` never writes what it cannot read; an event the log holds but this build
cannot decode stops the host and the CLI with one clear line; history serializes any
payload the log holds. Deep payloads reach the store directly, bypassing the REST door
(old databases may hold them). Payloads deeper than today's append path writes (it
stops at pydantic's ~255 levels) are written raw, as another writer could have.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from eventsourcing.persistence import StoredEvent as RawEvent
from sqlalchemy import text, update
from store_support import ALICE, JOB, ROOM, all_events, at, claim, register
from support.cli_runner import cli
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.json_codec import dumps, loads, to_plain
from workerledger.adapters.store.read_model_rows import UnstorableRowError
from workerledger.adapters.store.read_models import (
    ReadModelTables,
    TrackedProjection,
    fold_log,
    open_service,
)
from workerledger.adapters.store.recorder import (
    EVENT_TOPIC,
    CorruptEventError,
    RecorderEventStore,
    stream_uuid,
)
from workerledger.adapters.store.tables import EVENTS_TABLE, rm_jobs, rm_tasks
from workerledger.adapters.store.url import open_store
from workerledger.core import RegisterJob, SubmitTask
from workerledger.core.events import TaskSubmitted

TASK_200, TASK_900 = str(uuid.uuid4()), str(uuid.uuid4())
WARNING = "read-model tables unreadable"


def nested(depth: int) -> dict[str, Any]:
    """A payload `{"a": [[...[1]...]]}` with `depth` levels of containers."""
    value: Any = 1
    for _ in range(depth - 1):
        value = [value]
    return {"a": value}


def append_raw(store: RecorderEventStore, event: TaskSubmitted, version: int = 1) -> None:
    """Write `event` as the mapper would, without the append path's depth limit."""
    envelope = {"stream": event.stream, "schema": 1, "event": to_plain(event)}
    state = store.mapper.transcoder.encode(envelope)
    store.events.insert_events(
        [RawEvent(stream_uuid(event.stream), version, EVENT_TOPIC + event.type, state)]
    )


def deep_ledger(url: str) -> RecorderEventStore:
    """A job with a 200-deep schema, tasks with 200- and 900-deep payloads; checkpointed."""
    store = open_store(url)
    assert isinstance(store, RecorderEventStore)
    service = LedgerService(store, view=TrackedProjection())
    service.execute(
        RegisterJob(
            now=at(0), actor=ALICE, room_id=ROOM, category="modifiers", name="relax",
            worker_id="w1", create_worker=True, schema=nested(200),
        )
    )  # fmt: skip
    service.execute(
        SubmitTask(now=at(1), actor=ALICE, task_id=TASK_200, job_name=JOB, room_id=ROOM,
                   payload=nested(200))
    )  # fmt: skip
    append_raw(store, TaskSubmitted(task_id=TASK_900, job_name=JOB, room_id=ROOM,
                                    payload=nested(900), by="alice", at=at(2)))  # fmt: skip
    service.catch_up()
    claim(service, "w1", TASK_900, 3)
    assert ReadModelTables.for_store(store).checkpoint(service.view)
    return store


def same_view(a: Any, b: Any) -> bool:
    """Two views hold the same entities (compared as JSON: Python's == recurses)."""
    return a.position == b.position and all(
        dumps({k: to_plain(v) for k, v in getattr(a, kind).items()})
        == dumps({k: to_plain(v) for k, v in getattr(b, kind).items()})
        for kind in ("workers", "jobs", "tasks")
    )


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]


def test_deep_payloads_restart_from_the_tables_equal_to_the_log(
    sql_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    deep_ledger(sql_url).close()
    store = open_store(sql_url)
    with caplog.at_level(logging.WARNING):
        restarted = open_service(store)
    assert warnings(caplog) == []  # the rows were read, not refolded
    assert same_view(restarted.view, fold_log(store))
    assert dumps(restarted.view.tasks[TASK_900].payload) == dumps(nested(900))
    assert dumps(restarted.view.jobs[JOB].schema_) == dumps(nested(200))
    assert ReadModelTables.for_store(store).check(store) == []
    store.close()


def test_rows_written_by_the_old_encoder_are_read(sql_store: RecorderEventStore) -> None:
    # pydantic's JSON of a 200-deep payload: what made every start fail before
    service = LedgerService(sql_store)
    register(service, "w1")
    service.execute(
        SubmitTask(now=at(1), actor=ALICE, task_id="t1", job_name=JOB, room_id=ROOM,
                   payload=nested(200))
    )  # fmt: skip
    tables = ReadModelTables.for_store(sql_store)
    tables.checkpoint(service.view)
    old_row = service.view.tasks["t1"].model_dump_json(by_alias=True)
    with tables.engine.begin() as conn:
        conn.execute(update(rm_tasks).where(rm_tasks.c.id == "t1").values(state=old_row))
    assert dumps(tables.load().tasks["t1"].payload) == dumps(nested(200))


def test_unreadable_rows_are_ignored_said_once_and_repaired(
    sql_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = deep_ledger(sql_url)
    tables = ReadModelTables.for_store(store)
    with tables.engine.begin() as conn:
        conn.execute(update(rm_tasks).where(rm_tasks.c.id == TASK_900).values(state="garbage{"))
        conn.execute(update(rm_jobs).values(state='{"full_name": "lab:x:y"}'))
    assert len(tables.check(store)) == 2  # rebuild --check names both rows
    with caplog.at_level(logging.WARNING):
        restarted = open_service(store)
    [message] = warnings(caplog)
    assert "(2 rows failed: first error" in message
    assert f"({len(all_events(store))} events)" in message
    assert same_view(restarted.view, fold_log(store))
    # the start rewrote the tables from the log: the next start reads them again
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = open_service(store)
    assert warnings(caplog) == [] and same_view(again.view, restarted.view)
    assert tables.check(store) == []
    store.close()


def test_rebuild_never_writes_what_it_cannot_read(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = deep_ledger(sqlite_url)
    tables = ReadModelTables.for_store(store)
    before = tables.position()
    LedgerService(store).execute(
        SubmitTask(now=at(9), actor=ALICE, task_id="t-new", job_name=JOB, room_id=ROOM)
    )

    def refuse(kind: str, text: str) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("workerledger.adapters.store.read_model_rows.decode_state", refuse)
    with pytest.raises(UnstorableRowError, match=r"cannot be stored .*\(RecursionError"):
        tables.rebuild(store)
    monkeypatch.undo()
    assert tables.position() == before and "t-new" not in tables.load().tasks
    store.close()


def test_unusable_snapshots_are_ignored_and_deep_states_are_snapshotted(sqlite_url: str) -> None:
    store = open_store(sqlite_url, snapshot_interval=2)
    assert isinstance(store, RecorderEventStore)
    service = LedgerService(store)
    register(service, "w1")
    append_raw(store, TaskSubmitted(task_id="t1", job_name=JOB, room_id=ROOM,
                                    payload=nested(900), by="alice", at=at(1)))  # fmt: skip
    service.catch_up()
    claim(service, "w1", "t1", 2)  # version 2 of task:t1: a snapshot of the deep state
    snapshot = store.latest_snapshot("task:t1")
    assert snapshot is not None and snapshot.version == 2
    assert dumps(to_plain(snapshot.entity)) == dumps(to_plain(service.view.tasks["t1"]))
    with store.engine.begin() as conn:  # valid JSON, but not a state the models accept
        conn.exec_driver_sql(
            "UPDATE workerledger_snapshots SET state = ?",
            (b'{"stream": "task:t1", "schema": 1, "entity": {"id": 7}}',),
        )
    assert store.latest_snapshot("task:t1") is None
    entity, version = store.load_entity("task:t1")
    assert version == 2 and entity is not None
    assert dumps(to_plain(entity)) == dumps(to_plain(service.view.tasks["t1"]))
    store.close()


def test_payloads_that_look_like_transcoder_objects_round_trip(sql_store: Any) -> None:
    # eventsourcing's JSONTranscoder decoded these as custom types (or failed to)
    service = LedgerService(sql_store)
    register(service, "w1")
    payload = {"u": {"_type_": "uuid_hex", "_data_": "0" * 32}, "x": {"_type_": "x", "_data_": 1}}
    service.execute(
        SubmitTask(now=at(1), actor=ALICE, task_id="t1", job_name=JOB, room_id=ROOM,
                   payload=payload)
    )  # fmt: skip
    assert fold_log(sql_store).tasks["t1"].payload == payload


# --- events the log holds but this build cannot decode -------------------------------


def _corrupt_event(store: RecorderEventStore, stream: str, **values: Any) -> int:
    """Overwrite columns of the newest event of `stream`; returns its position."""
    position = store.read_stream(stream)[-1].position
    id_column = "rowid" if store.engine.dialect.name == "sqlite" else "notification_id"
    changes = ", ".join(f"{name} = :{name}" for name in values)
    with store.engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {EVENTS_TABLE} SET {changes} WHERE {id_column} = :position"),
            {**values, "position": position},
        )
    return position


def _envelope(event: dict[str, Any], schema: int = 1) -> bytes:
    return dumps({"stream": "task:t1", "schema": schema, "event": event}).encode()


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"state": b"{not json"}, "JSONDecodeError"),
        ({"topic": EVENT_TOPIC + "TaskExploded"}, "the topic says 'TaskExploded'"),
        ({"state": _envelope({"type": "TaskSubmitted"}, schema=7)}, "newer than this build"),
        ({"state": _envelope({"type": "TaskSubmitted", "task_id": "t1"})}, "validation error"),
    ],
    ids=["json", "topic", "upcast", "payload"],
)
def test_an_undecodable_event_names_its_position_stream_and_way_out(
    sql_store: RecorderEventStore, values: dict[str, Any], reason: str
) -> None:
    service = LedgerService(sql_store)
    register(service, "w1")
    service.execute(SubmitTask(now=at(1), actor=ALICE, task_id="t1", job_name=JOB, room_id=ROOM))
    position = _corrupt_event(sql_store, "task:t1", **values)
    with pytest.raises(CorruptEventError) as raised:
        fold_log(sql_store)
    message = str(raised.value)
    assert f"corrupt event at position {position} (stream " in message and reason in message
    assert "restore the database from a backup" in message and "upcasting.py" in message
    assert "\n" not in message


@pytest.mark.slow
def test_rebuild_then_check_passes_after_unreadable_rows(sql_url: str) -> None:
    store = deep_ledger(sql_url)
    with ReadModelTables.for_store(store).engine.begin() as conn:
        conn.execute(update(rm_tasks).where(rm_tasks.c.id == TASK_200).values(state="[]"))
    store.close()
    broken = cli("rebuild", "--check", "--database-url", sql_url)
    assert broken.returncode == 1 and f"unreadable row: task:{TASK_200}" in broken.stdout
    rebuilt = cli("rebuild", "--database-url", sql_url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    checked = cli("rebuild", "--check", "--database-url", sql_url)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@contextmanager
def serving(url: str) -> Iterator[tuple[subprocess.Popen[str], str | None]]:
    """`workerledger serve --port 0` on `url`: (process, base URL or None if it exited)."""
    env = os.environ | {
        "WORKERLEDGER_DATABASE_URL": url,
        "WORKERLEDGER_AUTH_TOKENS": '{"tok": {"user": "alice"}}',
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "workerledger", "serve", "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    base = None
    for line in proc.stdout:  # ends at EOF when the process exits
        if line.startswith("workerledger listening on "):
            base = line.split()[-1]
            break
    try:
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_serve_and_the_cli_stop_on_an_undecodable_event_without_a_traceback(
    sql_url: str,
) -> None:
    store = deep_ledger(sql_url)  # checkpointed: a host reads only the events after it
    claim(LedgerService(store), "w1", TASK_200, 9)
    position = _corrupt_event(store, f"task:{TASK_200}", state=b"\x00\xff")
    store.close()
    message = f"corrupt event at position {position} (stream task:{TASK_200}, version 2"
    with serving(sql_url) as (proc, base):
        assert base is None and proc.stderr is not None
        stderr = proc.stderr.read()
    assert proc.returncode == 2
    assert stderr.count(message) == 1 and "cannot start" in stderr
    assert "Traceback" not in stderr
    for args, process in ((["history", TASK_200, "--task", "--json"], True), (["rebuild"], False)):
        result = cli(*args, "--database-url", sql_url, process=process)
        assert result.returncode == 2 and message in result.stderr, args
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_history_shows_deep_payloads_unchanged(sql_url: str) -> None:
    store = deep_ledger(sql_url)
    deep_250 = str(uuid.uuid4())
    LedgerService(store).execute(
        SubmitTask(now=at(5), actor=ALICE, task_id=deep_250, job_name=JOB, room_id=ROOM,
                   payload=nested(250))
    )  # fmt: skip
    with store.engine.begin() as conn:  # and a broken row: the host starts all the same
        conn.execute(update(rm_tasks).where(rm_tasks.c.id == TASK_200).values(state="{"))
    store.close()
    expected = {key: dumps(nested(depth))
                for key, depth in ((TASK_200, 200), (deep_250, 250), (TASK_900, 900))}  # fmt: skip
    printed = {
        key: cli("history", key, "--task", "--json", "--database-url", sql_url) for key in expected
    }
    with serving(sql_url) as (proc, base):
        assert base is not None
        with httpx.Client(base_url=base, headers={"Authorization": "Bearer tok"}) as http:
            served = {key: http.get(f"/v1/joblib/tasks/{key}/history") for key in expected}
    assert proc.stderr is not None and proc.returncode == 0
    assert proc.stderr.read().count(f"{WARNING} (1 rows failed") == 1
    for key, payload in expected.items():
        assert printed[key].returncode == 0, printed[key].stderr
        assert served[key].status_code == 200, served[key].text
        for body in (printed[key].stdout, served[key].text):
            history = loads(body)
            assert dumps(history["state"]["payload"]) == payload
            assert dumps(history["timeline"][0]["event"]["payload"]) == payload
