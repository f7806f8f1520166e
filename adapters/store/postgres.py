"""PostgreSQL backend for several hosts: eventsourcing's PostgreSQL recorders plus our tables.

The schema is created once by `migrate` (`workerledger migrate`), serialized by an
advisory lock; hosts open the store with table creation off, which avoids the boot
race of the library's `CREATE OR REPLACE FUNCTION` (eventsourcing-facts.md, section 7).
Appends take the library's `LOCK TABLE ... IN EXCLUSIVE MODE`, so positions are in
commit order and a reader tailing the log never skips an event committed later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from eventsourcing.utils import retry
from psycopg import Connection, Cursor
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Composed, Identifier, Literal
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ..ports import StoreError
from .recorder import CoreEventMapper, RecorderEventStore, ViewBehindError
from .snapshots import DEFAULT_SNAPSHOT_INTERVAL
from .tables import EVENTS_TABLE, SNAPSHOTS_TABLE, check_meta, create_tables, read_meta
from .upcasting import Upcasters

MIGRATE_LOCK = 0x776C6D67  # pg_advisory_lock key of `migrate` ("wlmg")
CONNECT_TIMEOUT_SECONDS = 5
TOPICS_KEPT = 1024  # quoted topic literals an events recorder keeps


class PostgresEventRecorder(PostgresApplicationRecorder):
    """The library's application recorder with expected-version checks, stream reads
    and `insert_events_after`, the append on a view that is current at its commit.

    An append is one explicit transaction of two round trips, each one simple-protocol
    query: `BEGIN`, the library's table lock (`lock_table_statements`), the versions of
    the streams to check and (`insert_events_after`) the events committed beyond the
    caller's position; then `NOTIFY`, the insert with RETURNING, `COMMIT`. Any error
    rolls the whole transaction back (nothing is committed on a failed check).

    Why it replaces the library's `insert_events` instead of extending its documented
    `_insert_events` hook: that hook runs before the table lock (a version check there
    could pass and then be overtaken by another writer), the lock is not taken at all
    for a check-only append (no events), the hook is skipped with DB functions, and the
    library's method is wrapped in a retry of OperationalError that could resend an
    append whose COMMIT outcome is unknown (the service reads back instead). It is built
    from the library's public statements and names (`lock_table_statements`,
    `channel_name`, `events_table_name`); no private method of the recorder is used.

    Statements are rendered to bytes once (`_Rendered`) and values are written into
    them as literals: integers and uuids by their digits, topics quoted by psycopg's
    `Literal`, states as hex through `decode(..., 'hex')`. psycopg's per-call statement
    composition, parameter dumping and pipeline bookkeeping cost the host more CPU than
    the database spent on the whole transaction (and the extended protocol takes one
    round trip per statement batch as well).
    """

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, events_table_name=EVENTS_TABLE)
        table = (Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self.max_version_statement = SQL(
            "SELECT originator_id, MAX(originator_version) AS v FROM {}.{} WHERE originator_id IN "
        ).format(*table)
        self.select_stream_statement = SQL(
            "SELECT notification_id, originator_version, topic, state FROM {}.{} "
            "WHERE originator_id = %s AND originator_version > %s"
        ).format(*table)
        self.notify_statement = SQL("NOTIFY {}").format(Identifier(self.channel_name))
        self.select_after_statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {}.{} WHERE notification_id > "
        ).format(*table)
        self.insert_values_statement = SQL(
            "INSERT INTO {}.{} (originator_id, originator_version, topic, state) VALUES "
        ).format(*table)
        self._rendered: _Rendered | None = None

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert `stored_events` after checking `check_versions` (streams without events)
        under the table lock; IntegrityError (nothing inserted) when a version differs."""
        check: dict[UUID, int] = kwargs.get("check_versions") or {}
        return self._append(None, 0, check, lambda _new: stored_events)

    def insert_events_after(
        self,
        after: int,
        limit: int,
        build: Callable[[list[Notification]], Sequence[StoredEvent]],
    ) -> list[int]:
        """Insert what `build` returns when handed the events committed beyond position
        `after`, all in one transaction that holds the table lock from before that read
        until the commit: nothing can commit in between, so `build` decides on the log
        as it is at the commit. Raises ViewBehindError (nothing inserted) when `limit`
        or more events are new; whatever `build` raises rolls back and propagates."""
        return self._append(after, limit, {}, build)

    def _append(
        self,
        after: int | None,
        limit: int,
        check: Mapping[UUID, int],
        build: Callable[[list[Notification]], Sequence[StoredEvent]],
    ) -> list[int]:
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            sql = self._statements(conn)
            try:
                first = [sql.begin]
                if check:
                    first.append(sql.max_versions(check))
                if after is not None:
                    first.append(sql.select_after(after, limit))
                curs.execute(b"; ".join(first), prepare=False)
                found = _result_rows(curs)  # BEGIN, SET, LOCK: no rows; then the selects
                if check:
                    current = dict(found.pop(0))  # originator_id -> its highest version
                    for originator_id, expected in check.items():
                        version = current.get(originator_id) or 0
                        if version != expected:
                            msg = f"{originator_id} is at version {version}, not {expected}"
                            raise IntegrityError(msg)  # nothing inserted; rolls back
                new = [_notification(row) for row in found.pop(0)] if after is not None else []
                if after is not None and len(new) >= limit:
                    raise ViewBehindError(f"{len(new)} or more events beyond position {after}")
                stored_events = build(new)
                if not stored_events:
                    curs.execute(b"COMMIT", prepare=False)
                    return []
                curs.execute(sql.insert(stored_events, conn), prepare=False)
                return [notification_id for (notification_id,) in _result_rows(curs)[0]]
            except BaseException:
                _roll_back(conn)
                raise

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_after(self, after: int, limit: int) -> list[Notification]:
        """The notifications beyond position `after`, at most `limit` (the catch-up read;
        `select_notifications(after, limit, inclusive_of_start=False)`, rendered once)."""
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(self._statements(conn).select_after(after, limit), prepare=False)
            return [_notification(row) for row in curs.fetchall()]

    def select_stream(
        self, originator_id: UUID, *, gt: int = 0, lte: int | None = None
    ) -> list[Notification]:
        statement: Composed = self.select_stream_statement
        params: list[Any] = [originator_id, gt]
        if lte is not None:
            statement += SQL(" AND originator_version <= %s")
            params.append(lte)
        statement += SQL(" ORDER BY originator_version")
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return [
                Notification(
                    id=row["notification_id"],
                    originator_id=originator_id,
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def _statements(self, conn: Connection[Any]) -> _Rendered:
        if self._rendered is None:  # identifiers are quoted by the connection's rules
            self._rendered = _Rendered(
                begin=b"; ".join(
                    [b"BEGIN", *(_render(s, conn) for s in self.lock_table_statements)]
                ),
                max_versions_head=self.max_version_statement.as_bytes(conn),
                select_after_head=self.select_after_statement.as_bytes(conn),
                notify=self.notify_statement.as_bytes(conn),
                insert_head=self.insert_values_statement.as_bytes(conn),
            )
        return self._rendered


class _Rendered:
    """The recorder's statements as bytes, and the literals written into them."""

    def __init__(
        self,
        *,
        begin: bytes,
        max_versions_head: bytes,
        select_after_head: bytes,
        notify: bytes,
        insert_head: bytes,
    ) -> None:
        self.begin = begin
        self.max_versions_head = max_versions_head
        self.select_after_head = select_after_head
        self.insert_head = b"%s; %s" % (notify, insert_head)
        self._topics: dict[str, bytes] = {}

    def select_after(self, after: int, limit: int) -> bytes:
        return b"%s%d ORDER BY notification_id LIMIT %d" % (
            self.select_after_head,
            int(after),
            int(limit),
        )

    def max_versions(self, check: Mapping[UUID, int]) -> bytes:
        ids = b",".join(_uuid(originator_id) for originator_id in check)
        return b"%s(%s) GROUP BY originator_id" % (self.max_versions_head, ids)

    def insert(self, stored_events: Sequence[StoredEvent], conn: Connection[Any]) -> bytes:
        """NOTIFY, the insert of every event with RETURNING, and COMMIT: one query."""
        rows = b",".join(
            b"(%s,%d,%s,decode('%s','hex'))"
            % (
                _uuid(event.originator_id),
                int(event.originator_version),
                self._topic(event.topic, conn),
                bytes(event.state).hex().encode(),
            )
            for event in stored_events
        )
        return b"%s%s RETURNING notification_id; COMMIT" % (self.insert_head, rows)

    def _topic(self, topic: str, conn: Connection[Any]) -> bytes:
        literal = self._topics.get(topic)
        if literal is None:  # quoted and escaped by psycopg, by the connection's rules
            literal = Literal(str(topic)).as_bytes(conn)
            if len(self._topics) < TOPICS_KEPT:  # one per event type in practice
                self._topics[topic] = literal
        return literal


def _render(statement: object, conn: Connection[Any]) -> bytes:
    if isinstance(statement, Composable):
        return statement.as_bytes(conn)
    if isinstance(statement, str):
        return statement.encode()
    if isinstance(statement, bytes):
        return statement
    raise TypeError(f"cannot render {statement!r} as a simple-protocol statement")


def _uuid(originator_id: UUID | str) -> bytes:
    """A stream id's literal (hex digits and dashes only: parsed as a UUID first)."""
    value = originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
    return b"'%s'" % str(value).encode()


def _result_rows(curs: Cursor[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """The rows of every result of a multi-statement query that returns rows, in order."""
    found: list[list[tuple[Any, ...]]] = []
    while True:
        result = curs.pgresult
        if result is not None and result.status == ExecStatus.TUPLES_OK:
            found.append(curs.fetchall())
        if not curs.nextset():
            return found


def _notification(row: tuple[Any, ...]) -> Notification:
    """A row of (notification_id, originator_id, originator_version, topic, state)."""
    notification_id, originator_id, originator_version, topic, state = row
    return Notification(
        id=notification_id,
        originator_id=originator_id,
        originator_version=originator_version,
        topic=topic,
        state=bytes(state),
    )


def _roll_back(conn: Connection[Any]) -> None:
    """End a transaction a failed append left open (the pool would warn, then roll back)."""
    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with contextlib.suppress(psycopg.Error):
            conn.execute(b"ROLLBACK", prepare=False)


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise StoreError(f"malformed PostgreSQL URL {url!r}: {error}") from error
    if parsed.get_backend_name() != "postgresql":
        raise StoreError(f"not a PostgreSQL URL: {url!r}")
    if not parsed.database:
        raise StoreError(f"PostgreSQL URL {url!r} names no database (postgresql://HOST/DBNAME)")
    return parsed.set(drivername="postgresql+psycopg")


def _engine(parsed: URL) -> Engine:
    return create_engine(
        parsed,
        pool_size=2,
        max_overflow=8,
        pool_pre_ping=True,  # a connection dropped by a failover or PgBouncer is replaced
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


def _datastore(parsed: URL) -> PostgresDatastore:
    return PostgresDatastore(
        dbname=parsed.database or "",
        host=parsed.host or "localhost",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password or "",
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        idle_in_transaction_session_timeout=10,
        pool_size=2,
        max_overflow=8,
        # No pre-ping here: psycopg_pool's check sleeps >= 1 s (with backoff) after each
        # dead connection it finds (3 rounds of pg_terminate_backend: 18.1 s with it, 2.9 s
        # without). A dead connection fails its first use instead, the pool discards it,
        # and the service retries reads and resolves appends by reading back.
        pre_ping=False,
    )


def _describe(parsed: URL) -> str:
    return parsed.render_as_string(hide_password=True).replace("+psycopg", "")


def migrate_postgres(url: str) -> None:
    """Create the schema (idempotent; concurrent migrations wait for each other)."""
    parsed = parse_url(url)
    engine = _engine(parsed)
    try:
        with engine.connect() as lock:
            lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATE_LOCK})
            lock.commit()
            try:
                with engine.begin() as conn:
                    create_tables(conn)
                datastore = _datastore(parsed)
                try:
                    PostgresEventRecorder(datastore).create_table()
                    PostgresAggregateRecorder(
                        datastore, events_table_name=SNAPSHOTS_TABLE
                    ).create_table()
                finally:
                    datastore.close()
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATE_LOCK})
                lock.commit()
    except (SQLAlchemyError, PersistenceError) as error:
        raise StoreError(f"cannot migrate {_describe(parsed)}: {_first_line(error)}") from error
    finally:
        engine.dispose()


def open_postgres_store(
    url: str,
    *,
    create: bool = False,
    snapshot_interval: int = DEFAULT_SNAPSHOT_INTERVAL,
    upcasters: Upcasters | None = None,
) -> RecorderEventStore:
    """Open a migrated database (with `create`, migrate first)."""
    parsed = parse_url(url)
    if create:
        migrate_postgres(url)
    where = _describe(parsed)
    engine = _engine(parsed)
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT to_regclass('workerledger_meta')")).scalar()
            if found is None:
                raise StoreError(
                    f"{where} has no workerledger schema: run `workerledger migrate` first"
                )
            check_meta(read_meta(conn), where)
    except SQLAlchemyError as error:
        engine.dispose()
        raise StoreError(f"cannot connect to {where}: {_first_line(error)}") from error
    except StoreError:
        engine.dispose()
        raise
    datastore = _datastore(parsed)
    try:
        events = PostgresEventRecorder(datastore)
        snapshots = PostgresAggregateRecorder(datastore, events_table_name=SNAPSHOTS_TABLE)
    except PersistenceError as error:
        datastore.close()
        engine.dispose()
        raise StoreError(f"cannot open {where}: {error}") from error
    return RecorderEventStore(
        url=where,
        events=events,
        snapshots=snapshots,
        engine=engine,
        mapper=CoreEventMapper(upcasters),
        snapshot_interval=snapshot_interval,
        on_close=datastore.close,
    )


def _first_line(error: Exception) -> str:
    message = str(getattr(error, "orig", None) or error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__
