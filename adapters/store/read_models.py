"""The durable form of the Projection: SQL tables of its entities + a position.

The in-memory `Projection` stays the query engine of every host. These tables are
its checkpoint, in the same database as the log:

- `workerledger_rm_workers/jobs/tasks/providers`: one row per entity (its state as JSON, its
  stream version, its order: worker registration index, task submission position)
  and `workerledger_rm_tracking`: the log position the rows reflect.
- Invariant: the rows equal the fold of the log up to the tracking position
  (workers' `last_heartbeat` aside: it lives in the liveness table).
- `checkpoint(view)` writes the entities the view changed since its last checkpoint
  and moves the tracking position, in one transaction that starts with a
  compare-and-set (`position < view.position`). A host that is behind the table
  writes nothing, so several hosts can share the tables and a checkpoint is idempotent.
  Hosts call it after commits or catch-ups, as often as they like (every few hundred
  events, on a timer, at shutdown); between checkpoints the tables are merely older.
- `load()` starts a host quickly: rows -> a view at the tracking position (built by
  `Projection.restore`, which owns the indexes), then the LedgerService catches up
  with the log from there (`load_view` + `finish_restore`, or `open_service`).
- `rebuild()` folds the whole log from scratch and rewrites the tables;
  `check()` folds the log up to the tables' position and lists every difference.

The cache rule: the rows are derived, the log is the truth, so start-up never depends
on a row. If any row cannot be read (bad JSON, a state that does not validate, a
wrong column), `load_view` ignores the tables, `finish_restore` folds the whole
log, says so once in the log (WARNING, with counts) and rewrites the tables from
that fold. `rebuild` (and that repair) checks that every row reads back before
writing anything, so it never writes back what it cannot read. Rows are written by
`json_codec`, which has no depth limit, so any entity the log folds into can be stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from workerledger.core import JobState, ProviderState, TaskState, WorkerState

from ..ports import EventStore, StoredEvent, StoreError
from ..projection import Projection
from ..service import LedgerService
from .read_model_rows import Rows, differences, read_row, rows_of, verify_rows
from .tables import READ_MODEL, rm_jobs, rm_providers, rm_tasks, rm_tracking, rm_workers

Progress = Callable[[int, int], None]  # (position reached, head of the log)
MAX_DIFFERENCES = 50
log = logging.getLogger(__name__)


class ReadModelCorruptError(StoreError):
    """Rows of the read-model tables cannot be read; `failures` names each one."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        super().__init__(
            f"{len(failures)} read-model row(s) cannot be read (first: {failures[0]}); "
            "run `workerledger rebuild`"
        )


