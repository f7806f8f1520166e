"""The EventStore port on eventsourcing's recorders; shared by the SQLite and PostgreSQL stores.

Mapping (stable; changing any of it needs a data migration):
- one stored event per core event; stream `kind:key` -> originator id
  `uuid5(STREAM_NAMESPACE, stream)`, stream version -> originator version;
- topic `workerledger.event:<type>` (explicit, independent of module paths);
- state = plain JSON (`json_codec.PlainJSONTranscoder`: byte-compatible with the
  library's JSONTranscoder, but no `_type_` objects and no depth limit) over the
  envelope `{"stream": <name>, "schema": <version>, "event": <the event's JSON>}`;
  the library's compressor and cipher apply when configured;
- global position = the recorder's notification id (SQLite rowid, PostgreSQL
  `notification_id`; commit order, gaps possible).

`append` is one recorder transaction. A conflicting writer collides on the
(originator id, version) primary key, which eventsourcing reports as IntegrityError
and this module as ports.ConcurrencyError. Streams named in `expected` without new
events are checked inside the same transaction. Heartbeats go to the liveness
table (store_tables.py), never to the log. Snapshots: see snapshots.py.

An event that cannot be decoded is never skipped (the log is the truth and a fold
that skipped it would be wrong): reading it raises CorruptEventError naming its
position, its stream and the ways out; hosts and the CLI report that one line.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, cast
from uuid import UUID, uuid5

from eventsourcing.persistence import (
    AggregateRecorder,
    Cipher,
    Compressor,
    IntegrityError,
    Mapper,
    Notification,
    PersistenceError,
    StoredEvent,
    Transcoder,
)
from pydantic import ValidationError
from sqlalchemy import Engine, case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from workerledger.core import EVENT_ADAPTER, Event, Stream

from .. import ports
from ..ports import ConcurrencyError, StoreError
from .json_codec import PlainJSONTranscoder, to_plain
from .snapshots import (
    DEFAULT_SNAPSHOT_INTERVAL,
    Entity,
    Snapshot,
    decode_entity,
    encode_entity,
    load_entity,
)
from .tables import liveness, liveness_counter
from .upcasting import UPCASTERS, Upcasters

log = logging.getLogger(__name__)

STREAM_NAMESPACE = UUID("9a3c1f64-5b1e-5d0a-8f6e-2c7b4e0d1a57")
EVENT_TOPIC = "workerledger.event:"
SNAPSHOT_TOPIC = "workerledger.snapshot:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _driver_errors() -> tuple[type[Exception], ...]:
    """Database driver errors an append can raise past the library's own wrapping."""
    errors: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # the postgres extra is not installed
        pass
    return tuple(errors)


_APPEND_ERRORS: tuple[type[Exception], ...] = (
    PersistenceError,
    SQLAlchemyError,
    OSError,
    *_driver_errors(),
)


@lru_cache(maxsize=16384)  # uuid5 hashes on every call; hot streams repeat
def stream_uuid(stream: str) -> UUID:
    return uuid5(STREAM_NAMESPACE, stream)


class CorruptEventError(StoreError):
    """A stored event cannot be decoded, upcast or validated (the message says where)."""


class ViewBehindError(Exception):
    """`append_current` found `limit` or more events beyond the caller's position and
    appended nothing: catch up with the log outside the append lock, then try again."""


DecideOnCurrent = Callable[[list[ports.StoredEvent]], tuple[Sequence[Event], Mapping[str, int]]]


class CurrentStore(Protocol):
    """A store that appends on a view current at its commit (`RecorderEventStore` with
    `appends_current`, or the timing proxy of one): see `RecorderEventStore.append_current`."""

    def append_current(
        self, after: int, decide: DecideOnCurrent, limit: int
    ) -> list[ports.StoredEvent]: ...


class _DecideFailed(Exception):
    """Carries what `append_current`'s decide raised out of the recorder's transaction."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def undecodable(record: Notification, stream: object, reason: str) -> str:
    """The one-line report of an event that cannot be decoded, with the ways out."""
    named = f"stream {stream}" if isinstance(stream, str) else f"stream id {record.originator_id}"
    return (
        f"corrupt event at position {record.id} ({named}, version "
        f"{record.originator_version}, topic {record.topic!r}) cannot be decoded: {reason}. "
        "The log is the source of truth and no event is skipped: restore the database "
        "from a backup, or, for an event written by another version, add an upcaster "
        "(see adapters/store/upcasting.py)"
    )


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{error.error_count()} validation error(s), first at {where}: {first['msg']}"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


class StreamRecorder(Protocol):
    """An eventsourcing application recorder plus a per-stream select with positions."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None: ...

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]: ...

    def select_stream(
        self, originator_id: UUID, *, gt: int = 0, lte: int | None = None
    ) -> list[Notification]:
        """Notifications of one originator in version order (with their positions)."""
        ...

    def max_notification_id(self) -> int | None: ...


