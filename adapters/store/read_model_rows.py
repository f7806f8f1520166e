"""Rows of the read-model tables: encoding, decoding, the read-back check, differences.

A row's `state` is the entity as JSON written by `json_codec` (no depth limit), so
every entity the log can fold into can be stored and read back; `rebuild` still
checks each row reads back before it writes anything (`verify_rows`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from workerledger.core import JobState, ProviderState, Stream, StreamKind, TaskState, WorkerState

from ..ports import StoreError
from ..projection import Projection
from .json_codec import FREE_JSON, dumps, model_json, validate_json

Row = dict[str, Any]
Rows = tuple[list[Row], list[Row], list[Row], list[Row]]  # workers, jobs, tasks, providers
Entity = WorkerState | JobState | TaskState | ProviderState
MODELS: dict[str, type[Entity]] = {
    "worker": WorkerState,
    "job": JobState,
    "task": TaskState,
    "provider": ProviderState,
}
NAMED = ("job", "provider")  # kinds keyed by full name, with a version and no seq


class UnstorableRowError(StoreError):
    """An entity's row would not read back; nothing was written."""


def encode_state(entity: BaseModel) -> str:
    return model_json(entity)


def decode_state(kind: str, text: str) -> Entity:
    """The entity of a row's `state` (raises on anything unusable)."""
    return validate_json(MODELS[kind], text)


def read_row(failures: list[str], kind: str, row: Any) -> Entity | None:
    """The entity of one table row, or None after noting in `failures` why it is unusable."""
    key = row.full_name if kind in NAMED else row.id
    try:
        numbers = (row.version,) if kind in NAMED else (row.version, row.seq)
        if not all(isinstance(n, int) for n in numbers):
            raise ValueError(f"version/seq {numbers!r} are not integers")
        entity = decode_state(kind, row.state)
        own = entity.full_name if isinstance(entity, JobState | ProviderState) else entity.id
        if own != key:
            raise ValueError("the state belongs to another entity")
    except Exception as error:
        lines = str(error).strip().splitlines()
        failures.append(f"{kind}:{key}: {type(error).__name__}: {lines[0][:300] if lines else ''}")
        return None
    return entity


def rows_of(view: Projection, streams: Iterable[str] | None) -> Rows:
    """The rows of the named streams' entities (all entities when `streams` is None)."""
    if streams is None:
        streams = [
            *(Stream.worker(k).text for k in view.workers),
            *(Stream.job(k).text for k in view.jobs),
            *(Stream.task(k).text for k in view.tasks),
            *(Stream.provider(k).text for k in view.providers),
        ]
    order = {worker_id: i for i, worker_id in enumerate(view.registration_order())}
    seq = view.submission_positions()
    workers: list[Row] = []
    jobs: list[Row] = []
    tasks: list[Row] = []
    providers: list[Row] = []
    for stream in streams:
        subject = Stream.parse(stream)
        kind, key = subject.kind, subject.key
        version = view.version(stream)
        if kind == "worker" and key in view.workers:
            w = view.workers[key]
            workers.append(
                {"id": key, "seq": order[key], "version": version, "user": w.user,
                 "status": w.status.value, "state": _encode(stream, w)}
            )  # fmt: skip
        elif kind == "job" and key in view.jobs:
            j = view.jobs[key]
            jobs.append(
                {"full_name": key, "version": version, "room_id": j.room_id,
                 "state": _encode(stream, j)}
            )  # fmt: skip
        elif kind == "task" and key in view.tasks:
            t = view.tasks[key]
            tasks.append(
                {"id": key, "seq": seq[key], "version": version,
                 "job_name": t.job_name, "status": t.status.value, "state": _encode(stream, t)}
            )  # fmt: skip
        elif kind == "provider" and key in view.providers:
            p = view.providers[key]
            providers.append(
                {"full_name": key, "version": version, "room_id": p.room_id,
                 "state": _encode(stream, p)}
            )  # fmt: skip
    return workers, jobs, tasks, providers


def _encode(stream: str, entity: BaseModel) -> str:
    try:
        return encode_state(entity)
    except Exception as error:
        raise UnstorableRowError(
            f"{stream} cannot be stored in the read-model tables ({type(error).__name__}: "
            f"{error}); hosts fold the log beyond the tables' position"
        ) from error


def verify_rows(view: Projection, rows: Rows) -> None:
    """Raise UnstorableRowError unless every row decodes to the view's entity."""
    for kind, entities, kind_rows, key in (
        ("worker", view.workers, rows[0], "id"),
        ("job", view.jobs, rows[1], "full_name"),
        ("task", view.tasks, rows[2], "id"),
        ("provider", view.providers, rows[3], "full_name"),
    ):
        for row in kind_rows:
            stream = Stream(StreamKind(kind), row[key]).text
            try:
                ok = same_state(decode_state(kind, row["state"]), entities[row[key]])
                reason = "it reads back different"
            except Exception as error:
                ok, reason = False, f"{type(error).__name__}: {error}"
            if not ok:
                raise UnstorableRowError(
                    f"{stream} cannot be stored in the read-model tables ({reason}); "
                    "nothing was written, hosts fold the log beyond the tables' position"
                )


def same_state(a: BaseModel, b: BaseModel) -> bool:
    """a == b, also for free-JSON fields nested deeper than Python's recursion limit."""
    try:
        return a == b
    except RecursionError:
        return type(a) is type(b) and all(
            _same(getattr(a, name), getattr(b, name), field.annotation == FREE_JSON)
            for name, field in type(a).model_fields.items()
        )


def _same(x: Any, y: Any, free_json: bool) -> bool:
    return dumps(x) == dumps(y) if free_json else bool(x == y)


def differences(stored: Projection, rebuilt: Projection) -> list[str]:
    """Readable differences between two views (workers' last_heartbeat ignored)."""
    out: list[str] = []
    for kind, mine, theirs in (
        ("worker", stored.workers, rebuilt.workers),
        ("job", stored.jobs, rebuilt.jobs),
        ("task", stored.tasks, rebuilt.tasks),
        ("provider", stored.providers, rebuilt.providers),
    ):
        for key in sorted(mine.keys() | theirs.keys()):
            a, b = mine.get(key), theirs.get(key)
            stream = Stream(StreamKind(kind), key).text
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
    mine_seq, theirs_seq = stored.submission_positions(), rebuilt.submission_positions()
    for task_id in sorted(mine_seq.keys() & theirs_seq.keys()):
        if mine_seq[task_id] != theirs_seq[task_id]:
            out.append(f"{Stream.task(task_id)}: stored queue position differs from the log")
    if [w for w in stored.registration_order() if w in rebuilt.workers] != [
        w for w in rebuilt.registration_order() if w in stored.workers
    ]:
        out.append("workers: registration order differs")
    return out


def _field_differences(a: BaseModel, b: BaseModel) -> list[str]:
    fields = type(a).model_fields
    out = []
    for name in sorted(fields):  # python values: frozensets compare as sets
        if name == "last_heartbeat":
            continue
        left, right = getattr(a, name), getattr(b, name)
        try:
            same = bool(left == right)
        except RecursionError:
            same = _same(left, right, True)
        if not same:
            out.append(f"stored {name}={_short(left)}, rebuilt {name}={_short(right)}")
    return out


def _short(value: Any, limit: int = 200) -> str:
    if isinstance(value, dict):
        text = dumps(value)
        return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
    return repr(value)