class TrackedProjection(Projection):
    """A Projection that remembers which streams changed since its last checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.dirty: set[str] = set()

    def apply(self, stored: StoredEvent) -> None:
        super().apply(stored)
        self.dirty.add(stored.stream)


def fold_log(
    store: EventStore,
    view: Projection | None = None,
    *,
    upto: int | None = None,
    batch: int = 5000,
    progress: Progress | None = None,
) -> Projection:
    """Fold the log (from the view's position) into `view`, up to position `upto`."""
    view = view if view is not None else Projection()
    head_of = getattr(store, "head", None)
    head = upto if upto is not None else (head_of() if callable(head_of) else 0)
    while True:
        records = store.read(view.position, batch)
        for record in records:
            if upto is not None and record.position > upto:
                return view
            view.apply(record)
        if progress is not None and records:
            progress(view.position, max(head, view.position))
        if len(records) < batch:
            return view


class ReadModelTables:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    @classmethod
    def for_store(cls, store: EventStore) -> ReadModelTables:
        engine = getattr(store, "engine", None)
        if not isinstance(engine, Engine):
            raise StoreError("read-model tables need a SQLite or PostgreSQL store")
        return cls(engine)

    # --- reading --------------------------------------------------------------------

    def position(self) -> int:
        with self.engine.connect() as conn:
            return _tracking(conn)

    def load(self) -> TrackedProjection:
        """A view holding the tables' entities, at the tables' tracking position.

        Reads every row; raises ReadModelCorruptError naming each row that cannot be
        decoded (any error, RecursionError included) or cannot be read at all.
        """
        failures: list[str] = []
        try:
            view = self._load(failures)
        except StoreError:
            raise
        except (SQLAlchemyError, RecursionError, ValueError, TypeError) as error:
            raise ReadModelCorruptError([f"tables: {type(error).__name__}: {error}"]) from error
        if failures:
            raise ReadModelCorruptError(failures)
        return view

    def _load(self, failures: list[str]) -> TrackedProjection:
        with self._consistent_read() as conn:
            position = _tracking(conn)
            workers = [
                (worker, row.version)
                for row in conn.execute(select(rm_workers).order_by(rm_workers.c.seq))
                if isinstance(worker := read_row(failures, "worker", row), WorkerState)
            ]
            jobs = [
                (job, row.version)
                for row in conn.execute(select(rm_jobs))
                if isinstance(job := read_row(failures, "job", row), JobState)
            ]
            tasks = [
                (task, row.version, row.seq)
                for row in conn.execute(select(rm_tasks).order_by(rm_tasks.c.seq))
                if isinstance(task := read_row(failures, "task", row), TaskState)
            ]
            providers = [
                (provider, row.version)
                for row in conn.execute(select(rm_providers))
                if isinstance(provider := read_row(failures, "provider", row), ProviderState)
            ]
        return TrackedProjection.restore(
            position=position, workers=workers, jobs=jobs, tasks=tasks, providers=providers
        )

    # --- writing --------------------------------------------------------------------

    def checkpoint(self, view: Projection) -> bool:
        """Write what `view` changed; False if the tables were already as far."""
        streams = view.dirty if isinstance(view, TrackedProjection) else None
        rows = rows_of(view, streams)
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(rm_tracking)
                .where(rm_tracking.c.name == READ_MODEL, rm_tracking.c.position < view.position)
                .values(position=view.position)
            ).rowcount
            if moved:
                self._upsert(conn, rows)
        if isinstance(view, TrackedProjection):
            view.dirty.clear()
        return bool(moved)

    def rebuild(self, store: EventStore, progress: Progress | None = None) -> Projection:
        """Fold the whole log from scratch and replace every row with the result."""
        view = fold_log(store, TrackedProjection(), progress=progress)
        counter, beats = store.read_liveness(0)
        for worker_id, at in beats.items():
            view.apply_heartbeat(worker_id, at)
        view.liveness_counter = counter
        self.replace(store, view, progress)
        return view

    def replace(
        self, store: EventStore, view: Projection, progress: Progress | None = None
    ) -> None:
        """Replace every row with `view`'s entities (a complete fold of the log).

        Every row must read back first (UnstorableRowError otherwise, nothing written).
        If a host checkpointed further meanwhile, `view` catches up and the write is
        retried, so the tables never move backwards.
        """
        while True:
            rows = rows_of(view, None)
            verify_rows(view, rows)
            try:
                with self.engine.begin() as conn:
                    moved = conn.execute(
                        update(rm_tracking)
                        .where(
                            rm_tracking.c.name == READ_MODEL,
                            rm_tracking.c.position <= view.position,
                        )
                        .values(position=view.position)
                    ).rowcount
                    if moved:
                        for table in (rm_workers, rm_jobs, rm_tasks, rm_providers):
                            conn.execute(delete(table))
                        self._upsert(conn, rows)
            except SQLAlchemyError as error:
                raise StoreError(f"cannot write the read-model tables: {error}") from error
            if moved:
                if isinstance(view, TrackedProjection):
                    view.dirty.clear()
                return
            fold_log(store, view, progress=progress)  # a host checkpointed further: catch up

    def _upsert(self, conn: Connection, all_rows: Rows) -> None:
        workers, jobs, tasks, providers = all_rows
        for table, rows, key in (
            (rm_workers, workers, "id"),
            (rm_jobs, jobs, "full_name"),
            (rm_tasks, tasks, "id"),
            (rm_providers, providers, "full_name"),
        ):
            if not rows:
                continue
            stmt = self._insert(table)
            changes = {c.name: stmt.excluded[c.name] for c in table.columns if c.name != key}
            conn.execute(stmt.on_conflict_do_update(index_elements=[key], set_=changes), rows)

    # --- checking -------------------------------------------------------------------

    def check(self, store: EventStore, progress: Progress | None = None) -> list[str]:
        """Differences between the tables and a fresh fold of the log up to their position."""
        try:
            stored = self.load()
        except ReadModelCorruptError as error:
            return [f"unreadable row: {failure}" for failure in error.failures]
        rebuilt = fold_log(store, upto=stored.position, progress=progress)
        if rebuilt.position < stored.position:
            return [
                f"tables are at position {stored.position} but the log ends at {rebuilt.position}"
            ]
        return differences(stored, rebuilt)

    def _consistent_read(self) -> _ReadTransaction:
        return _ReadTransaction(self.engine)


