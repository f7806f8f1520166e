"""`workerledger migrate | rebuild [--check] | history`: the store's command line.

Exit codes: 0 success, 1 `rebuild --check` found differences (unreadable rows
included), 2 bad input (bad URL, missing or foreign database, unknown worker or task,
bad timestamp, an event in the log that cannot be decoded, a row that would not read
back). Every StoreError is printed as one line, never as a traceback; a database
that cannot be opened names the flag or variable its URL came from (cli_errors.py).

`rebuild` reads only the log, never the rows it replaces, and writes nothing unless
every new row reads back; so after a rebuild `rebuild --check` passes whenever the
log itself is readable. `history` takes a whole id or a unique prefix of one (the
8 characters the text tables of `workers` and `tasks` show).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

from workerledger.adapters.ports import EventStore, StoreError
from workerledger.adapters.store.history import (
    HistoryNotFoundError,
    TaskHistory,
    WorkerHistory,
    history_json,
    task_history,
    worker_history,
)
from workerledger.adapters.store.read_models import MAX_DIFFERENCES, ReadModelTables
from workerledger.adapters.store.url import migrate

from .cli_config import add_database_option, database_url, open_database
from .cli_errors import ConfigError
from .cli_sources import read_view

BAD_INPUT = 2
H = TypeVar("H", WorkerHistory, TaskHistory)
FULL_ID = 36  # characters of a uuid
SHORT_ID = 8
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def add_commands(subparsers: Any) -> None:
    url = argparse.ArgumentParser(add_help=False)
    add_database_option(url)

    p = subparsers.add_parser(
        "migrate",
        parents=[url],
        help="create the database schema (once, before hosts start)",
        description="Create the event log, snapshot, liveness and read-model tables. "
        "Idempotent. Run it once before starting several hosts against one PostgreSQL "
        "database (hosts never create tables themselves); SQLite files are also "
        "created on first use.",
    )
    p.set_defaults(func=_migrate)

    p = subparsers.add_parser(
        "rebuild",
        parents=[url],
        help="rebuild the read-model tables from the event log (or --check them)",
        description="Fold the whole event log from scratch and rewrite the read-model "
        "tables (workers, jobs, tasks). With --check, write nothing: fold the log up to "
        "the tables' tracking position and compare; print every difference and exit 1 "
        "if there is any.",
    )
    p.add_argument("--check", action="store_true", help="compare only; exit 1 on differences")
    p.set_defaults(func=_rebuild)

    p = subparsers.add_parser(
        "history",
        parents=[url],
        help="print a worker's (or task's) timeline",
        description="Print a worker's timeline from its event stream: registration, "
        "rooms, claims, disconnects with reasons, resumes, its end and the requeues or "
        "failures its end caused. History is kept after a worker is deleted. The id may "
        "be a unique prefix (e.g. the 8 characters `workerledger workers` shows).",
        epilog="examples:\n"
        "  workerledger history 3f2a9c1e                # a worker, by id prefix\n"
        "  workerledger history 3f2a9c1e --at 2025-06-01T12:00:00Z\n"
        "  workerledger history 7b1c0d2e --task --json  # a task, every attempt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("id", metavar="WORKER_ID", help="worker id or prefix (a task's with --task)")
    p.add_argument("--task", action="store_true", help="ID is a task: show every attempt")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--short-ids",
        action="store_true",
        help=f"in the text, shorten every id to its first {SHORT_ID} characters",
    )
    p.add_argument(
        "--at",
        metavar="TIMESTAMP",
        type=_timestamp,
        help="show the worker as it was at this ISO 8601 time (UTC if no offset), "
        "e.g. 2025-06-01T12:00:00Z",
    )
    p.set_defaults(func=_history)


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 timestamp: {text!r} (e.g. 2025-06-01T12:00:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _fail(message: str) -> int:
    print(f"workerledger: error: {message}", file=sys.stderr)
    return BAD_INPUT


def _with_store(args: argparse.Namespace, run: Callable[[EventStore], int]) -> int:
    store = open_database(database_url(args))
    try:
        return run(store)
    except (StoreError, HistoryNotFoundError) as error:
        return _fail(str(error))
    finally:
        store.close()


def _migrate(args: argparse.Namespace) -> int:
    source = database_url(args)
    try:
        print(migrate(source.url))
    except StoreError as error:
        raise ConfigError(f"{source.source}: {error}") from error
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    def run(store: EventStore) -> int:
        tables = ReadModelTables.for_store(store)
        progress = _Progress(sys.stderr)
        if args.check:
            found = tables.check(store, progress)
            progress.done()
            for line in found[:MAX_DIFFERENCES]:
                print(line)
            if len(found) > MAX_DIFFERENCES:
                print(f"... and {len(found) - MAX_DIFFERENCES} more")
            position = tables.position()
            if found:
                print(f"rebuild --check: {len(found)} difference(s) at position {position}")
                return 1
            print(f"rebuild --check: the read-model tables match the log up to {position}")
            return 0
        view = tables.rebuild(store, progress)
        progress.done()
        print(
            f"rebuilt the read-model tables: {len(view.workers)} workers, {len(view.jobs)} "
            f"jobs, {len(view.tasks)} tasks at position {view.position}"
        )
        return 0

    return _with_store(args, run)


def _history(args: argparse.Namespace) -> int:
    def run(store: EventStore) -> int:
        if args.task:
            task = _by_id_or_prefix(store, args.id, lambda i: task_history(store, i), task=True)
            text = history_json(task, indent=2) if args.json else _task_text(task)
        else:
            worker = _by_id_or_prefix(
                store, args.id, lambda i: worker_history(store, i, args.at), task=False
            )
            text = history_json(worker, indent=2) if args.json else _worker_text(worker)
        print(_shortened(text) if args.short_ids and not args.json else text)
        return 0

    return _with_store(args, run)


def _by_id_or_prefix(store: EventStore, given: str, read: Callable[[str], H], *, task: bool) -> H:
    """The history of id `given`, else of the one id in the state that starts with it."""
    try:
        return read(given)
    except HistoryNotFoundError as unknown:
        if len(given) >= FULL_ID:
            raise
        view = read_view(store)
        found = sorted(i for i in (view.tasks if task else view.workers) if i.startswith(given))
        if not found:
            raise unknown from None
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (" ..." if len(found) > 5 else "")
        kind = "task" if task else "worker"
        raise HistoryNotFoundError(f"{len(found)} {kind} ids start with {given!r}: {shown}")
    return read(found[0])


def _shortened(text: str) -> str:
    return UUID.sub(lambda match: match.group()[:SHORT_ID], text)


class _Progress:
    """Prints `rebuild: N/M events` every 10% (or per batch on a terminal)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last_step = -1
        self.shown = False

    def __call__(self, position: int, head: int) -> None:
        step = position * 10 // head if head else 10
        if self.tty or step > self.last_step:
            self.last_step = step
            end = "\r" if self.tty else "\n"
            print(f"rebuild: {position:,}/{head:,} events", end=end, file=self.out, flush=True)
            self.shown = True

    def done(self) -> None:
        if self.tty and self.shown:
            print(file=self.out)


