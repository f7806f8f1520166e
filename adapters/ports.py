"""Ports: the typed interfaces adapters implement. Role names, no base classes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from workerledger.core import Event


class StoredEvent(NamedTuple):
    """An event as the log holds it: global position, its stream and version there."""

    position: int  # increasing over the whole log (may have gaps)
    stream: str
    version: int  # 1, 2, 3 ... within the stream
    event: Event


class ConcurrencyError(Exception):
    """An append expected a stream version that another writer already moved past."""


class StoreError(Exception):
    """The store cannot be opened or read (wrong URL, foreign file, corrupt payload)."""


class EventStore(Protocol):
    """Durable, ordered log of core events plus a liveness table for heartbeats."""

    def append(self, events: Sequence[Event], expected: Mapping[str, int]) -> list[StoredEvent]:
        """Append all `events` in one transaction.

        `expected` maps every stream the events touch to the version the writer saw
        (0 for a new stream). Raises ConcurrencyError if any stream moved on, in
        which case nothing was written.
        """
        ...

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        """Up to `limit` events with position > `after`, in position order."""
        ...

    def read_stream(self, stream: str, after_version: int = 0) -> list[StoredEvent]:
        """The events of one stream with version > `after_version`, in order."""
        ...

    def record_liveness(self, worker_id: str, at: datetime) -> None:
        """Remember the latest heartbeat of a worker (not appended to the log)."""
        ...

    def read_liveness(self, after: int) -> tuple[int, dict[str, datetime]]:
        """Heartbeats recorded after change counter `after`: (new counter, beats)."""
        ...

    def close(self) -> None: ...
