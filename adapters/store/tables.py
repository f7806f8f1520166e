"""SQLAlchemy tables that live beside eventsourcing's event and snapshot tables.

The event log itself belongs to eventsourcing's recorders (`workerledger_events`,
`workerledger_snapshots`). The tables here are the store's own:

- `workerledger_meta`: marks a database as ours and records its layout version, so a
  foreign or newer database is refused instead of being written to.
- `workerledger_liveness` + `workerledger_liveness_counter`: the latest heartbeat per
  worker, never in the log. Each write bumps the single counter row in the same
  transaction (the row lock serializes writers), so "beats with counter > N" never
  skips a beat that commits later.
- `workerledger_rm_*`: the durable read model (see read_models.py).

DDL is issued with IF NOT EXISTS so a SQLite file may be created on open by several
processes; PostgreSQL hosts leave creation to `workerledger migrate`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from ..ports import StoreError

APP_NAME = "workerledger"
LAYOUT_VERSION = "1"
EVENTS_TABLE = "workerledger_events"
SNAPSHOTS_TABLE = "workerledger_snapshots"

metadata = MetaData()

meta = Table(
    "workerledger_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

liveness = Table(
    "workerledger_liveness",
    metadata,
    Column("worker_id", String(255), primary_key=True),
    Column("at_us", BigInteger, nullable=False),  # UTC microseconds since the epoch
    Column("counter", BigInteger, nullable=False, index=True),
)

liveness_counter = Table(
    "workerledger_liveness_counter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("value", BigInteger, nullable=False),
)

rm_tracking = Table(
    "workerledger_rm_tracking",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

rm_workers = Table(
    "workerledger_rm_workers",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("seq", BigInteger, nullable=False),  # registration order
    Column("version", Integer, nullable=False),  # stream version
    Column("user", String(255), nullable=False),
    Column("status", String(32), nullable=False, index=True),
    Column("state", Text, nullable=False),  # WorkerState as JSON
)

rm_jobs = Table(
    "workerledger_rm_jobs",
    metadata,
    Column("full_name", String(1024), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("room_id", String(255), nullable=False, index=True),
    Column("state", Text, nullable=False),  # JobState as JSON
)

rm_tasks = Table(
    "workerledger_rm_tasks",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("seq", BigInteger, nullable=False, index=True),  # log position of submission
    Column("version", Integer, nullable=False),
    Column("job_name", String(1024), nullable=False, index=True),
    Column("status", String(32), nullable=False, index=True),
    Column("state", Text, nullable=False),  # TaskState as JSON
)

rm_providers = Table(
    "workerledger_rm_providers",
    metadata,
    Column("full_name", String(1024), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("room_id", String(255), nullable=False, index=True),
    Column("state", Text, nullable=False),  # ProviderState as JSON (removed ones too)
)

READ_MODEL = "main"  # the tracking row of the read model


def create_tables(conn: Connection) -> None:
    """Create every table (idempotent) and seed the single-row tables."""
    for table in metadata.sorted_tables:
        conn.execute(CreateTable(table, if_not_exists=True))
        for index in table.indexes:
            conn.execute(CreateIndex(index, if_not_exists=True))
    seeds = (
        (meta, {"key": "app", "value": APP_NAME}),
        (meta, {"key": "layout", "value": LAYOUT_VERSION}),
        (liveness_counter, {"id": 1, "value": 0}),
        (rm_tracking, {"name": READ_MODEL, "position": 0}),
    )
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    for table, row in seeds:
        conn.execute(insert(table).values(**row).on_conflict_do_nothing())


def read_meta(conn: Connection) -> dict[str, str]:
    return {key: value for key, value in conn.execute(select(meta.c.key, meta.c.value))}


def check_meta(values: dict[str, str], where: str) -> None:
    if values.get("app") != APP_NAME:
        raise StoreError(f"{where} is not a workerledger database (app={values.get('app')!r})")
    if values.get("layout") != LAYOUT_VERSION:
        raise StoreError(
            f"{where} has storage layout {values.get('layout')!r}; this build reads "
            f"layout {LAYOUT_VERSION}"
        )
