"""SQLite file backend: eventsourcing's SQLite recorders (WAL) plus the store's own tables.

The embedded default (`sqlite:///./workerledger.db`). Several processes may share a
file (SQLite serializes writers); the file is created on open unless `create=False`.
Before anything is written the file is checked: a text file, a SQLite database of
another application, a newer layout or an unreadable path is a StoreError.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID
from weakref import WeakKeyDictionary

from eventsourcing.persistence import IntegrityError, Notification, PersistenceError, StoredEvent
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
)
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from ..ports import StoreError
from .recorder import CoreEventMapper, RecorderEventStore
from .snapshots import DEFAULT_SNAPSHOT_INTERVAL
from .tables import EVENTS_TABLE, SNAPSHOTS_TABLE, check_meta, create_tables, read_meta
from .upcasting import Upcasters

LOCK_TIMEOUT_SECONDS = 30


def synchronous_mode() -> str:
    """`PRAGMA synchronous` for every connection (env WORKERLEDGER_SQLITE_SYNCHRONOUS).

    NORMAL (the default) is SQLite's recommendation for WAL: a committed transaction
    survives a crash or SIGKILL of any process; only an OS crash or power loss may undo
    the last commits. FULL also fsyncs every commit (about 3x slower writes here).
    """
    mode = os.environ.get("WORKERLEDGER_SQLITE_SYNCHRONOUS", "NORMAL").upper()
    if mode not in ("NORMAL", "FULL", "EXTRA"):
        raise StoreError(
            f"WORKERLEDGER_SQLITE_SYNCHRONOUS must be NORMAL, FULL or EXTRA, not {mode}"
        )
    return mode


class _SynchronousPool(SQLiteConnectionPool):
    """The library's pool, with `PRAGMA synchronous` set on every new connection.

    Private extension point (guarded by tests/store/test_store_library_contract.py):
    `_create_connection` is the factory method `ConnectionPool` declares abstract for
    its subclasses, and the only place a new connection exists. eventsourcing 9.5 has
    no public connection-setup hook for SQLite (PostgresDatastore has
    `after_connect_func`; SQLiteDatastore takes no pool or callback), and `synchronous`
    is a per-connection setting that SQLite does not persist in the file.
    """

    synchronous = "NORMAL"

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA synchronous={self.synchronous}")
        return connection


class _Datastore(SQLiteDatastore):
    """The library's datastore on a `_SynchronousPool`.

    SQLiteDatastore takes no pool argument, so the (public) `pool` it built is replaced
    before it has opened any connection.
    """

    def __init__(self, db_name: str, *, lock_timeout: int, synchronous: str) -> None:
        super().__init__(db_name=db_name, lock_timeout=lock_timeout)
        self.pool = _SynchronousPool(db_name=db_name, lock_timeout=lock_timeout)
        self.pool.synchronous = synchronous


class SQLiteEventRecorder(SQLiteApplicationRecorder):
    """The library's application recorder, plus expected-version checks, stream reads
    and `select_after`, the catch-up read that skips the query when nothing is new."""

    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore, events_table_name=EVENTS_TABLE)
        # per pooled connection: its `PRAGMA data_version` when a read reached the end
        self._versions_seen: WeakKeyDictionary[SQLiteConnection, int] = WeakKeyDictionary()
        self._known_end = 0  # no event beyond this position was committed through us
        self._known_lock = threading.Lock()

    def select_after(self, after: int, limit: int) -> Sequence[Notification]:
        """`select_notifications(after, limit, inclusive_of_start=False)`, without the
        query when no event beyond `after` can exist.

        `PRAGMA data_version` of a connection changes whenever any *other* connection
        (of any process) commits. So when a pooled connection's value is the one it
        had before a read that reached the end of the log, only this recorder's own
        appends through that connection can have added events since, and those end at
        `_known_end`: a reader at or beyond it has seen everything.
        """
        with (
            self.datastore.get_connection(commit=False) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute("PRAGMA data_version")
            version: int = cursor.fetchone()[0]
        with self._known_lock:
            if after >= self._known_end and self._versions_seen.get(connection) == version:
                return []
        rows = self.select_notifications(after, limit, inclusive_of_start=False)
        if len(rows) < limit:  # read to the end of the log as of the probe above
            with self._known_lock:
                self._known_end = max(self._known_end, after, rows[-1].id if rows else 0)
                self._versions_seen[connection] = version
        return rows

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The inserts, then the versions of `check_versions` (streams without events).

        Private extension point (guarded by tests/store/test_store_library_contract.py):
        the public `insert_events(stored_events, **kwargs)` opens the write transaction
        and hands its cursor and kwargs to `_insert_events`; the library's docs give this
        override as the way to add statements to that transaction (the searchable
        content/timestamps examples), as its own SQLiteProcessRecorder does. The public
        API has no other way to run a statement inside the insert transaction.
        """
        ids = super()._insert_events(c, stored_events, **kwargs)
        if ids:  # before the commit: a failed one only makes select_after query again
            with self._known_lock:
                self._known_end = max(self._known_end, *ids)
        # After the inserts: this transaction holds the write lock, so the check is exact.
        check: dict[UUID, int] = kwargs.get("check_versions") or {}
        for originator_id, expected in check.items():
            c.execute(
                f"SELECT MAX(originator_version) FROM {self.events_table_name} "
                "WHERE originator_id=?",
                (originator_id.hex,),
            )
            current = c.fetchone()[0] or 0
            if current != expected:
                raise IntegrityError(f"{originator_id} is at version {current}, not {expected}")
        return ids

    def select_stream(
        self, originator_id: UUID, *, gt: int = 0, lte: int | None = None
    ) -> list[Notification]:
        statement = (
            f"SELECT rowid, * FROM {self.events_table_name} "
            "WHERE originator_id=? AND originator_version>? "
        )
        params: list[Any] = [originator_id.hex, gt]
        if lte is not None:
            statement += "AND originator_version<=? "
            params.append(lte)
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement + "ORDER BY originator_version", params)
            return [
                Notification(
                    id=row["rowid"],
                    originator_id=originator_id,
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=row["state"],
                )
                for row in c.fetchall()
            ]


