"""Guards the eventsourcing internals the store backends build on, against a library upgrade.

pyproject allows any eventsourcing >=9.5.6,<10. Where 9.5 has no public extension
point, adapters/store keeps an override of a private method (ARCHITECTURE.md, "The
store"); these tests fail with a message naming the override to review when the
installed version changes what that override relies on:
- the signature (parameter names and kinds) of each private method, or its removal;
- that the library still calls the override where the backend needs it;
- the public but undocumented recorder attributes postgres.py's `insert_events` is
  built from;
- that the library does not start defining a name our subclasses add (it would be
  silently shadowed, or would shadow ours).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import cast
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteConnectionPool
from workerledger.adapters.store import postgres, sqlite
from workerledger.adapters.store.json_codec import PlainJSONTranscoder
from workerledger.adapters.store.recorder import CoreEventMapper

ES = f"eventsourcing {version('eventsourcing')}"
P, KW = "POSITIONAL_OR_KEYWORD", "VAR_KEYWORD"


@dataclass(frozen=True)
class PrivateUse:
    owner: type
    name: str
    parameters: tuple[tuple[str, str], ...]  # (name, kind); a ** parameter's name is "**"
    module: str  # adapters/store/<module> holds the override

    def __str__(self) -> str:
        return f"{self.owner.__name__}.{self.name}"


CREATE_CONNECTION = PrivateUse(
    SQLiteConnectionPool, "_create_connection", (("self", P),), "sqlite.py"
)
INSERT_EVENTS = PrivateUse(
    SQLiteApplicationRecorder,
    "_insert_events",
    (("self", P), ("c", P), ("stored_events", P), ("**", KW)),
    "sqlite.py",
)
PRIVATE_USES = [CREATE_CONNECTION, INSERT_EVENTS]


def review(use: PrivateUse, change: str) -> str:
    return f"{ES} {change}: workerledger's override in adapters/store/{use.module} needs review"


def parameters_of(owner: type, name: str) -> tuple[tuple[str, str], ...]:
    signature = inspect.signature(getattr(owner, name))
    return tuple(
        ("**" if p.kind is p.VAR_KEYWORD else p.name, p.kind.name)
        for p in signature.parameters.values()
    )


@pytest.mark.parametrize("use", PRIVATE_USES, ids=str)
def test_the_private_methods_we_override_keep_their_signature(use: PrivateUse) -> None:
    if not callable(inspect.getattr_static(use.owner, use.name, None)):
        pytest.fail(review(use, f"removed {use}"))
    found = parameters_of(use.owner, use.name)
    assert found == use.parameters, review(
        use, f"changed the signature of {use} (now {found}, expected {use.parameters})"
    )


@pytest.fixture
def sqlite_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[sqlite.SQLiteEventRecorder]:
    monkeypatch.setenv("WORKERLEDGER_SQLITE_SYNCHRONOUS", "EXTRA")
    store = sqlite.open_sqlite_store(str(tmp_path / "ledger.db"))
    yield cast(sqlite.SQLiteEventRecorder, store.events)
    store.close()


def test_new_sqlite_connections_still_pass_through_create_connection(
    sqlite_store: sqlite.SQLiteEventRecorder,
) -> None:
    # given a store opened with synchronous=EXTRA; when a connection reads the setting
    with sqlite_store.datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA synchronous")
        mode = cursor.fetchone()[0]
    # then the pool's override set it (EXTRA is 3; SQLite's own default is FULL, 2)
    assert mode == 3, review(
        CREATE_CONNECTION, f"no longer creates connections through {CREATE_CONNECTION}"
    )


def test_sqlite_inserts_still_run_the_version_check_in_their_transaction(
    sqlite_store: sqlite.SQLiteEventRecorder,
) -> None:
    # given an event for one stream and a wrong expected version for another
    stream, other = uuid4(), uuid4()
    event = StoredEvent(originator_id=stream, originator_version=1, topic="t", state=b"{}")
    change = review(INSERT_EVENTS, f"no longer runs {INSERT_EVENTS} inside insert_events")
    # when both are inserted, and when the check comes alone (a check-only append)
    for events in ([event], []):
        try:
            sqlite_store.insert_events(events, check_versions={other: 1})
        except IntegrityError:
            continue
        pytest.fail(change)
    # then the check refused both and rolled the insert back
    assert sqlite_store.select_events(stream) == [], change


# The names our subclasses add; eventsourcing must not define them on the bases.
ADDED_ON_CLASSES = [
    (sqlite._SynchronousPool, "sqlite.py"),
    (sqlite.SQLiteEventRecorder, "sqlite.py"),
    (postgres.PostgresEventRecorder, "postgres.py"),
    (CoreEventMapper, "recorder.py"),
]
OVERRIDES = {"insert_events", "_insert_events", "_create_connection"}
NOT_OURS = {"_abc_impl"}  # set by ABCMeta on every abstract class


@pytest.mark.parametrize(
    "ours,module", ADDED_ON_CLASSES, ids=[c.__name__ for c, _ in ADDED_ON_CLASSES]
)
def test_the_library_defines_none_of_the_names_our_subclasses_add(ours: type, module: str) -> None:
    added = {n for n in vars(ours) if not n.startswith("__")} - OVERRIDES - NOT_OURS
    for base in ours.__mro__[1:]:
        if base.__module__.startswith("eventsourcing"):
            clash = ", ".join(f"{base.__name__}.{name}" for name in sorted(added & set(vars(base))))
            assert not clash, (
                f"{ES} now defines {clash}, which workerledger's "
                f"{ours.__name__} in adapters/store/{module} also defines: needs review"
            )


def test_the_mapper_has_none_of_our_instance_attributes() -> None:
    library = vars(Mapper(transcoder=PlainJSONTranscoder()))
    assert "upcasters" in vars(CoreEventMapper())
    assert "upcasters" not in library, (
        f"{ES} now sets Mapper.upcasters, which workerledger's CoreEventMapper in "
        "adapters/store/recorder.py also sets: needs review"
    )


POSTGRES_BUILDS_ON = {  # public, undocumented: what PostgresEventRecorder.insert_events uses
    "lock_table_statements": list,
    "insert_events_statement": object,
    "channel_name": str,
    "construct_pg_stored_event": object,
}
POSTGRES_ADDS = ("max_version_statement", "select_stream_statement", "notify_statement")


def test_the_postgres_recorder_still_offers_what_our_insert_is_built_from(
    postgres_url: str,
) -> None:
    parsed = postgres.parse_url(postgres_url)
    datastore = PostgresDatastore(parsed.database or "", parsed.host or "", parsed.port or 5432,
                                  parsed.username or "postgres", parsed.password or "")  # fmt: skip
    try:
        library = PostgresApplicationRecorder(datastore, events_table_name="workerledger_events")
        ours = postgres.PostgresEventRecorder(datastore)
    finally:
        datastore.close()
    where = "workerledger's insert_events in adapters/store/postgres.py needs review"
    for name, kind in POSTGRES_BUILDS_ON.items():
        found = getattr(library, name, None)
        assert isinstance(found, kind), f"{ES} removed PostgresApplicationRecorder.{name}: {where}"
    assert "RETURNING notification_id" in library.insert_events_statement.as_string(), (
        f"{ES} changed PostgresApplicationRecorder.insert_events_statement: {where}"
    )
    for name in POSTGRES_ADDS:
        assert name in vars(ours) and name not in vars(library), (
            f"{ES} now sets PostgresApplicationRecorder.{name}, which workerledger's "
            "PostgresEventRecorder in adapters/store/postgres.py also sets: needs review"
        )
