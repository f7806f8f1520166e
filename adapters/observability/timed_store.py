"""An EventStore proxy that times appends, counts their conflicts and errors, and
observes how many events each committed append carried (a group commit carries the
events of several commands).

Every other call (and attribute: the engine the read-model tables use, the
snapshot reads of history) goes to the wrapped store unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from prometheus_client import Counter, Histogram
from workerledger.core import Event

from ..ports import ConcurrencyError, EventStore, StoredEvent, StoreError
from ..store.recorder import CurrentStore, DecideOnCurrent
from ..store.snapshots import Snapshot, SnapshottingStore


class TimedEventStore:
    """`store` with every `append` observed in `seconds`; a ConcurrencyError counts in
    `conflicts`, any other StoreError in `errors` (both re-raised unchanged)."""

    def __init__(
        self,
        store: EventStore,
        seconds: Histogram,
        conflicts: Counter,
        errors: Counter,
        sizes: Histogram,
    ) -> None:
        self.wrapped = store
        self._seconds, self._conflicts, self._errors = seconds, conflicts, errors
        self._sizes = sizes

    def append(self, events: Sequence[Event], expected: Mapping[str, int]) -> list[StoredEvent]:
        return self._observed(lambda: self.wrapped.append(events, expected))

    def append_current(self, after: int, decide: DecideOnCurrent, limit: int) -> list[StoredEvent]:
        """`append_current` of a store that `appends_current`, observed as `append`."""
        wrapped = cast(CurrentStore, self.wrapped)
        return self._observed(lambda: wrapped.append_current(after, decide, limit))

    def _observed(self, append: Callable[[], list[StoredEvent]]) -> list[StoredEvent]:
        started = time.perf_counter()
        try:
            stored = append()
            if stored:
                self._sizes.observe(len(stored))
            return stored
        except ConcurrencyError:
            self._conflicts.inc()
            raise
        except StoreError:
            self._errors.inc()
            raise
        finally:
            self._seconds.observe(time.perf_counter() - started)

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        return self.wrapped.read(after, limit)

    def read_stream(self, stream: str, after_version: int = 0) -> list[StoredEvent]:
        return self.wrapped.read_stream(stream, after_version)

    def record_liveness(self, worker_id: str, at: datetime) -> None:
        self.wrapped.record_liveness(worker_id, at)

    def read_liveness(self, after: int) -> tuple[int, dict[str, datetime]]:
        return self.wrapped.read_liveness(after)

    def close(self) -> None:
        self.wrapped.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


class TimedSnapshottingStore(TimedEventStore):
    """The proxy of a store that keeps snapshots (history loads use them)."""

    wrapped: Any  # an EventStore that is also a SnapshottingStore

    def latest_snapshot(self, stream: str, at_version: int | None = None) -> Snapshot | None:
        snapshot: Snapshot | None = self.wrapped.latest_snapshot(stream, at_version)
        return snapshot

    def read_stream_until(
        self, stream: str, after_version: int, until_version: int | None
    ) -> list[StoredEvent]:
        events: list[StoredEvent] = self.wrapped.read_stream_until(
            stream, after_version, until_version
        )
        return events


def timed_store(
    store: EventStore,
    seconds: Histogram,
    conflicts: Counter,
    errors: Counter,
    sizes: Histogram,
) -> EventStore:
    """The proxy for `store` (keeping its snapshot reads when it has them)."""
    if isinstance(store, SnapshottingStore):
        return TimedSnapshottingStore(store, seconds, conflicts, errors, sizes)
    return TimedEventStore(store, seconds, conflicts, errors, sizes)
