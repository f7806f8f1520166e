"""The durable form of the Projection: SQL tables of workers, jobs and tasks + a position.

The in-memory `Projection` stays the query engine of every host. These tables are
its checkpoint, in the same database as the log:

- `workerledger_rm_workers/jobs/tasks`: one row per entity (its state as JSON, its
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
- `load()` starts a host quickly: rows -> a view at the tracking position, then the
  LedgerService catches up with the log from there (`open_service`).
- `rebuild()` folds the whole log from scratch and rewrites the tables;
  `check()` folds the log up to the tables' position and lists every difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from workerledger.core import JobState, TaskState, TaskStatus, WorkerState

from .ports import EventStore, StoredEvent, StoreError
from .projection import Projection
from .service import LedgerService
from .store_tables import READ_MODEL, rm_jobs, rm_tasks, rm_tracking, rm_workers

Progress = Callable[[int, int], None]  # (position reached, head of the log)
MAX_DIFFERENCES = 50


class ReadModelCorruptError(StoreError):
    """A row of the read-model tables cannot be parsed."""


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

        Raises ReadModelCorruptError for a row that does not parse (`rebuild` fixes it).
        """
        try:
            return self._load()
        except ValidationError as error:
            raise ReadModelCorruptError(
                f"a read-model row does not parse ({error.title}: {error.errors()[0]['msg']}, "
                f"{error.errors()[0]['loc']}); run `workerledger rebuild`"
            ) from error

    def _load(self) -> TrackedProjection:
        with self._consistent_read() as conn:
            view = TrackedProjection()
            view.position = _tracking(conn)
            for row in conn.execute(select(rm_workers).order_by(rm_workers.c.seq)):
                worker = WorkerState.model_validate_json(row.state)
                view.workers[worker.id] = worker
                view.worker_order.append(worker.id)
                view.versions[f"worker:{worker.id}"] = row.version
            for row in conn.execute(select(rm_jobs)):
                job = JobState.model_validate_json(row.state)
                view.jobs[job.full_name] = job
                view.versions[f"job:{job.full_name}"] = row.version
            for row in conn.execute(select(rm_tasks).order_by(rm_tasks.c.seq)):
                task = TaskState.model_validate_json(row.state)
                view.tasks[task.id] = task
                view.versions[f"task:{task.id}"] = row.version
                view.task_seq[task.id] = row.seq
                view.seq_task[row.seq] = task.id
                view.room_tasks.setdefault(task.room_id, []).append(task.id)
                queue = view.pending.setdefault(task.job_name, [])
                if task.status is TaskStatus.PENDING:
                    queue.append(row.seq)
        return view

    # --- writing --------------------------------------------------------------------

    def checkpoint(self, view: Projection) -> bool:
        """Write what `view` changed; False if the tables were already as far."""
        streams = view.dirty if isinstance(view, TrackedProjection) else None
        workers, jobs, tasks = _rows(view, streams)
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(rm_tracking)
                .where(rm_tracking.c.name == READ_MODEL, rm_tracking.c.position < view.position)
                .values(position=view.position)
            ).rowcount
            if moved:
                self._upsert(conn, workers, jobs, tasks)
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
        while True:
            with self.engine.begin() as conn:
                moved = conn.execute(
                    update(rm_tracking)
                    .where(
                        rm_tracking.c.name == READ_MODEL, rm_tracking.c.position <= view.position
                    )
                    .values(position=view.position)
                ).rowcount
                if moved:
                    for table in (rm_workers, rm_jobs, rm_tasks):
                        conn.execute(delete(table))
                    self._upsert(conn, *_rows(view, None))
                    return view
            fold_log(store, view, progress=progress)  # a host checkpointed further: catch up

    def _upsert(
        self,
        conn: Connection,
        workers: list[dict[str, Any]],
        jobs: list[dict[str, Any]],
        tasks: list[dict[str, Any]],
    ) -> None:
        for table, rows, key in (
            (rm_workers, workers, "id"),
            (rm_jobs, jobs, "full_name"),
            (rm_tasks, tasks, "id"),
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
            return [str(error)]
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


def _rows(
    view: Projection, streams: Iterable[str] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    if streams is None:
        streams = [
            *(f"worker:{k}" for k in view.workers),
            *(f"job:{k}" for k in view.jobs),
            *(f"task:{k}" for k in view.tasks),
        ]
    order = {worker_id: i for i, worker_id in enumerate(view.worker_order)}
    workers, jobs, tasks = [], [], []
    for stream in streams:
        kind, _, key = stream.partition(":")
        version = view.version(stream)
        if kind == "worker" and key in view.workers:
            w = view.workers[key]
            workers.append(
                {"id": key, "seq": order[key], "version": version, "user": w.user,
                 "status": w.status.value, "state": _json(w)}
            )  # fmt: skip
        elif kind == "job" and key in view.jobs:
            j = view.jobs[key]
            jobs.append(
                {"full_name": key, "version": version, "room_id": j.room_id, "state": _json(j)}
            )
        elif kind == "task" and key in view.tasks:
            t = view.tasks[key]
            tasks.append(
                {"id": key, "seq": view.task_seq[key], "version": version,
                 "job_name": t.job_name, "status": t.status.value, "state": _json(t)}
            )  # fmt: skip
    return workers, jobs, tasks


def _json(model: BaseModel) -> str:
    return model.model_dump_json(by_alias=True)


def differences(stored: Projection, rebuilt: Projection) -> list[str]:
    """Readable differences between two views (workers' last_heartbeat ignored)."""
    out: list[str] = []
    for kind, mine, theirs in (
        ("worker", stored.workers, rebuilt.workers),
        ("job", stored.jobs, rebuilt.jobs),
        ("task", stored.tasks, rebuilt.tasks),
    ):
        for key in sorted(mine.keys() | theirs.keys()):
            a, b = mine.get(key), theirs.get(key)
            stream = f"{kind}:{key}"
            if a is None:
                out.append(f"{stream}: missing from the tables")
            elif b is None:
                out.append(f"{stream}: in the tables but not in the log")
            else:
                out += [f"{stream}: {d}" for d in _field_differences(a, b)]
                if stored.version(stream) != rebuilt.version(stream):
                    out.append(
                        f"{stream}: stored version {stored.version(stream)}, "
                        f"rebuilt {rebuilt.version(stream)}"
                    )
    for task_id in sorted(stored.task_seq.keys() & rebuilt.task_seq.keys()):
        if stored.task_seq[task_id] != rebuilt.task_seq[task_id]:
            out.append(f"task:{task_id}: stored queue position differs from the log")
    if [w for w in stored.worker_order if w in rebuilt.workers] != [
        w for w in rebuilt.worker_order if w in stored.workers
    ]:
        out.append("workers: registration order differs")
    return out


def _field_differences(a: BaseModel, b: BaseModel) -> list[str]:
    left, right = a.model_dump(), b.model_dump()  # python mode: frozensets compare as sets
    left.pop("last_heartbeat", None)
    right.pop("last_heartbeat", None)
    return [
        f"stored {name}={left.get(name)!r}, rebuilt {name}={right.get(name)!r}"
        for name in sorted(left.keys() | right.keys())
        if left.get(name) != right.get(name)
    ]


def tables_of(store: EventStore) -> ReadModelTables | None:
    """The store's read-model tables, or None for a store without them (memory://)."""
    try:
        return ReadModelTables.for_store(store)
    except StoreError:
        return None


def restore_view(service: LedgerService) -> int:
    """Start `service`'s view from the read-model tables (if any), then catch up.

    Returns the number of log events folded on top of the tables.
    """
    tables = tables_of(service.store)
    if tables is not None:
        service.view = tables.load()
    return service.catch_up()


def open_service(store: EventStore, **service_options: Any) -> LedgerService:
    """A LedgerService whose view starts from the read-model tables, then catches up.

    Falls back to folding the whole log when the store has no tables (memory://).
    """
    service = LedgerService(store, **service_options)
    restore_view(service)
    return service
