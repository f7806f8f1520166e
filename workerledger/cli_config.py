"""Settings as the commands read them: validated before anything is printed or opened.

`load_settings()` reads the host's Settings and turns a refusal into a ConfigError
naming the variable; `database_url()` / `open_database()` give the store a command
works on and name the flag or variable it came from when it cannot be opened;
`changed_settings()` lists what differs from the defaults (secrets hidden);
`misspelt_variables()` finds WORKERLEDGER_* names that look like a setting but are not.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError
from pydantic_settings import SettingsError

from workerledger.adapters.ports import EventStore, StoreError
from workerledger.adapters.store.url import DEFAULT_DATABASE_URL, open_store, scheme_of

from .cli_errors import ConfigError, settings_error, variable

if TYPE_CHECKING:  # the host's settings import the whole host: only when a command needs it
    from workerledger.host_fastapi.settings import Settings

ENV_DATABASE_URL = "WORKERLEDGER_DATABASE_URL"
ENV_SQLITE_SYNCHRONOUS = "WORKERLEDGER_SQLITE_SYNCHRONOUS"
# read by the commands (serve, the state commands) and the worker SDK, not by Settings
COMMAND_VARIABLES = (
    "WORKERLEDGER_HOST",
    "WORKERLEDGER_PORT",
    "WORKERLEDGER_LOG_LEVEL",
    "WORKERLEDGER_LOG_FORMAT",
    "WORKERLEDGER_ACCESS_LOG",
    "WORKERLEDGER_TOKEN",
    ENV_SQLITE_SYNCHRONOUS,
)


def load_settings() -> Settings:
    """The host's Settings from the environment; ConfigError naming each wrong one."""
    from workerledger.host_fastapi.settings import Settings

    try:
        return Settings()
    except (ValidationError, SettingsError) as error:
        raise settings_error(error) from error


def check_sqlite_synchronous() -> str | None:
    """WORKERLEDGER_SQLITE_SYNCHRONOUS if set (ConfigError if not a mode SQLite takes)."""
    if ENV_SQLITE_SYNCHRONOUS not in os.environ:
        return None
    from workerledger.adapters.store.sqlite import synchronous_mode

    try:
        return synchronous_mode()
    except StoreError as error:
        raise ConfigError(str(error)) from error


class _Options(Protocol):
    def add_argument(self, *names: str, **options: Any) -> Any: ...


def add_database_option(parser: _Options) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
        f"(default: ${ENV_DATABASE_URL}, else {DEFAULT_DATABASE_URL})",
    )


@dataclass(frozen=True)
class DatabaseUrl:
    url: str
    source: str  # the flag or variable it came from, or "the default"


def database_url(args: argparse.Namespace) -> DatabaseUrl:
    if getattr(args, "database_url", None):
        return DatabaseUrl(args.database_url, "--database-url")
    if os.environ.get(ENV_DATABASE_URL):
        return DatabaseUrl(os.environ[ENV_DATABASE_URL], ENV_DATABASE_URL)
    return DatabaseUrl(DEFAULT_DATABASE_URL, f"the default database ({DEFAULT_DATABASE_URL})")


def open_database(source: DatabaseUrl) -> EventStore:
    """The store `source` names, opened without creating anything; ConfigError naming
    the flag or variable when it cannot be opened."""
    try:
        return open_store(source.url, create=False)
    except StoreError as error:
        hint = ""
        if source.source.startswith("the default"):
            hint = "\n(run it where `workerledger serve` runs, or pass --database-url or --url)"
        raise ConfigError(f"{source.source}: {error}{hint}") from error
    except ImportError as error:
        raise ConfigError(
            f"{source.source}: {source.url.partition('://')[0]}:// needs {error.name}: "
            "pip install 'workerledger[postgres]'"
        ) from error


def describe_database(url: str) -> str:
    """The database a URL names, for people: an absolute SQLite path, no password."""
    try:
        scheme = scheme_of(url)
    except StoreError:
        return hide_password(url)
    if scheme == "memory":
        return "memory:// (in this process only: nothing is kept after it exits)"
    if scheme == "sqlite":
        from workerledger.adapters.store.url import sqlite_path

        return f"SQLite file {Path(sqlite_path(url)).resolve()}"
    return f"PostgreSQL {hide_password(url)}"


def hide_password(url: str) -> str:
    """`url` with its password (if any) replaced by ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def changed_settings(settings: Settings) -> list[str]:
    """`NAME=value` for every setting that differs from its default (database URL aside;
    tokens counted, never shown; passwords hidden)."""
    changed: list[str] = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if name == "database_url" or value == field.get_default(call_default_factory=True):
            continue
        changed.append(f"{name.upper()}={_shown(name, value)}")
    mode = check_sqlite_synchronous()
    if mode is not None and mode != "NORMAL":
        changed.append(f"SQLITE_SYNCHRONOUS={mode}")
    return changed


def _shown(name: str, value: Any) -> str:
    if name == "auth_tokens" and isinstance(value, Mapping):
        admins = sum(1 for info in value.values() if getattr(info, "superuser", False))
        return f"({len(value)} token{'' if len(value) == 1 else 's'}, {admins} superuser)"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and "://" in value:
        return hide_password(value)
    return str(value)


def known_variables() -> list[str]:
    from workerledger.host_fastapi.settings import Settings

    return [variable(name) for name in Settings.model_fields] + list(COMMAND_VARIABLES)


def misspelt_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each WORKERLEDGER_* variable that is not a setting but close to one
    (other unknown names are left alone: tests and tools use the prefix too)."""
    known = known_variables()
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("WORKERLEDGER_") or upper in known:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        if close:
            warnings.append(f"{name} is not a setting: did you mean {close[0]}? (ignored)")
    return warnings