class _ReadTransaction:
    """One snapshot for several SELECTs (REPEATABLE READ on PostgreSQL, BEGIN on SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.conn = engine.connect()
        if engine.dialect.name == "postgresql":
            self.conn = self.conn.execution_options(isolation_level="REPEATABLE READ")

    def __enter__(self) -> Connection:
        self.conn.begin()
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.rollback()
        self.conn.close()


def _tracking(conn: Connection) -> int:
    position = conn.execute(
        select(rm_tracking.c.position).where(rm_tracking.c.name == READ_MODEL)
    ).scalar()
    if position is None:
        raise StoreError("the read-model tracking row is missing: run `workerledger migrate`")
    return int(position)


def tables_of(store: EventStore) -> ReadModelTables | None:
    """The store's read-model tables, or None for a store without them (memory://)."""
    try:
        return ReadModelTables.for_store(store)
    except StoreError:
        return None


class RestoredView(NamedTuple):
    """The view a host starts from, and why the tables could not give it (None: they did)."""

    view: Projection
    unreadable: ReadModelCorruptError | None


def load_view(store: EventStore) -> RestoredView:
    """The view to build a LedgerService on: the read-model tables' entities at their
    position, or an empty view when the tables cannot be read (the cache rule) or the
    store has none (memory://). Nothing beyond the tables is folded yet: the service
    does that in `finish_restore`, on the thread that will run it.
    """
    tables = tables_of(store)
    if tables is None:
        return RestoredView(Projection(), None)
    try:
        return RestoredView(tables.load(), None)
    except ReadModelCorruptError as error:
        return RestoredView(TrackedProjection(), error)


def finish_restore(service: LedgerService, restored: RestoredView) -> int:
    """Fold the log beyond the restored view; returns the number of events folded.

    When the tables were unreadable, the view started empty and this folded the whole
    log: a WARNING says so once with counts, and the tables are rewritten from that fold
    (a failure to rewrite them is logged too; the host does not need them).
    """
    folded = service.catch_up()
    error, tables = restored.unreadable, tables_of(service.store)
    if error is None or tables is None:
        return folded
    log.warning(
        "read-model tables unreadable (%d rows failed: first error %s); folded the log "
        "from the start instead (%d events)",
        len(error.failures), error.failures[0], folded,
    )  # fmt: skip
    try:
        tables.replace(service.store, service.view)
    except StoreError as failure:
        log.warning("read-model tables not rewritten: %s", failure)
    return folded


def open_service(store: EventStore, **service_options: Any) -> LedgerService:
    """A LedgerService whose view starts from the read-model tables, then catches up.

    Falls back to folding the whole log when the store has no tables (memory://).
    """
    restored = load_view(store)
    service = LedgerService(store, view=restored.view, **service_options)
    finish_restore(service, restored)
    return service
