"""Open an EventStore from one URL (`WORKERLEDGER_DATABASE_URL`), and create schemas.

- `memory://`: in-process, for tests (no snapshots, no read-model tables).
- `sqlite:///relative/path.db` or `sqlite:////absolute/path.db`: the embedded
  default; the file is created on open unless `create=False`.
- `postgresql://user:password@host:port/dbname`: several hosts; run `migrate` once,
  then hosts open it without creating anything (`create=True` migrates first).
"""

from __future__ import annotations

from ..ports import EventStore, StoreError
from .memory import InMemoryEventStore
from .snapshots import DEFAULT_SNAPSHOT_INTERVAL
from .upcasting import Upcasters

DEFAULT_DATABASE_URL = "sqlite:///./workerledger.db"
_SQLITE = "sqlite:///"
_HELP = "use memory://, sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME"


def scheme_of(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StoreError(f"malformed database URL {url!r}: {_HELP}")
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return "postgresql"
    if scheme in ("memory", "sqlite"):
        return scheme
    raise StoreError(f"unsupported database URL {url!r}: {_HELP}")


def sqlite_path(url: str) -> str:
    if not url.startswith(_SQLITE):
        raise StoreError(
            f"malformed SQLite URL {url!r}: use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    path = url[len(_SQLITE) :]
    if not path or path == ":memory:" or "?" in path:
        raise StoreError(
            f"unsupported SQLite URL {url!r}: give a file path without parameters "
            "(use memory:// for an in-memory store)"
        )
    return path


def open_store(
    url: str,
    *,
    create: bool | None = None,
    snapshot_interval: int = DEFAULT_SNAPSHOT_INTERVAL,
    upcasters: Upcasters | None = None,
) -> EventStore:
    """Open the store `url` names; raises StoreError with the reason when it cannot.

    `create` defaults to True for SQLite (create the file and tables on open) and to
    False for PostgreSQL (the schema comes from `migrate`).
    """
    scheme = scheme_of(url)
    if scheme == "memory":
        return InMemoryEventStore()
    if scheme == "sqlite":
        from .sqlite import open_sqlite_store

        return open_sqlite_store(
            sqlite_path(url),
            create=True if create is None else create,
            snapshot_interval=snapshot_interval,
            upcasters=upcasters,
        )
    from .postgres import open_postgres_store

    return open_postgres_store(
        url, create=bool(create), snapshot_interval=snapshot_interval, upcasters=upcasters
    )


def migrate(url: str) -> str:
    """Create the schema of `url` once (idempotent); returns what was done."""
    scheme = scheme_of(url)
    if scheme == "memory":
        return "memory:// keeps nothing; nothing to migrate"
    if scheme == "sqlite":
        from .sqlite import open_sqlite_store

        path = sqlite_path(url)
        open_sqlite_store(path, create=True).close()
        return f"SQLite database {path} is ready"
    from .postgres import migrate_postgres, parse_url

    migrate_postgres(url)
    return f"{parse_url(url).render_as_string(hide_password=True)} is ready"
