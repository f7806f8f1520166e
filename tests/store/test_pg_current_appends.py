"""PostgreSQL appends on the current view (`LedgerService(current_appends=True)`, what a
host runs): a group is decided on the view as it is, without reading the log first; the
append reads what other hosts committed under its table lock, and only when anything is
new the view folds it in and the group is decided again there, before anything is
inserted. A group that appends nothing reads the log after deciding instead.

Real PostgreSQL databases; a second service on the same database stands in for another
host.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, Notification, OperationalError
from eventsourcing.persistence import StoredEvent as RecorderEvent
from store_support import ALICE, JOB, ROOM, at, claim_next, register, report, submit
from workerledger.adapters.commit_group import Pending
from workerledger.adapters.ports import StoredEvent, StoreError
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.postgres import PostgresEventRecorder
from workerledger.adapters.store.recorder import CorruptEventError, RecorderEventStore
from workerledger.adapters.store.url import open_store
from workerledger.core import ClaimTask, RequeueTask, SubmitTask, TaskStatus

pytestmark = pytest.mark.services


@pytest.fixture
def hosts(postgres_url: str) -> Iterator[tuple[LedgerService, LedgerService]]:
    a = LedgerService(open_store(postgres_url), current_appends=True)
    b = LedgerService(open_store(postgres_url), current_appends=True)
    yield a, b
    a.close()
    b.close()


def submit_command(task_id: str, now: float = 1) -> SubmitTask:
    return SubmitTask(now=at(now), actor=ALICE, task_id=task_id, job_name=JOB, room_id=ROOM)


def reads_of(service: LedgerService, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the service's catch-up reads of the log (the positions they start at)."""
    calls: list[int] = []
    real = service.store.read

    def counted(after: int, limit: int) -> list[StoredEvent]:
        calls.append(after)
        return real(after, limit)

    monkeypatch.setattr(service.store, "read", counted)
    return calls


def recorder_of(service: LedgerService) -> PostgresEventRecorder:
    store = service.store
    assert isinstance(store, RecorderEventStore)
    assert isinstance(store.events, PostgresEventRecorder)
    return store.events


def stream_types(service: LedgerService, stream: str) -> list[str]:
    return [s.event.type for s in service.store.read_stream(stream)]


def two_workers_two_tasks(service: LedgerService) -> None:
    """w1 and w2 serve JOB; t1, then t2, are pending in it."""
    register(service, "w1")
    register(service, "w2")
    submit(service, "t1")
    submit(service, "t2")


