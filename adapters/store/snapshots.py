"""Snapshots of single streams, and loading one stream's state (for history and `--at`).

Policy: a store built on eventsourcing's recorders (es_store.py) takes a snapshot of
a stream when an append carries its version across a multiple of the snapshot
interval (default 100). The snapshot is written after the events commit, in a
separate write to `workerledger_snapshots`; if it fails the events stay committed
and the failure is only logged (the next crossing writes a new one). Two hosts
snapshotting the same version collide harmlessly on the primary key.

Snapshots are a disposable cache of a fold: `load_entity` takes the latest snapshot
at or below the wanted version and folds the stream's later events on top. A snapshot
that cannot be decoded (any error: bad bytes, JSON deeper than the recursion limit, a
state the models no longer accept; bump SNAPSHOT_SCHEMA when they change) is ignored
and the stream is folded from its start, so snapshots never change results. States
are encoded with `json_codec.to_plain`, which has no depth limit.
The hosts do not need snapshots (their Projection holds every entity); they serve
history queries and state-at-a-version loads of long-lived workers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol, runtime_checkable

from workerledger.core import (
    Event,
    JobState,
    LedgerState,
    Stream,
    StreamKind,
    TaskState,
    WorkerState,
    evolve,
)

from ..ports import EventStore, StoredEvent
from .json_codec import to_plain

Entity = WorkerState | JobState | TaskState
SNAPSHOT_SCHEMA = 1
DEFAULT_SNAPSHOT_INTERVAL = 100
_MODELS: dict[StreamKind, type[WorkerState] | type[JobState] | type[TaskState]] = {
    StreamKind.WORKER: WorkerState,
    StreamKind.JOB: JobState,
    StreamKind.TASK: TaskState,
}


class Snapshot(NamedTuple):
    stream: str
    version: int
    entity: Entity


@runtime_checkable
class SnapshottingStore(Protocol):
    """What a store offers beyond the port to load streams from snapshots."""

    def latest_snapshot(self, stream: str, at_version: int | None = None) -> Snapshot | None: ...

    def read_stream_until(
        self, stream: str, after_version: int, until_version: int | None
    ) -> list[StoredEvent]: ...


def entity_of(state: LedgerState, stream: str) -> Entity | None:
    """The entity a stream folds into, taken out of a (partial) LedgerState."""
    try:
        subject = Stream.parse(stream)
    except ValueError:
        return None
    if subject.kind is StreamKind.WORKER:
        return state.workers.get(subject.key)
    if subject.kind is StreamKind.JOB:
        return state.jobs.get(subject.key)
    return state.tasks.get(subject.key)


def _as_state(entity: Entity | None) -> LedgerState:
    if isinstance(entity, WorkerState):
        return LedgerState.model_construct(workers={entity.id: entity}, jobs={}, tasks={})
    if isinstance(entity, JobState):
        return LedgerState.model_construct(workers={}, jobs={entity.full_name: entity}, tasks={})
    if isinstance(entity, TaskState):
        return LedgerState.model_construct(workers={}, jobs={}, tasks={entity.id: entity})
    return LedgerState.model_construct(workers={}, jobs={}, tasks={})


def fold_stream(stream: str, entity: Entity | None, events: Iterable[Event]) -> Entity | None:
    """Fold one stream's events onto its entity (None before the stream's first event)."""
    state = _as_state(entity)
    for event in events:
        state = evolve(state, event)
    return entity_of(state, stream)


def encode_entity(stream: str, entity: Entity) -> dict[str, Any]:
    return {
        "stream": stream,
        "schema": SNAPSHOT_SCHEMA,
        "entity": to_plain(entity),
    }


def decode_entity(data: dict[str, Any]) -> tuple[str, Entity] | None:
    """The (stream, entity) of a snapshot payload, or None if it is not usable."""
    try:
        stream = data.get("stream")
        if data.get("schema") != SNAPSHOT_SCHEMA or not isinstance(stream, str):
            return None
        model = _MODELS[Stream.parse(stream).kind]
        return stream, model.model_validate(data["entity"])
    except Exception:  # a snapshot is a cache: whatever fails, fold the stream instead
        return None


def load_entity(
    store: EventStore, stream: str, at_version: int | None = None
) -> tuple[Entity | None, int]:
    """The stream's entity as of `at_version` (default: its head), and that version.

    Uses the latest snapshot at or below the version when the store keeps them, then
    folds the remaining events; otherwise folds the whole stream.
    """
    if isinstance(store, SnapshottingStore):
        snapshot = store.latest_snapshot(stream, at_version)
        start = snapshot.version if snapshot else 0
        events = store.read_stream_until(stream, start, at_version)
        entity = fold_stream(stream, snapshot.entity if snapshot else None, _events(events))
        return entity, events[-1].version if events else start
    records = [
        r for r in store.read_stream(stream) if at_version is None or r.version <= at_version
    ]
    return fold_stream(stream, None, _events(records)), records[-1].version if records else 0


def _events(records: Iterable[StoredEvent]) -> Iterable[Event]:
    return (record.event for record in records)