def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _worker_text(history: WorkerHistory) -> str:
    state = history.state
    lines = [f"worker {history.worker_id}"]
    if history.at is not None:
        lines[0] += f" as of {_time(history.at)}"
    if state is None:
        lines.append("  did not exist yet")
    else:
        lines.append(f"  user {state.user}, status {state.status.value}, version {history.version}")
        lines.append(f"  jobs: {', '.join(sorted(state.jobs)) or '-'}")
        lines.append(
            f"  connection: {state.sid or '-'}; rooms: {', '.join(sorted(state.rooms)) or '-'}"
        )
        lines.append(f"  holds: {', '.join(sorted(state.tasks)) or '-'}")
        if state.ended_at is not None:
            lines.append(f"  ended {_time(state.ended_at)}: {state.end_reason}")
    lines.append("timeline:")
    lines += [f"  {e.version:>5}  {_time(e.at)}  {e.summary}" for e in history.timeline]
    if history.claims:
        lines.append("claims:")
        for c in history.claims:
            outcome = c.outcome + (f" ({c.reason})" if c.reason else "")
            ended = f" at {_time(c.ended_at)}" if c.ended_at else ""
            lines.append(f"  task {c.task_id} attempt {c.attempt}: {outcome}{ended}")
    if history.caused:
        lines.append("requeues and failures its end caused:")
        for r in history.caused:
            lines.append(f"  task {r.task_id} attempt {r.attempt}: {r.outcome} ({r.reason})")
    return "\n".join(lines)


def _task_text(history: TaskHistory) -> str:
    state = history.state
    lines = [f"task {history.task_id}"]
    if state is not None:
        lines.append(f"  job {state.job_name}, room {state.room_id}, status {state.status.value}")
    lines.append("timeline:")
    lines += [f"  {e.version:>5}  {_time(e.at)}  {e.summary}" for e in history.timeline]
    lines.append("attempts:")
    for a in history.attempts:
        why = f" ({a.reason})" if a.reason else ""
        lines.append(f"  {a.attempt}: worker {a.worker_id}, {a.outcome}{why}")
    return "\n".join(lines)
