"""Access to the machine's PostgreSQL and Redis for tests.

Each test database is created fresh and dropped afterwards; Redis tests use their
own key prefix / channel and delete what they wrote. When a service is missing the
test is skipped, unless WORKERLEDGER_REQUIRE_SERVICES=1 (CI), where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from support.cli_runner import cli

PG_ADMIN_URL = os.environ.get("WORKERLEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("WORKERLEDGER_TEST_REDIS", "redis://127.0.0.1:6379/0")


def services_required() -> bool:
    return os.environ.get("WORKERLEDGER_REQUIRE_SERVICES") == "1"


def unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not available: {error}"
    if services_required():
        pytest.fail(message + " (WORKERLEDGER_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create an empty database, yield its URL, drop it afterwards."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as error:
        unavailable("PostgreSQL", error)
        raise
    name = f"wl_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def migrated_postgres() -> Iterator[str]:
    """A fresh database prepared by one `workerledger migrate` (what several hosts sharing
    it expect; run in this process, tests/store/test_store_cli.py runs the entry point);
    dropped afterwards."""
    with fresh_postgres_database() as url:
        done = cli("migrate", "--database-url", url)
        assert done.returncode == 0, done.stdout + done.stderr
        yield url


@contextmanager
def redis_prefix() -> Iterator[tuple[str, str]]:
    """Yield (redis URL, unique prefix); delete every key with the prefix afterwards."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
    except Exception as error:
        unavailable("Redis", error)
        raise
    prefix = f"wltest-{uuid.uuid4().hex[:12]}"
    try:
        yield REDIS_URL, prefix
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()
