"""SQLite catch-up reads skip the query when nothing is new (`SQLiteEventRecorder.select_after`).

The skip must never hide an event: whatever another connection or process committed,
and whatever this store appended, a later read from an older position returns it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from store_support import at, register, submit
from support.builders import ALICE
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.recorder import RecorderEventStore
from workerledger.adapters.store.sqlite import open_sqlite_store


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "log.db")


def _queries(store: RecorderEventStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the store's notification queries (the skip avoids them)."""
    calls: list[int] = []
    select = store.events.select_notifications

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return select(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store.events, "select_notifications", counted)
    return calls


def test_a_read_at_the_end_skips_the_query_until_another_store_commits(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = open_sqlite_store(path), open_sqlite_store(path)
    try:
        writer = LedgerService(theirs)
        register(writer, "w1")
        queries = _queries(ours, monkeypatch)
        head = ours.read(0, 1000)[-1].position  # read to the end: the next look may skip
        assert len(queries) == 1
        assert ours.read(head, 1000) == [] and len(queries) == 1  # nothing new: no query

        submit(writer, "t1")  # another connection (another host) commits
        new = ours.read(head, 1000)
        assert [stored.event.type for stored in new] == ["TaskSubmitted"]
        assert len(queries) == 2
    finally:
        ours.close()
        theirs.close()


def test_own_appends_are_read_by_a_reader_behind_them(path: str) -> None:
    store = open_sqlite_store(path)
    try:
        service = LedgerService(store)
        register(service, "w1")
        head = store.head()
        assert store.read(head, 1000) == []  # at the end: the next look may skip
        submit(service, "t1")  # appended through this store's own connection
        assert [s.event.type for s in store.read(head, 1000)] == ["TaskSubmitted"]
        behind = LedgerService(store)  # a second view, still at position 0
        behind.catch_up(liveness=False)
        assert behind.view.task("t1") is not None
        assert behind.view.position == service.view.position
    finally:
        store.close()


def test_a_full_batch_is_never_taken_for_the_end(path: str) -> None:
    store = open_sqlite_store(path)
    try:
        service = LedgerService(store)
        register(service, "w1")
        for index in range(3):
            submit(service, f"t{index}", now=index)
        total = store.head()
        first = store.read(0, 1)
        assert len(first) == 1
        rest = store.read(first[0].position, 1000)  # must not skip after a full batch
        assert [s.position for s in first + rest] == sorted(s.position for s in first + rest)
        assert rest[-1].position == total
    finally:
        store.close()


def test_two_services_on_one_file_see_each_others_commands(path: str) -> None:
    one, two = open_sqlite_store(path), open_sqlite_store(path)
    try:
        first, second = LedgerService(one), LedgerService(two)
        register(first, "w1")
        second.catch_up(liveness=False)
        for index in range(5):  # alternate writers; each catches up before deciding
            service = first if index % 2 == 0 else second
            submit(service, f"t{index}", now=index)
        first.catch_up(liveness=False)
        second.catch_up(liveness=False)
        for service in (first, second):
            assert [service.view.task(f"t{i}") is not None for i in range(5)] == [True] * 5
            assert service.view.position == one.head()
        assert ALICE.user == first.view.task("t4").submitted_by  # type: ignore[union-attr]
        assert at(4) == second.view.task("t4").created_at  # type: ignore[union-attr]
    finally:
        one.close()
        two.close()