def test_a_host_alone_reads_nothing_before_deciding(
    hosts: tuple[LedgerService, LedgerService], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = hosts
    register(a, "w1")
    reads = reads_of(a, monkeypatch)
    submit(a, "t1")
    assert claim_next(a, "w1") == "t1"
    report(a, "t1", TaskStatus.RUNNING)
    report(a, "t1", TaskStatus.COMPLETED)
    assert reads == []  # every decision wrote: the appends read what was new
    assert stream_types(a, "task:t1") == [
        "TaskSubmitted",
        "TaskClaimed",
        "TaskStarted",
        "TaskCompleted",
    ]
    assert a.view.position == a.store.head()  # type: ignore[attr-defined]


def test_a_decision_on_a_stale_view_is_made_again_under_the_append_lock(
    hosts: tuple[LedgerService, LedgerService],
) -> None:
    a, b = hosts
    two_workers_two_tasks(a)
    b.catch_up()
    assert claim_next(b, "w2") == "t1"  # another host takes the oldest task
    # a's view still shows t1 pending: its claim picks t1, the append reads b's claim
    # under the lock and the claim is decided again there: t2, with no conflict
    assert claim_next(a, "w1") == "t2"
    assert a.conflicts == 0
    assert a.redecided == 1  # b's claim is on a stream a's claim read
    assert stream_types(a, "task:t1") == ["TaskSubmitted", "TaskClaimed"]
    assert stream_types(a, "task:t2") == ["TaskSubmitted", "TaskClaimed"]
    assert a.view.tasks["t1"].worker_id == "w2"
    assert a.view.position == a.store.head()  # type: ignore[attr-defined]


def test_a_decision_no_new_event_touches_stands_without_being_made_again(
    hosts: tuple[LedgerService, LedgerService],
) -> None:
    """What others committed beyond the view is folded in under the lock, but a group
    whose scopes none of it touches is appended as decided (no second decision)."""
    a, b = hosts
    two_workers_two_tasks(a)
    assert claim_next(a, "w1") == "t1"
    b.catch_up()
    assert claim_next(b, "w2") == "t2"  # beyond a's view, on streams a's report does not read
    report(a, "t1", TaskStatus.RUNNING)
    assert a.redecided == 0 and a.conflicts == 0
    assert a.view.tasks["t2"].worker_id == "w2"  # b's claim folded into a's view
    assert stream_types(a, "task:t1") == ["TaskSubmitted", "TaskClaimed", "TaskStarted"]
    assert a.view.position == a.store.head()  # type: ignore[attr-defined]


def test_a_claim_is_made_again_when_an_older_task_became_pending_meanwhile(
    hosts: tuple[LedgerService, LedgerService],
) -> None:
    """FIFO across hosts: a's view shows t1 held, so its claim picks t2; under the lock
    a requeue of t1 by b is new. t1's stream is not in the claim's scope, but t1 is
    pending again in the claim's job and older: the claim is decided again, on t1."""
    a, b = hosts
    two_workers_two_tasks(a)
    b.catch_up()
    assert claim_next(b, "w2") == "t1"
    a.catch_up()
    b.execute(RequeueTask(now=at(2), actor=ALICE, task_id="t1", reason="operator"))
    assert a.view.tasks["t1"].status is TaskStatus.CLAIMED  # a has not seen the requeue
    assert claim_next(a, "w1") == "t1"
    assert a.redecided == 1
    assert a.view.tasks["t2"].status is TaskStatus.PENDING


def test_a_claim_stands_when_only_newer_tasks_were_submitted_meanwhile(
    hosts: tuple[LedgerService, LedgerService],
) -> None:
    a, b = hosts
    register(a, "w1")
    submit(a, "t1")
    b.catch_up()
    submit(b, "t2")  # pending in the claim's job, but queued behind t1
    assert claim_next(a, "w1") == "t1"
    assert a.redecided == 0
    assert a.view.tasks["t2"].status is TaskStatus.PENDING  # folded in under the lock


def test_what_another_host_wrote_is_seen_by_decisions_that_would_write_nothing(
    hosts: tuple[LedgerService, LedgerService],
) -> None:
    """Read-your-writes across hosts: on a's empty view the worker and the job are
    unknown (a refusal, nothing to append), so a reads the log and decides again."""
    a, b = hosts
    register(b, "w1")
    submit(b, "t1")
    assert claim_next(a, "w1") == "t1"
    a.execute(SubmitTask(now=at(1), actor=ALICE, task_id="t2", job_name=JOB, room_id=ROOM))
    assert stream_types(b, "task:t2") == ["TaskSubmitted"]
    # an empty queue in a's view while b submitted: the read after deciding finds it
    assert claim_next(a, "w1") == "t2"
    submit(b, "t3")
    assert claim_next(a, "w1") == "t3"
    assert claim_next(a, "w1") is None


def test_a_view_far_behind_catches_up_before_its_append(postgres_url: str) -> None:
    a = LedgerService(open_store(postgres_url), current_appends=True, batch=2)
    b = LedgerService(open_store(postgres_url), current_appends=True)
    try:
        register(a, "w1")
        for index in range(5):
            submit(b, f"t{index}")
        submit(a, "t9")  # more is new than the append reads under its lock
        assert {f"t{i}" for i in range(5)} | {"t9"} <= set(a.view.tasks)
        assert stream_types(a, "task:t9") == ["TaskSubmitted"]
        assert a.conflicts == 0
        assert a.view.position == a.store.head()  # type: ignore[attr-defined]
    finally:
        a.close()
        b.close()


def test_an_append_whose_answer_was_lost_is_read_back_not_stored_twice(
    hosts: tuple[LedgerService, LedgerService], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = hosts
    register(a, "w1")
    recorder = recorder_of(a)
    real = recorder.insert_events_after
    lost = [True]

    def commit_then_lose_the_answer(*args: Any) -> list[int]:
        ids = real(*args)
        if lost.pop() if lost else False:
            raise OperationalError("server closed the connection unexpectedly")
        return ids

    monkeypatch.setattr(recorder, "insert_events_after", commit_then_lose_the_answer)
    submit(a, "t1")  # committed, answer lost, read back: a success
    assert stream_types(a, "task:t1") == ["TaskSubmitted"]
    assert claim_next(a, "w1") == "t1"
    assert stream_types(a, "task:t1") == ["TaskSubmitted", "TaskClaimed"]


def test_a_member_the_store_cannot_take_fails_alone(
    hosts: tuple[LedgerService, LedgerService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append that fails with an unreadable outcome for one member's stream: the
    group is retried one member at a time, so only that member reports the error."""
    a, _ = hosts
    register(a, "w1")
    recorder = recorder_of(a)
    real = recorder.insert_events_after
    real_read_stream = a.store.read_stream

    def refuse_t_bad(after: int, limit: int, build: Any) -> list[int]:
        def checked(new: list[Notification]) -> Sequence[RecorderEvent]:
            records: Sequence[RecorderEvent] = build(new)
            if any(b'"task:t-bad"' in bytes(record.state) for record in records):
                raise OperationalError("value too long for the column")
            return records

        return real(after, limit, checked)

    def unreadable(stream: str, after_version: int = 0) -> list[StoredEvent]:
        if stream == "task:t-bad":
            raise StoreError("server closed the connection")
        return real_read_stream(stream, after_version)

    monkeypatch.setattr(recorder, "insert_events_after", refuse_t_bad)
    monkeypatch.setattr(a.store, "read_stream", unreadable)
    group = [Pending(submit_command(name)) for name in ("t-a", "t-bad", "t-b")]
    a.run_group(group)
    assert isinstance(group[1].error, StoreError)
    assert group[0].error is None and group[2].error is None
    assert {"t-a", "t-b"} <= set(a.view.tasks) and "t-bad" not in a.view.tasks
    assert stream_types(a, "task:t-a") == stream_types(a, "task:t-b") == ["TaskSubmitted"]


def test_every_member_of_a_group_decided_again_is_answered_when_its_outcome_is_lost(
    hosts: tuple[LedgerService, LedgerService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a's stale view the claim finds nothing (no member of the append); under the
    lock it sees b's submit and joins the group. The commit's answer is lost and the
    streams cannot be read back: the members of the group as last decided, the claim
    included, are retried one at a time, and each gets an answer."""
    a, b = hosts
    register(a, "w1")
    recorder = recorder_of(a)
    real = recorder.insert_events_after
    real_read_stream = a.store.read_stream
    lost, read_failures = [True], [5]  # 5: every read-back attempt fails

    def commit_then_lose_the_answer(*args: Any) -> list[int]:
        ids = real(*args)
        if lost.pop() if lost else False:
            raise OperationalError("server closed the connection unexpectedly")
        return ids

    def unreadable_after_the_loss(stream: str, after_version: int = 0) -> list[StoredEvent]:
        if not lost and read_failures[0] > 0:
            read_failures[0] -= 1
            raise StoreError("server closed the connection")
        return real_read_stream(stream, after_version)

    submit(b, "t1")
    monkeypatch.setattr(recorder, "insert_events_after", commit_then_lose_the_answer)
    monkeypatch.setattr(a.store, "read_stream", unreadable_after_the_loss)
    group = [
        Pending(submit_command("t2")),
        Pending(ClaimTask(now=at(2), actor=ALICE, task_id="", worker_id="w1"), claim=True),
    ]
    a.run_group(group)
    assert read_failures == [0]
    assert all(pending.done for pending in group)
    assert stream_types(b, "task:t1") == ["TaskSubmitted", "TaskClaimed"]  # stored once
    assert stream_types(b, "task:t2")[0] == "TaskSubmitted"  # (an unkeyed claim retried
    assert stream_types(b, "task:t2").count("TaskSubmitted") == 1  # alone may take t2)


def test_terminated_connections_never_fail_a_committed_command(
    hosts: tuple[LedgerService, LedgerService], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another host commits, then every pooled connection of the database is terminated,
    just before each of a's appends: each command is stored once and answered."""
    import psycopg

    a, b = hosts
    dbname = postgres_url.rsplit("/", 1)[1]
    register(a, "w1")
    submit(a, "t1")
    recorder = recorder_of(a)
    real = recorder.insert_events_after
    kills: list[int] = []
    armed = [True]

    def interfere(*args: Any) -> list[int]:
        if armed.pop() if armed else False:
            kills.append(1)
            submit(b, f"t-b{len(kills)}", now=len(kills))
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,),
                )
        return real(*args)

    monkeypatch.setattr(recorder, "insert_events_after", interfere)
    assert claim_next(a, "w1", now=5) == "t1"
    armed.append(True)
    report(a, "t1", TaskStatus.RUNNING, now=6)
    armed.append(True)
    report(a, "t1", TaskStatus.COMPLETED, now=7)
    assert len(kills) == 3
    fresh = LedgerService(open_store(postgres_url))  # the others' connections were killed
    try:
        assert stream_types(fresh, "task:t1") == [
            "TaskSubmitted",
            "TaskClaimed",
            "TaskStarted",
            "TaskCompleted",
        ]
    finally:
        fresh.close()
    assert {"t-b1", "t-b2", "t-b3"} <= set(a.view.tasks)


def test_an_undecodable_new_event_fails_the_command_with_its_own_error(
    hosts: tuple[LedgerService, LedgerService],
) -> None:
    """An event the append reads under its lock and cannot decode stops the command with
    the one-line CorruptEventError (never an 'append outcome unknown'), storing nothing."""
    a, _ = hosts
    register(a, "w1")
    before = a.store.head()  # type: ignore[attr-defined]
    bad = RecorderEvent(
        originator_id=uuid4(),
        originator_version=1,
        topic="workerledger.event:TaskSubmitted",
        state=b"not json",
    )
    recorder_of(a).insert_events([bad])  # another host's build wrote it
    with pytest.raises(CorruptEventError, match="corrupt event at position"):
        submit(a, "t1")
    assert a.store.head() == before + 1  # type: ignore[attr-defined]


def test_statements_written_as_literals_keep_any_topic_and_state(
    hosts: tuple[LedgerService, LedgerService],
) -> None:
    a, _ = hosts
    recorder = recorder_of(a)
    stream = uuid4()
    odd = "topic with 'quotes', \\backslashes\\, %s and {braces}; DROP TABLE x; --"
    state = bytes(range(256)) + "é ✓".encode()
    ids = recorder.insert_events(
        [RecorderEvent(originator_id=stream, originator_version=1, topic=odd, state=state)]
    )
    assert ids and len(ids) == 1
    rows: Sequence[Notification] = recorder.select_after(ids[0] - 1, 10)
    assert [(r.id, r.originator_id, r.originator_version, r.topic, r.state) for r in rows] == [
        (ids[0], stream, 1, odd, state)
    ]
    assert recorder.insert_events([], check_versions={stream: 1}) == []
    with pytest.raises(IntegrityError):
        recorder.insert_events([], check_versions={stream: 2})
    built: list[list[Notification]] = []

    def build(new: list[Notification]) -> list[RecorderEvent]:
        built.append(new)
        return [RecorderEvent(originator_id=stream, originator_version=2, topic=odd, state=b"")]

    (second,) = recorder.insert_events_after(ids[0] - 1, 10, build)
    assert [[r.id for r in new] for new in built] == [[ids[0]]]
    assert second > ids[0]
    assert [r.state for r in recorder.select_stream(stream)] == [state, b""]


def test_sqlite_stores_still_catch_up_before_deciding(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    a = LedgerService(open_store(url), current_appends=True)
    b = LedgerService(open_store(url), current_appends=True)
    try:
        assert not getattr(a.store, "appends_current", True)
        register(b, "w1")
        submit(b, "t1")
        assert claim_next(a, "w1") == "t1"
    finally:
        a.close()
        b.close()
