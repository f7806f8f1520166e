"""In-memory EventStore: the reference backend for tests and the fake of the port."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime

from workerledger.core import Event

from ..ports import ConcurrencyError, StoredEvent


class InMemoryEventStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: list[StoredEvent] = []
        self._streams: dict[str, list[StoredEvent]] = {}
        self._beats: dict[str, tuple[int, datetime]] = {}
        self._beat_counter = 0

    def append(self, events: Sequence[Event], expected: Mapping[str, int]) -> list[StoredEvent]:
        with self._lock:
            for stream, version in expected.items():
                if len(self._streams.get(stream, ())) != version:
                    raise ConcurrencyError(f"{stream} is not at version {version}")
            stored: list[StoredEvent] = []
            for event in events:
                records = self._streams.setdefault(event.stream, [])
                record = StoredEvent(len(self._log) + 1, event.stream, len(records) + 1, event)
                records.append(record)
                self._log.append(record)
                stored.append(record)
            return stored

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        with self._lock:
            return self._log[after : after + limit]

    def read_stream(self, stream: str, after_version: int = 0) -> list[StoredEvent]:
        with self._lock:
            return self._streams.get(stream, [])[after_version:]

    def record_liveness(self, worker_id: str, at: datetime) -> None:
        with self._lock:
            self._beat_counter += 1
            self._beats[worker_id] = (self._beat_counter, at)

    def read_liveness(self, after: int) -> tuple[int, dict[str, datetime]]:
        with self._lock:
            beats = {w: at for w, (n, at) in self._beats.items() if n > after}
            return self._beat_counter, beats

    def close(self) -> None:
        return None
