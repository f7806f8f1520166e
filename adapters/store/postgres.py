"""PostgreSQL backend for several hosts: eventsourcing's PostgreSQL recorders plus our tables.

The schema is created once by `migrate` (`workerledger migrate`), serialized by an
advisory lock; hosts open the store with table creation off, which avoids the boot
race of the library's `CREATE OR REPLACE FUNCTION` (eventsourcing-facts.md, section 7).
Appends take the library's `LOCK TABLE ... IN EXCLUSIVE MODE`, so positions are in
commit order and a reader tailing the log never skips an event committed later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification, PersistenceError, StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from psycopg.sql import SQL, Composed, Identifier
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ..ports import StoreError
from .recorder import CoreEventMapper, RecorderEventStore
from .snapshots import DEFAULT_SNAPSHOT_INTERVAL
from .tables import EVENTS_TABLE, SNAPSHOTS_TABLE, check_meta, create_tables, read_meta
from .upcasting import Upcasters

MIGRATE_LOCK = 0x776C6D67  # pg_advisory_lock key of `migrate` ("wlmg")
CONNECT_TIMEOUT_SECONDS = 5


class PostgresEventRecorder(PostgresApplicationRecorder):
    """The library's application recorder with expected-version checks and stream reads.

    `insert_events` is one explicit transaction: take the library's table lock,
    check the versions of streams named without events, notify, insert with RETURNING.
    Any error rolls the whole transaction back (nothing is committed on a failed check).

    Why it replaces the library's `insert_events` instead of extending its documented
    `_insert_events` hook: that hook runs before the table lock (a version check there
    could pass and then be overtaken by another writer), the lock is not taken at all
    for a check-only append (no events), the hook is skipped with DB functions, and the
    library's method is wrapped in a retry of OperationalError that could resend an
    append whose COMMIT outcome is unknown (the service reads back instead). It is built
    only from the library's public statements (`lock_table_statements`,
    `insert_events_statement` with RETURNING, `channel_name`) and
    `construct_pg_stored_event`, so no private method of the recorder is used.
    """

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, events_table_name=EVENTS_TABLE)
        table = (Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self.max_version_statement = SQL(
            "SELECT MAX(originator_version) AS v FROM {}.{} WHERE originator_id = %s"
        ).format(*table)
        self.select_stream_statement = SQL(
            "SELECT notification_id, originator_version, topic, state FROM {}.{} "
            "WHERE originator_id = %s AND originator_version > %s"
        ).format(*table)
        self.notify_statement = SQL("NOTIFY {}").format(Identifier(self.channel_name))

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        check: dict[UUID, int] = kwargs.get("check_versions") or {}
        error: Exception | None = None
        ids: list[int] = []
        with self.datastore.get_connection() as conn:
            with conn.pipeline() as pipeline, conn.transaction(), conn.cursor() as curs:
                for lock_statement in self.lock_table_statements:  # lock_timeout, EXCLUSIVE
                    curs.execute(lock_statement, prepare=True)
                for originator_id, expected in check.items():
                    curs.execute(self.max_version_statement, (originator_id,))
                    row = curs.fetchone()  # fetching syncs the pipeline: the lock is held
                    current = (row or {}).get("v") or 0
                    if current != expected:
                        msg = f"{originator_id} is at version {current}, not {expected}"
                        raise IntegrityError(msg)  # nothing inserted yet; rolls back
                if stored_events:
                    curs.execute(self.notify_statement)
                    rows = [
                        self.construct_pg_stored_event(
                            e.originator_id, e.originator_version, e.topic, e.state
                        )
                        for e in stored_events
                    ]
                    curs.execute(query=self.insert_events_statement, params=(rows,))
                    try:  # sync here so a duplicate version surfaces before COMMIT
                        pipeline.sync()
                        ids = [row["notification_id"] for row in curs.fetchall()]
                    except Exception as e:  # re-raised after the pipeline is closed
                        error = e
            if error is not None:
                raise error
        return ids

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
