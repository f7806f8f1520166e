"""Group commit (issue 15): commands queued while a commit is in flight share one
transaction, each answered only after it committed; a failed group is decided again as
a whole, never half-applied; a member that depends on another member's write waits
for the next group.

LedgerService.run_group over real SQLite files and PostgreSQL databases, another
service on the same database standing in for a second host; the Ledger's queue under
concurrent asyncio callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from store_support import ALICE, JOB, ROOM, at, register, submit
from workerledger.adapters.commit_group import Claimed, Pending
from workerledger.adapters.ledger import Ledger
from workerledger.adapters.ports import EventStore, StoredEvent, StoreError
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.url import open_store
from workerledger.core import (
    ClaimTask,
    Decision,
    Event,
    SubmitTask,
    TaskNotFoundError,
    TaskStatus,
    UpdateTask,
)


def submit_command(task_id: str, now: float = 1) -> SubmitTask:
    return SubmitTask(now=at(now), actor=ALICE, task_id=task_id, job_name=JOB, room_id=ROOM)


def claim_command(worker_id: str, now: float = 2) -> ClaimTask:
    return ClaimTask(now=at(now), actor=ALICE, task_id="", worker_id=worker_id)


def logged(store: EventStore) -> list[tuple[str, str]]:
    return [(s.event.type, s.stream) for s in store.read(0, 10_000)]


@pytest.fixture
def opened(sql_url: str) -> Iterator[tuple[EventStore, LedgerService]]:
    store = open_store(sql_url)
    service = LedgerService(store)
    register(service, "w1")
    register(service, "w2")
    yield store, service
    store.close()


def test_independent_commands_share_one_transaction(
    opened: tuple[EventStore, LedgerService],
) -> None:
    store, service = opened
    before = service.commits
    group = [Pending(submit_command(f"t{i}")) for i in range(10)]
    service.run_group(group)
    assert all(p.done and p.error is None for p in group)
    assert service.commits == before + 1  # ten submits, one append
    assert service.commands_committed >= 10
    assert [t for t, _ in logged(store)].count("TaskSubmitted") == 10
    assert all(service.view.tasks[f"t{i}"].status is TaskStatus.PENDING for i in range(10))


def test_claims_in_one_group_take_different_tasks(
    opened: tuple[EventStore, LedgerService],
) -> None:
    store, service = opened
    for task in ("t1", "t2"):
        submit(service, task)
    group = [Pending(claim_command("w1"), claim=True), Pending(claim_command("w2"), claim=True)]
    service.run_group(group)
    claimed = [p.outcome() for p in group]
    assert all(isinstance(c, Claimed) for c in claimed)
    tasks = {c.task_id for c in claimed if isinstance(c, Claimed)}
    assert tasks == {"t1", "t2"}  # the second claim skipped the first's task
    assert [t for t, _ in logged(store)].count("TaskClaimed") == 2


def test_a_member_that_reads_another_members_write_waits_for_the_next_group(
    opened: tuple[EventStore, LedgerService],
) -> None:
    """Cancelling a task submitted earlier in the same group: decided on the committed
    view it would be refused (no such task); it is deferred and then succeeds."""
    _, service = opened
    before = service.commits
    cancel = UpdateTask(now=at(2), actor=ALICE, task_id="t9", status=TaskStatus.CANCELLED)
    group = [Pending(submit_command("t9")), Pending(cancel)]
    service.run_group(group)
    assert group[1].error is None, group[1].error
    assert service.view.tasks["t9"].status is TaskStatus.CANCELLED
    assert service.commits == before + 2
    # and a refusal with nothing written before it stands in the same group
    lone = Pending(UpdateTask(now=at(3), actor=ALICE, task_id="no", status=TaskStatus.CANCELLED))
    service.run_group([lone])
    assert isinstance(lone.error, TaskNotFoundError)


def test_a_group_that_lost_a_race_is_decided_again_as_a_whole(
    opened: tuple[EventStore, LedgerService],
    sql_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another host claims t1 between this group's decisions and its append: the append
    conflicts, nothing of the group is stored, and every member is decided again (the
    claim now takes t2; the submit is stored once)."""
    store, service = opened
    submit(service, "t1")
    submit(service, "t2")
    other_store = open_store(sql_url)
    other = LedgerService(other_store)
    register_count = len(logged(store))
    real_append = store.append
    calls: list[int] = []
    others: list[int] = []

    def append_after_the_other_host(
        events: Sequence[Event], expected: Mapping[str, int]
    ) -> list[StoredEvent]:
        calls.append(len(events))
        if len(calls) == 1:
            taken = other.claim_next(claim_command("w2"))  # takes t1, the oldest
            others.append(len(taken.decision.events) if taken else 0)
        return real_append(events, expected)

    monkeypatch.setattr(store, "append", append_after_the_other_host)
    group = [Pending(submit_command("t3")), Pending(claim_command("w1"), claim=True)]
    conflicts = service.conflicts
    try:
        service.run_group(group)
    finally:
        other_store.close()
    assert service.conflicts == conflicts + 1
    assert len(calls) == 2 and calls[0] == calls[1]  # the same group, decided again
    claimed = group[1].outcome()
    assert isinstance(claimed, Claimed) and claimed.task_id == "t2"
    assert isinstance(group[0].outcome(), Decision)
    log = logged(store)
    assert [t for t, _ in log].count("TaskSubmitted") == 3  # t1, t2, t3: t3 once
    claims = [s for t, s in log if t == "TaskClaimed"]
    assert sorted(claims) == ["task:t1", "task:t2"]  # w2's t1 and w1's t2, nothing else
    # nothing of the failed attempt is stored: only the other host's claim and the group
    assert len(log) == register_count + others[0] + calls[1]