class CurrentAppender(Protocol):
    """A recorder that appends under its lock on a view that is current at the commit."""

    def insert_events_after(
        self,
        after: int,
        limit: int,
        build: Callable[[list[Notification]], Sequence[StoredEvent]],
    ) -> Sequence[int]: ...


class CoreEventMapper(Mapper[UUID]):
    """Maps core events (pydantic) to the library's StoredEvent and back."""

    def __init__(
        self,
        upcasters: Upcasters | None = None,
        transcoder: Transcoder | None = None,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
    ) -> None:
        super().__init__(transcoder or PlainJSONTranscoder(), compressor, cipher)
        self.upcasters = upcasters or UPCASTERS

    def event_to_stored(self, event: Event, version: int) -> StoredEvent:
        envelope = {
            "stream": event.stream,
            "schema": self.upcasters.version_of(event.type),
            "event": to_plain(event),  # any depth the log can hold
        }
        return StoredEvent(
            originator_id=stream_uuid(event.stream),
            originator_version=version,
            topic=EVENT_TOPIC + event.type,
            state=self._seal(envelope),
        )

    def stored_to_event(
        self, record: Notification, name_of: Callable[[UUID | str], str | None] | None = None
    ) -> ports.StoredEvent:
        """The core event of a row; CorruptEventError if it cannot be decoded.

        `name_of` finds the stream's name for the error when this row's is unreadable.
        """
        stream: object = None
        try:
            envelope = self._unseal(record.state)
            stream = envelope["stream"]
            if not isinstance(stream, str) or stream_uuid(stream) != record.originator_id:
                stream, name = None, stream
                raise ValueError(f"stream name {name!r} does not match the stream id")
            if not record.topic.startswith(EVENT_TOPIC):
                raise ValueError("not an event topic")
            event_type = record.topic.removeprefix(EVENT_TOPIC)
            stored_type = envelope["event"].get("type")
            if stored_type != event_type:
                raise ValueError(f"the payload is a {stored_type!r}, the topic says {event_type!r}")
            data = self.upcasters.upcast(event_type, int(envelope["schema"]), envelope["event"])
            event = EVENT_ADAPTER.validate_python(data)
        except Exception as error:
            if stream is None and name_of is not None:
                stream = name_of(record.originator_id)
            raise CorruptEventError(undecodable(record, stream, _reason(error))) from error
        return ports.StoredEvent(record.id, stream, record.originator_version, event)

    def stream_of(self, record: StoredEvent) -> str | None:
        """The stream name a row's envelope states, if readable and matching its id."""
        try:
            stream = self._unseal(record.state).get("stream")
        except Exception:
            return None
        matches = isinstance(stream, str) and stream_uuid(stream) == record.originator_id
        return stream if matches else None

    def snapshot_to_stored(self, stream: str, version: int, entity: Entity) -> StoredEvent:
        return StoredEvent(
            originator_id=stream_uuid(stream),
            originator_version=version,
            topic=SNAPSHOT_TOPIC + Stream.parse(stream).kind.value,
            state=self._seal(encode_entity(stream, entity)),
        )

    def stored_to_snapshot(self, record: StoredEvent) -> Snapshot | None:
        try:
            decoded = decode_entity(self._unseal(record.state))
        except Exception:
            return None
        if decoded is None or stream_uuid(decoded[0]) != record.originator_id:
            return None
        return Snapshot(decoded[0], record.originator_version, decoded[1])

    def _seal(self, payload: dict[str, Any]) -> bytes:
        data = self.transcoder.encode(payload)
        if self.compressor:
            data = self.compressor.compress(data)
        return self.cipher.encrypt(data) if self.cipher else data

    def _unseal(self, data: bytes) -> dict[str, Any]:
        if self.cipher:
            data = self.cipher.decrypt(data)
        if self.compressor:
            data = self.compressor.decompress(data)
        payload = self.transcoder.decode(data)
        if not isinstance(payload, dict):
            raise ValueError("payload is not a JSON object")
        return payload


