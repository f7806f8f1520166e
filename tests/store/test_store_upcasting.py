"""Upcasting: an old-version event written raw is read as the current event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from workerledger.adapters.store.recorder import (
    EVENT_TOPIC,
    CorruptEventError,
    RecorderEventStore,
    stream_uuid,
)
from workerledger.adapters.store.upcasting import Upcasters
from workerledger.adapters.store.url import open_store
from workerledger.core.events import WorkerRegistered


def _raw_v1_worker_registered(store: RecorderEventStore, schema: int = 1) -> None:
    """Version 1 of WorkerRegistered (in this test's story) named the user `owner`."""
    envelope = {
        "stream": "worker:old",
        "schema": schema,
        "event": {"type": "WorkerRegistered", "worker_id": "old", "owner": "alice",
                  "at": "2024-01-01T00:00:00+00:00"},
    }  # fmt: skip
    store.events.insert_events(
        [
            StoredEvent(
                originator_id=stream_uuid("worker:old"),
                originator_version=1,
                topic=EVENT_TOPIC + "WorkerRegistered",
                state=store.mapper.transcoder.encode(envelope),
            )
        ]
    )


def test_an_old_event_is_upcast_on_read(tmp_path: Path) -> None:
    # given a registry in which WorkerRegistered is at version 2 ...
    upcasters = Upcasters({"WorkerRegistered": 2})

    @upcasters.register("WorkerRegistered", 1)
    def _owner_to_user(data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        data["user"] = data.pop("owner")
        return data

    store = open_store(f"sqlite:///{tmp_path / 'u.db'}", upcasters=upcasters)
    assert isinstance(store, RecorderEventStore)
    # ... and a version-1 row written raw
    _raw_v1_worker_registered(store)
    # then reading yields the current event
    [record] = store.read(0, 10)
    assert record.event == WorkerRegistered(worker_id="old", user="alice", at=record.event.at)
    # and new writes carry the current version
    store.append(
        [WorkerRegistered(worker_id="new", user="bob", at=record.event.at)], {"worker:new": 0}
    )
    [row] = store.events.select_stream(stream_uuid("worker:new"))
    assert store.mapper.transcoder.decode(row.state)["schema"] == 2
    store.close()


def test_an_old_event_without_an_upcaster_is_a_clear_error(tmp_path: Path) -> None:
    store = open_store(
        f"sqlite:///{tmp_path / 'u.db'}", upcasters=Upcasters({"WorkerRegistered": 2})
    )
    assert isinstance(store, RecorderEventStore)
    _raw_v1_worker_registered(store)
    with pytest.raises(CorruptEventError, match="no upcaster for WorkerRegistered version 1"):
        store.read(0, 10)
    store.close()


def test_an_old_payload_that_fails_validation_is_reported_with_its_position(
    tmp_path: Path,
) -> None:
    # the default registry has WorkerRegistered at version 1, so an `owner` payload
    # fails validation: reported with its position, never skipped
    store = open_store(f"sqlite:///{tmp_path / 'u.db'}")
    assert isinstance(store, RecorderEventStore)
    _raw_v1_worker_registered(store)
    with pytest.raises(CorruptEventError, match="corrupt event at position 1"):
        store.read(0, 10)
    store.close()


def test_an_event_newer_than_the_build_is_refused(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'u.db'}")
    assert isinstance(store, RecorderEventStore)
    _raw_v1_worker_registered(store, schema=3)
    with pytest.raises(CorruptEventError, match="newer than this build knows"):
        store.read_stream("worker:old")
    store.close()
