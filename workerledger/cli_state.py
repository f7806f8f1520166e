"""`workerledger status | workers | tasks | jobs`: the state, from the shell.

Each reads a running host (`--url`, with `--token` or WORKERLEDGER_TOKEN) through its
REST API, or the database directly (`--database-url`, default as for `history`),
which also works while no host runs. Text tables shorten ids to their first 8
characters (`history` takes such a prefix); `--json` prints whole records.

Over REST only what the 0.1.7 listing routes give is shown: live workers (no state or
user), tasks per room (`--room` is required), jobs visible in one room (`@global`
unless `--room`); counts by worker state and every room's tasks need the database.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any
from urllib.parse import quote

from workerledger.adapters.projection import Projection
from workerledger.adapters.rest.context import job_listed, visible_rooms
from workerledger.adapters.store.url import scheme_of
from workerledger.core import JobState, TaskState, TaskStatus, WorkerState, WorkerStatus

from .cli_config import (
    add_database_option,
    database_url,
    describe_database,
    load_settings,
    open_database,
)
from .cli_errors import ConfigError
from .cli_sources import HostApi, read_view

SHORT = 8  # characters of an id in text tables
GLOBAL_ROOM = "@global"
DEFAULT_TASK_LIMIT = 50
SETTINGS_THAT_MATTER = (
    "disconnect_grace_seconds",
    "heartbeat_timeout_seconds",
    "claim_timeout_seconds",
    "sweep_interval_seconds",
    "allowed_categories",
)


@dataclass
class WorkerRow:
    id: str
    status: str | None  # None over REST: the listing gives live workers only
    user: str | None
    job_count: int
    holds: int | None  # tasks it holds (claimed or running)
    last_heartbeat: str
    end_reason: str | None = None
    draining: bool = False  # asked to drain: claims nothing, leaves when its tasks end


@dataclass
class TaskRow:
    id: str
    job_name: str
    room_id: str
    status: str
    attempt: int
    worker_id: str | None
    queue_position: int | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    error: str | None


@dataclass
class JobRow:
    full_name: str
    room_id: str
    category: str
    name: str
    workers: list[str]
    pending: int | None  # None over REST
    on_worker_lost: str | None  # None over REST


def add_commands(subparsers: Any) -> None:
    source = argparse.ArgumentParser(add_help=False)
    where = source.add_argument_group("where to read (one of)").add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        metavar="URL",
        help="a running host, e.g. http://127.0.0.1:8000: read its REST API",
    )
    add_database_option(where)
    source.add_argument("--token", help="bearer token for --url (default: $WORKERLEDGER_TOKEN)")
    source.add_argument("--json", action="store_true", help="print JSON instead of text")
    database_note = "Without --url, reads the database directly (also while no host runs)."

    p = subparsers.add_parser(
        "status",
        parents=[source],
        help="the host or database, its settings, workers by state and tasks by status",
        description="Show where the state lives, the settings that matter and counts of "
        f"workers by state and tasks by status. {database_note} Over --url: the host's "
        "health, live workers and, with --room, that room's tasks by status.",
    )
    p.add_argument("--room", help="with --url: count the tasks of this room")
    p.set_defaults(func=_status)

    p = subparsers.add_parser(
        "workers",
        parents=[source],
        help="list workers (live ones unless --all)",
        description=f"List workers, oldest first. {database_note}",
    )
    p.add_argument("--all", action="store_true", help="include ended workers (database only)")
    p.add_argument(
        "--status",
        choices=[s.value for s in WorkerStatus],
        help="only workers in this state (database only)",
    )
    p.set_defaults(func=_workers)

    p = subparsers.add_parser(
        "tasks",
        parents=[source],
        help="list tasks, newest last; filter by room, status, worker",
        description="List tasks in submission order, the newest --limit of them. "
        f"{database_note} Over --url, --room is required (the API lists tasks per room).",
    )
    p.add_argument("--room", help="only tasks submitted to this room")
    p.add_argument("--status", choices=[s.value for s in TaskStatus], help="only this status")
    p.add_argument("--worker", metavar="ID", help="only tasks of this worker (id or prefix)")
    p.add_argument(
        "--limit",
        type=_count,
        default=DEFAULT_TASK_LIMIT,
        help=f"show the newest N (default {DEFAULT_TASK_LIMIT}; 0: all)",
    )
    p.set_defaults(func=_tasks)

    p = subparsers.add_parser(
        "jobs",
        parents=[source],
        help="list jobs with their workers and pending tasks",
        description="List the jobs workers serve (0.1.7's rule: a job without workers and "
        f"pending tasks is hidden unless --all). {database_note} Over --url: the jobs "
        "visible in --room (default @global).",
    )
    p.add_argument("--room", help="only jobs visible in this room (its own, @global, @internal)")
    p.add_argument("--all", action="store_true", help="include hidden jobs (database only)")
    p.set_defaults(func=_jobs)


def _segment(room: str) -> str:
    """A room id as one URL path segment."""
    return quote(room, safe="@")


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    return int(text)


# --- reading -----------------------------------------------------------------------


def _with_source(
    args: argparse.Namespace,
    host: Callable[[HostApi], int],
    database: Callable[[Projection, str], int],
) -> int:
    if args.url:
        api = HostApi(args.url, args.token)
        try:
            return host(api)
        finally:
            api.close()
    source = database_url(args)
    store = open_database(source)
    if scheme_of(source.url) == "memory":
        store.close()
        raise ConfigError(
            f"{source.source}: memory:// lives inside the host process: read it with --url"
        )
    try:
        return database(read_view(store), describe_database(source.url))
    finally:
        store.close()


def _database_only(args: argparse.Namespace, *flags: str) -> None:
    for flag in flags:
        if getattr(args, flag.removeprefix("--"), None):
            raise ConfigError(
                f"{flag} needs the database (the host's API does not give it): "
                "pass --database-url instead of --url"
            )


def _workers(args: argparse.Namespace) -> int:
    def host(api: HostApi) -> int:
        _database_only(args, "--all", "--status")
        rows = [
            WorkerRow(
                w["id"],
                None,
                None,
                w["job_count"],
                None,
                w["last_heartbeat"],
                draining=bool(w.get("draining")),
            )
            for w in api.pages("workers")
        ]
        return _print_rows(args, list(reversed(rows)), len(rows), _worker_table)

    def database(view: Projection, _: str) -> int:
        workers = [view.workers[i] for i in view.registration_order()]
        if args.status:
            workers = [w for w in workers if w.status.value == args.status]
        elif not args.all:
            workers = [w for w in workers if not w.is_ended]
        rows = [_worker_row(w) for w in workers]
        return _print_rows(args, rows, len(rows), _worker_table)

    return _with_source(args, host, database)


def _tasks(args: argparse.Namespace) -> int:
    def host(api: HostApi) -> int:
        if not args.room:
            raise ConfigError(
                "tasks --url needs --room (the host's API lists tasks per room); "
                "every room's tasks: --database-url"
            )
        path = f"rooms/{_segment(args.room)}/tasks"  # newest first
        found: Iterable[dict[str, Any]] = api.pages(path, status=args.status)
        if args.worker:
            found = [t for t in found if (t.get("worker_id") or "").startswith(args.worker)]
            total = len(found)
        else:
            total = api.total(path, status=args.status)
        items = list(islice(found, args.limit or None))[::-1]
        rows = [_task_row_of(item) for item in items]
        return _print_rows(args, rows, total, _task_table)

    def database(view: Projection, _: str) -> int:
        order = view.submission_positions()
        tasks = sorted(view.tasks.values(), key=lambda t: (order.get(t.id, 0), t.id))
        tasks = [t for t in tasks if _task_matches(t, args)]
        total = len(tasks)
        shown = tasks[-args.limit :] if args.limit else tasks
        rows = [_task_row(t, view.queue_position(t.id)) for t in shown]
        return _print_rows(args, rows, total, _task_table)

    return _with_source(args, host, database)


def _task_matches(task: TaskState, args: argparse.Namespace) -> bool:
    return (
        (not args.room or task.room_id == args.room)
        and (not args.status or task.status.value == args.status)
        and (not args.worker or (task.worker_id or "").startswith(args.worker))
    )


def _jobs(args: argparse.Namespace) -> int:
    def host(api: HostApi) -> int:
        _database_only(args, "--all")
        room = args.room or GLOBAL_ROOM
        rows = [
            JobRow(
                j["full_name"],
                j["full_name"].split(":", 1)[0],
                j["category"],
                j["name"],
                list(j["workers"]),
                None,
                None,
            )
            for j in api.pages(f"rooms/{_segment(room)}/jobs")
        ]
        return _print_rows(args, rows, len(rows), _job_table)

    def database(view: Projection, _: str) -> int:
        rooms = visible_rooms(args.room) if args.room else None
        jobs = sorted(view.jobs.values(), key=lambda j: j.full_name)
        jobs = [
            job
            for job in jobs
            if (rooms is None or job.room_id in rooms) and (args.all or job_listed(view, job))
        ]
        rows = [_job_row(job, view.pending_count(job.full_name)) for job in jobs]
        return _print_rows(args, rows, len(rows), _job_table)

    return _with_source(args, host, database)


def _status(args: argparse.Namespace) -> int:
    def host(api: HostApi) -> int:
        healthy = api.healthy()
        live = api.total("workers")
        room = args.room or GLOBAL_ROOM
        jobs = api.total(f"rooms/{_segment(room)}/jobs")
        report: dict[str, Any] = {
            "host": api.url,
            "healthy": healthy,
            "workers": {"live": live},
            "jobs": {"room": room, "listed": jobs},
            "settings": None,
        }
        if args.room:
            path = f"rooms/{_segment(args.room)}/tasks"
            report["room"] = args.room
            report["tasks"] = {s.value: api.total(path, status=s.value) for s in TaskStatus}
        if args.json:
            return _print_json(report)
        print(f"host: {api.url} (health check: {'ok' if healthy else 'FAILING'})")
        print(f"workers: {live} live (online or disconnected; states need --database-url)")
        print(f"jobs: {jobs} listed in {room}")
        if args.room:
            print(f"tasks in room {args.room}: {_counts(report['tasks'])}")
        else:
            print("tasks: per room over --url (--room ROOM), or every room with --database-url")
        print(
            "settings: not shown by the host's API; `serve` prints those that differ from "
            "the defaults when it starts"
        )
        return 0

    def database(view: Projection, where: str) -> int:
        settings = load_settings()
        seen_workers = Counter(w.status.value for w in view.workers.values())
        seen_tasks = Counter(t.status.value for t in view.tasks.values())
        workers = {s.value: seen_workers.get(s.value, 0) for s in WorkerStatus}
        tasks = {s.value: seen_tasks.get(s.value, 0) for s in TaskStatus}
        listed = sum(job_listed(view, job) for job in view.jobs.values())
        shown: dict[str, Any] = {
            name.upper(): getattr(settings, name) for name in SETTINGS_THAT_MATTER
        }
        shown["ALLOWED_CATEGORIES"] = ",".join(settings.allowed_categories)
        tokens = len(settings.auth_tokens or {})
        if args.json:
            return _print_json({
                "database": where,
                "log_position": view.position,
                "workers": workers,
                "tasks": tasks,
                "jobs": {"listed": listed, "total": len(view.jobs)},
                "settings": shown | {"AUTH_TOKENS": tokens},
            })  # fmt: skip
        print(f"database: {where} (log at position {view.position})")
        print(f"workers: {_counts(workers)}")
        print(f"tasks: {_counts(tasks)}")
        print(f"jobs: {listed} listed, {len(view.jobs)} in all")
        print("settings (this environment's): " + ", ".join(
            f"{name}={_number(value)}" for name, value in shown.items()
        ))  # fmt: skip
        if tokens:
            print(f"  AUTH_TOKENS: {tokens} token(s)")
        else:
            print("  AUTH_TOKENS unset: `serve` makes an admin token (see ADMIN_TOKEN_FILE)")
        return 0

    return _with_source(args, host, database)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- rows and output ---------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _worker_row(worker: WorkerState) -> WorkerRow:
    return WorkerRow(
        id=worker.id,
        status=worker.status.value,
        user=worker.user,
        job_count=len(worker.jobs),
        holds=len(worker.tasks),
        last_heartbeat=worker.last_heartbeat.astimezone(UTC).isoformat(),
        end_reason=worker.end_reason,
        draining=worker.draining and not worker.is_ended,
    )


def _task_row(task: TaskState, queue_position: int | None) -> TaskRow:
    return TaskRow(
        id=task.id,
        job_name=task.job_name,
        room_id=task.room_id,
        status=task.status.value,
        attempt=task.attempt,
        worker_id=task.worker_id,
        queue_position=queue_position if task.status is TaskStatus.PENDING else None,
        created_at=task.created_at.astimezone(UTC).isoformat(),
        started_at=_time(task.started_at),
        completed_at=_time(task.completed_at),
        error=task.error,
    )


def _task_row_of(item: dict[str, Any]) -> TaskRow:
    """A row from the REST answer (the wire's TaskResponse, payload left out)."""
    values: dict[str, Any] = {name: item.get(name) for name in TaskRow.__dataclass_fields__}
    return TaskRow(**values)


def _job_row(job: JobState, pending: int) -> JobRow:
    return JobRow(
        full_name=job.full_name,
        room_id=job.room_id,
        category=job.category,
        name=job.name,
        workers=sorted(job.workers),
        pending=pending,
        on_worker_lost=job.on_worker_lost.value,
    )


def _print_json(value: Any) -> int:
    print(json.dumps(value, indent=2))
    return 0


def _print_rows(
    args: argparse.Namespace,
    rows: Sequence[Any],
    total: int,
    table: Callable[[Sequence[Any]], list[list[str]]],
) -> int:
    if args.json:
        return _print_json({"items": [asdict(row) for row in rows], "total": total})
    if not rows:
        print("(none)")
        return 0
    lines = table(rows)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    if total > len(rows):
        print(f"(the newest {len(rows)} of {total}; --limit 0 shows all)")
    return 0


def _short(value: str | None) -> str:
    return value[:SHORT] if value else "-"


def _clock(value: str | None) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM:SS` (UTC)."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _worker_table(rows: Sequence[WorkerRow]) -> list[list[str]]:
    lines = [["WORKER", "STATE", "USER", "JOBS", "HOLDS", "LAST HEARTBEAT (UTC)"]]
    for r in rows:
        lines.append(
            [
                _short(r.id),
                (r.status or "live") + (", draining" if r.draining else ""),
                r.user or "-",
                str(r.job_count),
                "-" if r.holds is None else str(r.holds),
                _clock(r.last_heartbeat),
            ]
        )
    return lines


def _task_table(rows: Sequence[TaskRow]) -> list[list[str]]:
    lines = [["TASK", "STATUS", "ATTEMPT", "WORKER", "ROOM", "JOB", "CREATED (UTC)"]]
    for r in rows:
        status = r.status + (f" #{r.queue_position}" if r.queue_position is not None else "")
        lines.append(
            [
                _short(r.id),
                status,
                str(r.attempt),
                _short(r.worker_id),
                r.room_id,
                r.job_name,
                _clock(r.created_at),
            ]
        )
    return lines


def _job_table(rows: Sequence[JobRow]) -> list[list[str]]:
    lines = [["JOB", "WORKERS", "PENDING", "ON WORKER LOST"]]
    for r in rows:
        lines.append(
            [
                r.full_name,
                str(len(r.workers)),
                "-" if r.pending is None else str(r.pending),
                r.on_worker_lost or "-",
            ]
        )
    return lines