def test_a_group_whose_answer_was_lost_is_read_back_not_stored_twice(
    opened: tuple[EventStore, LedgerService], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, service = opened
    real_append = store.append
    lost = [True]

    def commit_then_lose_the_answer(
        events: Sequence[Event], expected: Mapping[str, int]
    ) -> list[StoredEvent]:
        stored = real_append(events, expected)
        if lost.pop() if lost else False:
            raise StoreError("connection reset after COMMIT")
        return stored

    monkeypatch.setattr(store, "append", commit_then_lose_the_answer)
    group = [Pending(submit_command(f"t{i}")) for i in range(5)]
    service.run_group(group)
    assert all(isinstance(p.outcome(), Decision) for p in group)
    assert [t for t, _ in logged(store)].count("TaskSubmitted") == 5


def test_a_member_the_store_cannot_take_fails_alone(
    opened: tuple[EventStore, LedgerService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append that fails with an unreadable outcome for one member's stream: the
    group is retried one member at a time, so only that member reports the error."""
    store, service = opened
    real_append, real_read_stream = store.append, store.read_stream

    def refuse_t_bad(events: Sequence[Event], expected: Mapping[str, int]) -> list[StoredEvent]:
        if any(event.stream == "task:t-bad" for event in events):
            raise StoreError("value too long for the column")
        return real_append(events, expected)

    def unreadable(stream: str, after_version: int = 0) -> list[StoredEvent]:
        if stream == "task:t-bad":
            raise StoreError("server closed the connection")
        return real_read_stream(stream, after_version)

    monkeypatch.setattr(store, "append", refuse_t_bad)
    monkeypatch.setattr(store, "read_stream", unreadable)
    group = [Pending(submit_command(name)) for name in ("t-a", "t-bad", "t-b")]
    service.run_group(group)
    assert isinstance(group[1].error, StoreError)
    assert group[0].error is None and group[2].error is None
    submitted = {s for t, s in logged(store) if t == "TaskSubmitted"}
    assert submitted == {"task:t-a", "task:t-b"}


async def test_concurrent_callers_are_answered_after_their_shared_commit(
    opened: tuple[EventStore, LedgerService],
) -> None:
    """Forty submits and claims awaited together through the Ledger's queue: fewer
    commits than commands, every command answered, every task stored and claimed once."""
    store, service = opened
    ledger = Ledger(service)
    try:
        commits = service.commits
        decisions = await asyncio.gather(
            *(ledger.execute(submit_command(f"c{i}")) for i in range(40))
        )
        assert all(d.events for d in decisions)
        assert service.commits - commits < 40
        claims: list[Any] = await asyncio.gather(
            ledger.claim_next(claim_command("w1")), ledger.claim_next(claim_command("w2"))
        )
        assert all(c is not None for c in claims)
        assert len({c.task_id for c in claims}) == 2
        log = [t for t, _ in logged(store)]
        assert log.count("TaskSubmitted") == 40
        assert log.count("TaskClaimed") == 2
    finally:
        ledger.close()