def sqlite_engine(path: str) -> Engine:
    """A SQLAlchemy engine on the same file, with real BEGINs (consistent reads)."""
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": LOCK_TIMEOUT_SECONDS, "isolation_level": None},
    )

    synchronous = synchronous_mode()

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with "database
        # is locked" (SQLITE_BUSY_SNAPSHOT, no busy wait) if another process committed in
        # between; writers that read first ask for IMMEDIATE, which waits for the lock.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def check_file(path: str, *, create: bool) -> None:
    """Refuse paths that are not (and cannot become) a workerledger SQLite database."""
    if os.path.isdir(path):
        raise StoreError(f"{path} is a directory, not a SQLite database file")
    if not os.path.exists(path):
        if not create:
            raise StoreError(f"database file {path} does not exist")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StoreError(f"cannot create {path}: directory {parent} does not exist")
        return
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"cannot open {path}: permission denied (need read and write)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=LOCK_TIMEOUT_SECONDS)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            meta = (
                dict(conn.execute("SELECT key, value FROM workerledger_meta").fetchall())
                if "workerledger_meta" in tables
                else None
            )
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path} is not a SQLite database ({error})") from error
    foreign = sorted(t for t in tables if not t.startswith(("workerledger_", "sqlite_")))
    if meta is None and foreign:
        names = ", ".join(foreign[:5])
        raise StoreError(
            f"{path} is a SQLite database of another application (tables: {names}); "
            "refusing to use it"
        )
    if meta is not None:
        check_meta(meta, path)


def open_sqlite_store(
    path: str,
    *,
    create: bool = True,
    snapshot_interval: int = DEFAULT_SNAPSHOT_INTERVAL,
    upcasters: Upcasters | None = None,
) -> RecorderEventStore:
    check_file(path, create=create)
    datastore = _Datastore(path, lock_timeout=LOCK_TIMEOUT_SECONDS, synchronous=synchronous_mode())
    engine = sqlite_engine(path)
    try:
        events = SQLiteEventRecorder(datastore)
        snapshots = SQLiteAggregateRecorder(datastore, events_table_name=SNAPSHOTS_TABLE)
        if create:
            with engine.connect() as conn:
                conn.execution_options(sqlite_immediate=True)
                with conn.begin():
                    create_tables(conn)
            events.create_table()
            snapshots.create_table()
        with engine.connect() as conn:
            check_meta(read_meta(conn), path)
    except (PersistenceError, SQLAlchemyError) as error:
        datastore.close()
        engine.dispose()
        raise StoreError(f"cannot open SQLite database {path}: {error}") from error
    except StoreError:
        datastore.close()
        engine.dispose()
        raise
    return RecorderEventStore(
        url=f"sqlite:///{path}",
        events=events,
        snapshots=snapshots,
        engine=engine,
        mapper=CoreEventMapper(upcasters),
        snapshot_interval=snapshot_interval,
        on_close=datastore.close,
    )
