"""The EventStore contract, run against memory://, a SQLite file and PostgreSQL."""

from __future__ import annotations

import pytest
from store_support import (
    ALICE,
    all_events,
    at,
    claim,
    register,
    rich_scenario,
    submit,
)
from workerledger.adapters.ports import ConcurrencyError, EventStore
from workerledger.adapters.service import LedgerService
from workerledger.core import EVENT_TYPES, ClaimTask, fold, handle
from workerledger.core.errors import TaskNotPendingError
from workerledger.core.events import (
    TaskClaimed,
    TaskSubmitted,
    WorkerRegistered,
    WorkerTaskAssigned,
)


def registered(worker_id: str, seconds: float = 0) -> WorkerRegistered:
    return WorkerRegistered(worker_id=worker_id, user="alice", at=at(seconds))


def test_append_numbers_versions_per_stream_and_positions_over_the_log(store: EventStore) -> None:
    # given two streams written in three decisions
    first = store.append([registered("a")], {"worker:a": 0})
    second = store.append([registered("b")], {"worker:b": 0})
    third = store.append(
        [WorkerTaskAssigned(worker_id="a", task_id="t", attempt=1, at=at(1))], {"worker:a": 1}
    )
    # then versions count per stream and positions increase over the whole log
    assert [(s.stream, s.version) for s in first + second + third] == [
        ("worker:a", 1),
        ("worker:b", 1),
        ("worker:a", 2),
    ]
    positions = [s.position for s in first + second + third]
    assert positions == sorted(positions) and len(set(positions)) == 3
    # and read returns the same records in position order, paged by `after`/`limit`
    assert store.read(0, 10) == first + second + third
    assert store.read(first[0].position, 1) == second
    assert store.read(third[0].position, 10) == []
    assert store.read_stream("worker:a") == first + third
    assert store.read_stream("worker:a", after_version=1) == third
    assert store.read_stream("worker:nobody") == []


def test_a_decision_touching_two_streams_is_stored_whole_or_not_at_all(store: EventStore) -> None:
    store.append([registered("w")], {"worker:w": 0})
    store.append(
        [TaskSubmitted(task_id="t", job_name="r:c:n", room_id="r", by="alice", at=at(0))],
        {"task:t": 0},
    )
    claim_events = [
        TaskClaimed(task_id="t", worker_id="w", attempt=1, at=at(1)),
        WorkerTaskAssigned(worker_id="w", task_id="t", attempt=1, at=at(1)),
    ]
    # when the worker stream moved on since the writer looked
    store.append(
        [WorkerTaskAssigned(worker_id="w", task_id="x", attempt=1, at=at(1))], {"worker:w": 1}
    )
    with pytest.raises(ConcurrencyError):
        store.append(claim_events, {"task:t": 1, "worker:w": 1})
    # then not even the task's half of the decision was written
    assert len(store.read_stream("task:t")) == 1
    assert len(store.read(0, 100)) == 3
    # and the same decision at the right versions lands whole
    stored = store.append(claim_events, {"task:t": 1, "worker:w": 2})
    assert [(s.stream, s.version) for s in stored] == [("task:t", 2), ("worker:w", 3)]


def test_a_new_stream_that_already_exists_conflicts(store: EventStore) -> None:
    store.append([registered("w")], {"worker:w": 0})
    with pytest.raises(ConcurrencyError):
        store.append([registered("w", 1)], {"worker:w": 0})
    assert len(store.read(0, 10)) == 1


def test_expected_streams_without_new_events_are_checked_too(store: EventStore) -> None:
    store.append([registered("a")], {"worker:a": 0})
    store.append([registered("b")], {"worker:b": 0})
    with pytest.raises(ConcurrencyError):
        store.append([registered("c")], {"worker:c": 0, "worker:a": 0})
    assert store.read_stream("worker:c") == []
    assert len(store.append([registered("c")], {"worker:c": 0, "worker:a": 1})) == 1


def test_liveness_keeps_the_latest_beat_per_worker_outside_the_log(store: EventStore) -> None:
    counter0, beats0 = store.read_liveness(0)
    assert beats0 == {}
    store.record_liveness("a", at(1))
    store.record_liveness("b", at(2))
    counter1, beats1 = store.read_liveness(counter0)
    assert beats1 == {"a": at(1), "b": at(2)} and counter1 > counter0
    store.record_liveness("a", at(5))
    counter2, beats2 = store.read_liveness(counter1)
    assert beats2 == {"a": at(5)} and counter2 > counter1
    assert store.read_liveness(counter2) == (counter2, {})
    assert store.read(0, 10) == []


def test_every_event_type_round_trips_through_the_store(store: EventStore) -> None:
    # given a scenario that produces every durable event type
    service = LedgerService(store)
    rich_scenario(service)
    stored = all_events(store)
    durable = {name for name, cls in EVENT_TYPES.items() if cls.durable}
    assert {s.event.type for s in stored} == durable
    # then a fresh reader folds exactly the writer's view
    reader = LedgerService(store)
    reader.catch_up()
    assert vars(reader.view) == vars(service.view)
    assert fold(s.event for s in stored).workers == service.view.workers


def test_a_decision_made_on_a_stale_view_is_refused_and_redecided(store: EventStore) -> None:
    one, two = LedgerService(store), LedgerService(store)
    register(one, "w1")
    register(one, "w2")
    submit(one, "t1")
    two.catch_up()
    command = ClaimTask(now=at(1), actor=ALICE, task_id="t1", worker_id="w2")
    stale = handle(two.view.scope(command), command)  # decided before w1's claim
    claim(one, "w1", "t1", 1)
    # when the stale decision is stored, the store refuses it
    assert two._store(list(stale.events)) is False
    assert two.conflicts == 1
    # and deciding again on the caught-up view is refused by the core instead
    with pytest.raises(TaskNotPendingError):
        two.execute(command)
    claims = [s for s in all_events(store) if s.event.type == "TaskClaimed"]
    assert [c.event.worker_id for c in claims] == ["w1"]
