"""One row of the fault matrix: a real SDK worker behind a `LosingTransport` that loses
the answers of one write route, N tasks, and the accounting of what became of them.

A row never asserts; it measures (the tests assert, and the same rows measured the
SDK and host before issue 18). Waiting is bounded by `SETTLE_SECONDS`; what is not
terminal by then counts as stuck.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from workerledger.client import ClaimedTask, Extension, JobManager

from .fault_host import PREFIX, TOKEN, FaultHost
from .fault_transport import LosingTransport, Occurrences, Rule, every_other, first

TASKS = 5
SETTLE_SECONDS = 10.0  # > claim lease + sweep interval; bound, not a measured time
TASK_PATH = r"/tasks/[0-9a-f-]{36}$"
WORKER_PATH = r"/workers/[0-9a-f-]{36}$"
GIVE_UP = re.compile(r"given up|could not remove|report refused|rejected as stale|not accepted")
TERMINAL = ("completed", "failed", "cancelled")


def _report(status: str) -> Callable[[Occurrences], Rule]:
    return lambda occ: Rule("PATCH", TASK_PATH, body=rf'"status": ?"{status}"', occurrences=occ)


ROUTES: dict[str, Callable[[Occurrences], Rule]] = {
    "submit": lambda occ: Rule("POST", r"/rooms/[^/]+/tasks/", occurrences=occ),
    # only claims that took a task: losing an empty claim's answer costs nothing
    "claim": lambda occ: Rule("POST", r"/tasks/claim$", answer=r'"task": ?\{', occurrences=occ),
    "running": _report("running"),
    "completed": _report("completed"),
    "failed": _report("failed"),
    "heartbeat": lambda occ: Rule("PATCH", WORKER_PATH, occurrences=occ),
    "delete": lambda occ: Rule("DELETE", WORKER_PATH, occurrences=occ),
}
VARIANTS: dict[str, Occurrences] = {"first": first, "every-other": every_other}


class Step(Extension):
    category: ClassVar[str] = "modifiers"
    n: int


@dataclass
class Row:
    route: str
    variant: str
    submitted: int = 0
    tasks: int = 0  # tasks in the room: more than submitted means duplicates
    executions: int = 0
    max_runs: int = 0  # most executions of one task
    stuck: int = 0  # not terminal after SETTLE_SECONDS
    wrong: int = 0  # terminal, but not in the expected status
    reclaims: int = 0  # claims beyond each task's first (a lease expired, a worker lost)
    cancelled_claims: int = 0  # worker history: claims that ended cancelled
    lost: int = 0  # answers the transport lost
    replays: int = 0  # answers marked Idempotent-Replayed
    conflicts: int = 0  # 409 answers the SDK got (a refused repeat of a stored report)
    removed: bool = False  # the SDK counted its worker as removed on leaving
    give_ups: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.tasks - self.submitted


class Runs:
    """The `execute` of the row's worker: counts executions per task id."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.count: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, task: ClaimedTask[Any]) -> None:
        with self.lock:
            self.count[task.task_id] += 1
        if self.fail:
            raise RuntimeError(f"step {task.extension.n} fails on purpose")


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def new_manager(url: str, transport: httpx.BaseTransport, **options: Any) -> JobManager:
    return JobManager(url, TOKEN, transport=transport, **options)


def run_row(host: FaultHost, route: str, variant: str) -> Row:
    row = Row(route, variant)
    room = f"f{uuid.uuid4().hex[:10]}"
    rule = ROUTES[route](VARIANTS[variant])
    worker_net = LosingTransport([] if route == "submit" else [rule])
    submit_net = LosingTransport([rule] if route == "submit" else [])
    runs = Runs(fail=route == "failed")
    logger, messages = logging.getLogger("workerledger.client"), Messages()
    level = logger.level
    logger.addHandler(messages)
    logger.setLevel(logging.INFO)
    beat = 0.2 if route == "heartbeat" else 1.0
    options = {"polling_interval": 0.2, "request_timeout": 5.0, "report_timeout": 15.0}
    try:
        with contextlib.ExitStack() as stack:
            worker = stack.enter_context(
                new_manager(host.url, worker_net, execute=runs, heartbeat_interval=beat, **options)
            )
            submitter = stack.enter_context(new_manager(host.url, submit_net, sio=False, **options))
            worker.register(Step, room=room)
            worker_id = worker.worker_id
            ids = [submitter.submit(Step(n=n), room, job_room=room) for n in range(TASKS)]
            row.submitted = len(set(ids))
            tasks = _settle(host, room)
            worker.disconnect()  # under the faults too (the delete row)
    finally:
        logger.removeHandler(messages)
        logger.setLevel(level)
    expected = "failed" if route == "failed" else "completed"
    row.tasks = len(tasks)
    row.stuck = sum(1 for t in tasks if t["status"] not in TERMINAL)
    row.wrong = sum(1 for t in tasks if t["status"] in TERMINAL and t["status"] != expected)
    row.reclaims = sum(max(0, (t.get("attempt") or 0) - 1) for t in tasks)
    row.executions = sum(runs.count.values())
    row.max_runs = max(runs.count.values(), default=0)
    history = host.get(f"/workers/{worker_id}/history") or {"claims": []}
    row.cancelled_claims = sum(1 for c in history["claims"] if c["outcome"] == "cancelled")
    row.lost = rule.lost
    exchanges = worker_net.exchanges + submit_net.exchanges
    row.replays = sum(1 for x in exchanges if x.replayed)
    row.conflicts = sum(1 for x in exchanges if x.status == 409)
    row.removed = any("worker removed" in m or "already gone" in m for m in messages.lines)
    row.give_ups = [m for m in messages.lines if GIVE_UP.search(m)]
    return row


def _settle(host: FaultHost, room: str) -> list[dict[str, Any]]:
    """The room's tasks once all are terminal, or as they are after SETTLE_SECONDS
    (each pass long-polls the first unfinished task until it ends or time is up)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=host.url + PREFIX, headers=headers, timeout=30) as http:
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            tasks: list[dict[str, Any]] = http.get(f"/rooms/{room}/tasks?limit=500").json()["items"]
            open_ = [t for t in tasks if t["status"] not in TERMINAL]
            left = deadline - time.monotonic()
            if not open_ or left <= 0:
                return tasks
            wait = {"Prefer": f"wait={max(1, int(left))}"}
            http.get(f"/tasks/{open_[0]['id']}", headers=wait)


def format_matrix(rows: list[Row]) -> list[str]:
    """One line per row: tasks in the room, duplicates, executions (and most of one
    task), stuck, wrong status, re-claims, cancelled claims, answers lost, replays, 409s,
    give-ups logged by the SDK, and whether it counted its worker removed on leaving."""
    lines = [
        "route      variant      tasks dup exec max stuck wrong reclaim cancelled lost replay "
        "409 give-up removed"
    ]
    for r in rows:
        lines.append(
            f"{r.route:<10} {r.variant:<12} {r.tasks:>5} {r.duplicates:>3} {r.executions:>4} "
            f"{r.max_runs:>3} {r.stuck:>5} {r.wrong:>5} {r.reclaims:>7} {r.cancelled_claims:>9} "
            f"{r.lost:>4} "
            f"{r.replays:>6} {r.conflicts:>3} {len(r.give_ups):>7} "
            f"{'yes' if r.removed else 'no':>7}"
        )
    return lines
