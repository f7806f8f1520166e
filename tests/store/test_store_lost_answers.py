"""A committed command is a success (issue 18): nothing after the append turns it into
an error, and an append whose outcome is unknown is resolved by reading back.

Unit tests of LedgerService over a store that fails at chosen moments (a wrapper of
the in-memory store), then the real thing: PostgreSQL connections terminated between
another host's commit and this host's append.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from store_support import ALICE, JOB, ROOM, at, claim, register, report, submit
from workerledger.adapters.ports import StoredEvent, StoreError
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.memory import InMemoryEventStore
from workerledger.adapters.store.url import open_store
from workerledger.core import ClaimTask, Event, SubmitTask, TaskStatus


class FlakyStore(InMemoryEventStore):
    """The in-memory store whose next appends fail: before or after committing."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_before = 0  # appends that fail without writing
        self.fail_after = 0  # appends that commit, then lose their answer
        self.fail_reads = 0  # read_stream calls that fail

    def append(self, events: Sequence[Event], expected: Mapping[str, int]) -> list[StoredEvent]:
        if self.fail_before:
            self.fail_before -= 1
            raise StoreError("connection reset before COMMIT")
        stored = super().append(events, expected)
        if self.fail_after:
            self.fail_after -= 1
            raise StoreError("connection reset after COMMIT")
        return stored

    def read_stream(self, stream: str, after_version: int = 0) -> list[StoredEvent]:
        if self.fail_reads:
            self.fail_reads -= 1
            raise StoreError("server closed the connection")
        return super().read_stream(stream, after_version)


def types(store: FlakyStore) -> list[str]:
    return [stored.event.type for stored in store.read(0, 1000)]


@pytest.fixture
def flaky() -> tuple[FlakyStore, LedgerService]:
    store = FlakyStore()
    service = LedgerService(store)
    register(service, "w1")
    return store, service


def test_an_append_that_committed_before_its_answer_was_lost_is_a_success(
    flaky: tuple[FlakyStore, LedgerService],
) -> None:
    store, service = flaky
    store.fail_after = 1
    submit(service, "t1")
    assert types(store).count("TaskSubmitted") == 1
    assert service.view.tasks["t1"].status is TaskStatus.PENDING


def test_an_append_that_did_not_commit_is_decided_again_and_stored_once(
    flaky: tuple[FlakyStore, LedgerService],
) -> None:
    store, service = flaky
    submit(service, "t1")
    store.fail_before = 2
    claim(service, "w1", "t1")
    assert types(store).count("TaskClaimed") == 1
    assert service.view.tasks["t1"].attempt == 1


def test_a_read_back_that_fails_a_few_times_still_resolves_the_outcome(
    flaky: tuple[FlakyStore, LedgerService],
) -> None:
    store, service = flaky
    submit(service, "t1")
    claim(service, "w1", "t1")
    store.fail_after, store.fail_reads = 1, 2
    report(service, "t1", TaskStatus.RUNNING)
    assert types(store).count("TaskStarted") == 1


def test_an_outcome_that_cannot_be_read_back_is_reported_not_guessed(
    flaky: tuple[FlakyStore, LedgerService],
) -> None:
    store, service = flaky
    store.fail_after, store.fail_reads = 1, 100
    with pytest.raises(StoreError, match="after COMMIT"):
        submit(service, "t1")
    # the client resends with its key; the stored task answers (see test_resends)
    store.fail_reads = 0
    command = SubmitTask(
        now=at(1), actor=ALICE, task_id="t1", job_name=JOB, room_id=ROOM, request_hash=None
    )
    service.catch_up()
    assert command.task_id in service.view.tasks


def test_a_failing_catch_up_after_a_commit_is_deferred_to_the_next_command(
    flaky: tuple[FlakyStore, LedgerService], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, service = flaky
    other = LedgerService(store)  # another host appends in between: adopting must catch up
    submit(service, "t1")
    real_append = store.append

    def append_after_other(events: Sequence[Event], expected: Mapping[str, int]) -> list[Any]:
        monkeypatch.setattr(store, "append", real_append)
        submit(other, "t-other")
        monkeypatch.setattr(store, "read", failing_read)
        return real_append(events, expected)

    real_read = store.read

    def failing_read(after: int, limit: int) -> list[StoredEvent]:
        monkeypatch.setattr(store, "read", real_read)
        raise StoreError("server closed the connection")

    monkeypatch.setattr(store, "append", append_after_other)
    claimed = service.claim_next(
        ClaimTask(now=at(2), actor=ALICE, task_id="", worker_id="w1", request_key="k")
    )
    assert claimed is not None and claimed.task_id == "t1"
    submit(service, "t2", now=3)  # the next command catches up with what was missed
    assert {"t1", "t-other", "t2"} <= set(service.view.tasks)
    assert service.view.tasks["t1"].status is TaskStatus.CLAIMED


@pytest.mark.services
def test_terminated_postgres_connections_never_fail_a_committed_command(
    postgres_url: str,
) -> None:
    """Host B commits between host A's catch-up and append while A's pooled connections
    are terminated: A's claim and completion are stored once and answered as successes."""
    import psycopg

    a, b = LedgerService(open_store(postgres_url)), LedgerService(open_store(postgres_url))
    dbname = postgres_url.rsplit("/", 1)[1]
    try:
        register(a, "w1")
        submit(a, "t1")
        store = a.store
        real_append = store.append
        kills = 0

        armed = True

        def interfere(events: Sequence[Event], expected: Mapping[str, int]) -> list[Any]:
            nonlocal kills, armed
            if not armed:
                return real_append(events, expected)
            armed, kills = False, kills + 1
            submit(b, f"t-b{kills}", now=kills)
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,),
                )
            return real_append(events, expected)

        store.append = interfere  # type: ignore[method-assign]
        claimed = a.claim_next(ClaimTask(now=at(5), actor=ALICE, task_id="", worker_id="w1"))
        assert claimed is not None and claimed.task_id == "t1"
        armed = True
        report(a, "t1", TaskStatus.RUNNING, now=6)
        armed = True
        report(a, "t1", TaskStatus.COMPLETED, now=7)
        store.append = real_append  # type: ignore[method-assign]
        b.catch_up()
        history = [s.event.type for s in b.store.read_stream("task:t1")]
        assert history == ["TaskSubmitted", "TaskClaimed", "TaskStarted", "TaskCompleted"]
        assert kills == 3
    finally:
        a.close()
        b.close()