class RecorderEventStore:
    """ports.EventStore on an eventsourcing application recorder (one per database).

    Beyond the port: `append_current` (when `appends_current`: PostgreSQL),
    `latest_snapshot`, `read_stream_until`, `load_entity`, `save_snapshot`, `head()`
    and the SQLAlchemy `engine` of the same database (liveness and read-model tables).
    """

    def __init__(
        self,
        *,
        url: str,
        events: StreamRecorder,
        snapshots: AggregateRecorder,
        engine: Engine,
        mapper: CoreEventMapper,
        snapshot_interval: int = DEFAULT_SNAPSHOT_INTERVAL,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self.url = url
        self.events = events
        self.snapshots = snapshots
        self.engine = engine
        self.mapper = mapper
        self.snapshot_interval = snapshot_interval
        self.snapshots_taken = 0
        self._on_close = on_close
        postgres = engine.dialect.name == "postgresql"
        self._upsert = postgresql.insert if postgres else sqlite.insert
        # single-statement reads need no BEGIN/ROLLBACK round trips on PostgreSQL
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if postgres else engine
        )
        # the catch-up read: the recorder's own `select_after` (SQLite: no query when
        # nothing is new) or the library's select
        self._select_after: Callable[[int, int], Sequence[Notification]] = getattr(
            events,
            "select_after",
            lambda after, limit: events.select_notifications(
                after, limit, inclusive_of_start=False
            ),
        )
        current = callable(getattr(events, "insert_events_after", None))
        self._insert_after = cast(CurrentAppender, events) if current else None
        # whether `append_current` can decide under the append lock (the service then
        # skips its catch-up read before deciding: the append reads what is new)
        self.appends_current = self._insert_after is not None

    # --- the port -------------------------------------------------------------------

    def append(
        self, events: Sequence[Event], expected: Mapping[str, int]
    ) -> list[ports.StoredEvent]:
        records, versions = self._records(events, expected)
        touched = {event.stream for event in events}
        eventless = {stream_uuid(s): v for s, v in expected.items() if s not in touched}
        try:
            ids = self.events.insert_events(records, check_versions=eventless) or []
        except IntegrityError as error:
            raise ConcurrencyError(f"a stream of {sorted(expected)} moved on: {error}") from error
        except _APPEND_ERRORS as error:
            # the outcome may be unknown (the connection died around COMMIT): the
            # service reads the streams back before it answers (service._read_back)
            raise StoreError(f"cannot append to {self.url}: {error}") from error
        return self._committed(ids, events, records, expected, versions)

    def append_current(
        self, after: int, decide: DecideOnCurrent, limit: int
    ) -> list[ports.StoredEvent]:
        """`append` on a view that is current at the commit (only when `appends_current`).

        Under the log's append lock, the events committed beyond position `after` (the
        caller's view; fewer than `limit`) are read and handed to `decide`, which folds
        them into that view and returns the events to append and the expected version
        of each of their streams (as `append`; every stream named must get events).
        Nothing else commits before this commit, so what it appends was decided on the
        whole log as it is then, streams read but not written included. Returns the
        stored events (none when `decide` returned none).

        Raises ViewBehindError when `limit` or more events are new (nothing appended);
        what `decide` raises, unchanged (nothing appended); otherwise as `append`.
        """
        recorder = self._insert_after
        if recorder is None:
            raise NotImplementedError(f"{self.url} cannot append under its lock")
        decided: list[tuple[Sequence[Event], Mapping[str, int], list[StoredEvent], dict[str, int]]]
        decided = []

        def build(rows: list[Notification]) -> Sequence[StoredEvent]:
            try:
                new = [self.mapper.stored_to_event(row, self._name_of) for row in rows]
                events, expected = decide(new)
                if set(expected) != {event.stream for event in events}:
                    raise ValueError("append_current: expected versions only of written streams")
                records, versions = self._records(events, expected)
            except Exception as error:  # not the database's: out of the recorder unchanged
                raise _DecideFailed(error) from error
            decided.append((events, expected, records, versions))
            return records

        failed: Exception | None = None
        try:
            ids = recorder.insert_events_after(after, limit, build)
        except _DecideFailed as carrier:
            failed = carrier.error
        except IntegrityError as error:
            raise ConcurrencyError(f"a stream moved on under the append lock: {error}") from error
        except _APPEND_ERRORS as error:
            # the outcome may be unknown (the connection died around COMMIT): the
            # service reads the streams back before it answers (service._read_back)
            raise StoreError(f"cannot append to {self.url}: {error}") from error
        if failed is not None:
            raise failed
        if not decided or not ids:
            return []
        events, expected, records, versions = decided[-1]
        return self._committed(ids, events, records, expected, versions)

    def _committed(
        self,
        ids: Sequence[int],
        events: Sequence[Event],
        records: Sequence[StoredEvent],
        expected: Mapping[str, int],
        versions: dict[str, int],
    ) -> list[ports.StoredEvent]:
        """The stored events of a committed append (snapshots taken after it)."""
        stored = [
            ports.StoredEvent(position, event.stream, record.originator_version, event)
            for position, event, record in zip(ids, events, records, strict=True)
        ]
        self._snapshot_after_commit(expected, versions)
        return stored

    def _records(
        self, events: Sequence[Event], expected: Mapping[str, int]
    ) -> tuple[list[StoredEvent], dict[str, int]]:
        """The stored form of `events` after `expected`, and each stream's new version."""
        versions = dict(expected)
        records: list[StoredEvent] = []
        for event in events:
            if event.stream not in versions:
                raise ValueError(f"append: no expected version given for {event.stream}")
            versions[event.stream] += 1
            records.append(self.mapper.event_to_stored(event, versions[event.stream]))
        return records, versions

    def read(self, after: int, limit: int) -> list[ports.StoredEvent]:
        try:
            rows = self._select_after(after, limit)
        except PersistenceError as error:
            raise StoreError(f"cannot read {self.url}: {error}") from error
        return [self.mapper.stored_to_event(row, self._name_of) for row in rows]

    def read_stream(self, stream: str, after_version: int = 0) -> list[ports.StoredEvent]:
        return self.read_stream_until(stream, after_version, None)

    def record_liveness(self, worker_id: str, at: datetime) -> None:
        at_us = (at - _EPOCH) // _MICROSECOND
        try:
            with self.engine.begin() as conn:
                counter = conn.execute(
                    update(liveness_counter)
                    .where(liveness_counter.c.id == 1)
                    .values(value=liveness_counter.c.value + 1)
                    .returning(liveness_counter.c.value)
                ).scalar_one()
                stmt = self._upsert(liveness).values(
                    worker_id=worker_id, at_us=at_us, counter=counter
                )
                newer = case(
                    (stmt.excluded.at_us > liveness.c.at_us, stmt.excluded.at_us),
                    else_=liveness.c.at_us,
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[liveness.c.worker_id],
                        set_={"at_us": newer, "counter": stmt.excluded.counter},
                    )
                )
        except SQLAlchemyError as error:
            raise StoreError(f"cannot record liveness in {self.url}: {error}") from error

    def read_liveness(self, after: int) -> tuple[int, dict[str, datetime]]:
        query = select(liveness.c.worker_id, liveness.c.at_us, liveness.c.counter).where(
            liveness.c.counter > after
        )
        try:
            with self._reader.connect() as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as error:
            raise StoreError(f"cannot read liveness from {self.url}: {error}") from error
        beats = {worker: _EPOCH + at_us * _MICROSECOND for worker, at_us, _ in rows}
        return max((counter for *_, counter in rows), default=after), beats

    def close(self) -> None:
        self._on_close()
        self.engine.dispose()

    # --- beyond the port --------------------------------------------------------------

    def head(self) -> int:
        """The position of the last event in the log (0 when empty)."""
        return self.events.max_notification_id() or 0

    def read_stream_until(
        self, stream: str, after_version: int, until_version: int | None
    ) -> list[ports.StoredEvent]:
        try:
            rows = self.events.select_stream(
                stream_uuid(stream), gt=after_version, lte=until_version
            )
        except PersistenceError as error:
            raise StoreError(f"cannot read {stream} from {self.url}: {error}") from error
        return [self.mapper.stored_to_event(row, lambda _: stream) for row in rows]

    def _name_of(self, originator_id: UUID | str) -> str | None:
        """A stream's name from any of its rows that still decodes (for error messages)."""
        try:
            rows = self.events.select_stream(UUID(str(originator_id)))
        except Exception:
            return None
        return next((name for row in rows if (name := self.mapper.stream_of(row))), None)

    def latest_snapshot(self, stream: str, at_version: int | None = None) -> Snapshot | None:
        rows = self.snapshots.select_events(stream_uuid(stream), lte=at_version, desc=True, limit=1)
        return self.mapper.stored_to_snapshot(rows[0]) if rows else None

    def save_snapshot(self, stream: str, version: int, entity: Entity) -> None:
        record = self.mapper.snapshot_to_stored(stream, version, entity)
        try:
            self.snapshots.insert_events([record])
        except IntegrityError:
            return  # another host took the same snapshot
        self.snapshots_taken += 1

    def load_entity(self, stream: str, at_version: int | None = None) -> tuple[Entity | None, int]:
        return load_entity(self, stream, at_version)

    def _snapshot_after_commit(self, before: Mapping[str, int], after: Mapping[str, int]) -> None:
        interval = self.snapshot_interval
        if interval <= 0:
            return
        for stream, version in after.items():
            if version // interval <= before[stream] // interval:
                continue
            try:
                entity, at = load_entity(self, stream, version)
                if entity is not None:
                    self.save_snapshot(stream, at, entity)
            except Exception:  # the events are committed; a snapshot is only a cache
                log.warning("snapshot of %s at version %d failed", stream, version, exc_info=True)
