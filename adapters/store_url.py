"""Open an EventStore from one URL (`WORKERLEDGER_DATABASE_URL`)."""

from __future__ import annotations

from .memory_store import InMemoryEventStore
from .ports import EventStore, StoreError

DEFAULT_DATABASE_URL = "sqlite:///./workerledger.db"


def open_store(url: str) -> EventStore:
    """`memory://`, `sqlite:///path/to/file.db` or `postgresql://...`."""
    if url.startswith("memory:"):
        return InMemoryEventStore()
    raise StoreError(
        f"unsupported database URL {url!r}: use memory://, sqlite:///PATH or postgresql://..."
    )
