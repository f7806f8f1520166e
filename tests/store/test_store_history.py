"""Worker and task history: timelines, claims, what an end caused, state at a time."""

from __future__ import annotations

import json

import pytest
from store_support import (
    ADMIN,
    T0,
    at,
    claim,
    disconnect,
    join,
    register,
    remove,
    report,
    submit,
    sweep,
)
from workerledger.adapters.ports import EventStore
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.history import HistoryNotFoundError, task_history, worker_history
from workerledger.core import RunningTaskPolicy, TaskStatus, WorkerStatus


def _story(store: EventStore) -> LedgerService:
    service = LedgerService(store)
    register(service, "w1", 0, RunningTaskPolicy.FAIL)
    register(service, "w2", 1)
    join(service, "w1", "s1", 2)
    for task in ("t1", "t2", "t3"):
        submit(service, task, 3)
    claim(service, "w1", "t1", 4)
    report(service, "t1", TaskStatus.RUNNING, 5)
    report(service, "t1", TaskStatus.COMPLETED, 6)
    claim(service, "w1", "t2", 7)
    claim(service, "w1", "t3", 8)
    report(service, "t3", TaskStatus.RUNNING, 9)
    disconnect(service, "w1", "s1", 10, grace=30)
    sweep(service, "w1", 50)  # grace expired: t2 requeued, t3 failed
    claim(service, "w2", "t2", 51)
    remove(service, "w2", 52, actor=ADMIN)  # deleted: t2 requeued again
    return service


def test_a_worker_history_tells_its_life_and_what_its_end_caused(store: EventStore) -> None:
    _story(store)
    history = worker_history(store, "w1")
    assert [e.type for e in history.timeline] == [
        "WorkerRegistered", "WorkerJobLinked", "ConnectionAttached", "RoomJoined",
        "WorkerTaskAssigned", "WorkerTaskReleased", "WorkerTaskAssigned",
        "WorkerTaskAssigned", "WorkerDisconnected", "WorkerLost",
    ]  # fmt: skip
    assert history.timeline[-1].summary == "lost: grace expired"
    assert history.state is not None and history.state.status is WorkerStatus.LOST
    assert [(c.task_id, c.outcome) for c in history.claims] == [
        ("t1", "completed"),
        ("t2", "requeued"),
        ("t3", "failed"),
    ]
    assert [(r.task_id, r.outcome, r.reason) for r in history.caused] == [
        ("t2", "requeued", "grace expired"),
        ("t3", "failed", "Worker disconnected (worker grace expired)"),
    ]
    json.loads(history.model_dump_json())  # JSON-ready


def test_history_at_a_time_shows_the_state_then(store: EventStore) -> None:
    _story(store)
    history = worker_history(store, "w1", at(8))
    assert history.state is not None
    assert history.state.status is WorkerStatus.ONLINE
    assert history.state.tasks == frozenset({"t2", "t3"})
    assert history.timeline[-1].type == "WorkerTaskAssigned"
    assert [c.outcome for c in history.claims] == ["completed", "claimed", "claimed"]
    assert worker_history(store, "w1", T0.replace(year=2000)).state is None


def test_history_survives_deletion_and_tasks_list_every_attempt(store: EventStore) -> None:
    _story(store)
    deleted = worker_history(store, "w2")
    assert deleted.state is not None and deleted.state.status is WorkerStatus.DELETED
    assert deleted.timeline[-1].summary == "deleted by root"
    task = task_history(store, "t2")
    assert [(a.attempt, a.worker_id, a.outcome, a.reason) for a in task.attempts] == [
        (1, "w1", "requeued", "grace expired"),
        (2, "w2", "requeued", "deleted"),
    ]
    assert task.state is not None and task.state.status is TaskStatus.PENDING
    with pytest.raises(HistoryNotFoundError, match="no worker 'nobody'"):
        worker_history(store, "nobody")
