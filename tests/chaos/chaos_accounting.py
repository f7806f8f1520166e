"""The end-of-run accounting of a chaos test: the event log against what the submitter
and the workers saw.

- tasks: one per accepted submission (`duplicates`: extra tasks for one number,
  `missing`: an accepted submission without a task), none non-terminal (`stuck`),
  each with exactly one `TaskCompleted`;
- executions (a worker's start line for a task attempt): each attempt ran at most
  once; one that did not complete has a recorded release of that attempt
  (`TaskRequeued`, or `TaskFailed` by @system); a completed attempt was executed;
- answers: a 409 to a status report whose event is in the log (`409 on committed`),
  and a 5xx to a submit, claim or status report whose event the log holds with a
  time inside that request's send/receive window (`5xx on committed`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

TASK_PATH = re.compile(r"/v1/joblib/tasks/([0-9a-f-]{36})$")
REPORT_EVENT = {"running": "TaskStarted", "completed": "TaskCompleted", "failed": "TaskFailed"}
TERMINAL = ("completed", "failed", "cancelled")
END_EVENTS = ("TaskCompleted", "TaskFailed", "TaskCancelled")
SLACK = 0.005  # clock granularity between a client's time.time() and the host's now


@dataclass
class Figures:
    name: str
    faults: dict[str, int] = field(default_factory=dict)
    submitted: int = 0
    tasks: int = 0
    stuck: int = 0
    duplicates: int = 0
    missing: int = 0
    not_once: int = 0
    executions: int = 0
    rerun_attempts: int = 0
    unaccounted: int = 0
    completed_unrun: int = 0
    answers_409: int = 0
    committed_409: int = 0
    answers_5xx: int = 0
    committed_5xx: int = 0
    replayed: int = 0
    lease_requeues: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per phase of the run
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in self.faults.items())
        return (
            f"CHAOS {self.name}: {faults}; tasks {self.tasks} (submitted {self.submitted}), "
            f"stuck {self.stuck}, duplicates {self.duplicates}, missing {self.missing}, "
            f"not completed once {self.not_once}, executions {self.executions}, "
            f"unaccounted {self.unaccounted}, double runs {self.rerun_attempts}, "
            f"completed unrun {self.completed_unrun}, 409 {self.answers_409} "
            f"(on committed {self.committed_409}), 5xx {self.answers_5xx} "
            f"(on committed {self.committed_5xx}), replayed answers {self.replayed}, "
            f"claim-timeout requeues {self.lease_requeues}; "
            + " ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        )

    @property
    def clean(self) -> bool:
        return not self.problems


def timeline(events: list[Any], drained_at: float) -> str:
    parts = []
    for e in events:
        if drained_at and e.at.timestamp() > drained_at and "|drained|" not in parts:
            parts.append("|drained|")
        who = getattr(e, "worker_id", None)
        extra = getattr(e, "reason", None) or getattr(e, "by", None) or ""
        parts.append(f"{e.type}({(who or '-')[:8]},a{getattr(e, 'attempt', '-')},{extra})")
    return " ".join(parts)


def account(
    name: str,
    room: str,
    events: list[Any],
    worker_lines: list[dict[str, Any]],
    submit_records: list[dict[str, Any]],
    accepted: dict[int, str],
    statuses: dict[str, str],
    drained_at: float,
) -> Figures:
    """`statuses`: the REST view of the room's tasks when the drain ended at `drained_at`
    (time.time()); a task is stuck if the log holds no end for it by then."""
    f = Figures(name, submitted=len(accepted))
    per_task: dict[str, list[Any]] = defaultdict(list)
    for e in events:
        if e.type.startswith("Task") and hasattr(e, "task_id"):
            per_task[e.task_id].append(e)
    submitted = {e.task_id: e for e in events if e.type == "TaskSubmitted" and e.room_id == room}
    f.tasks = len(submitted)
    numbers = Counter(e.payload.get("n") for e in submitted.values())

    def problem(kind: str, task_ids: list[str]) -> None:
        if task_ids:
            shown = "; ".join(f"{t}: {timeline(per_task[t], drained_at)}" for t in task_ids[:4])
            f.problems.append(f"{kind} x{len(task_ids)}: {shown}")

    f.duplicates = sum(c - 1 for c in numbers.values() if c > 1)
    problem("duplicate", [t for t, e in submitted.items() if numbers[e.payload.get("n")] > 1])
    for n in [n for n, c in numbers.items() if c > 1][:4]:
        answers = [
            (x["status"] or x["error"], x.get("replayed")) for x in submit_records if x["n"] == n
        ]
        f.problems.append(f"submit answers of duplicated n={n}: {answers}")
    lost = [n for n in accepted if numbers[n] == 0]
    f.missing = len(lost)
    if lost:
        f.problems.append(f"missing: accepted submissions without a task, n={lost[:10]}")
    ends = {e.task_id: e.at.timestamp() for e in events if e.type in END_EVENTS}
    not_terminal = [t for t in submitted if ends.get(t, drained_at + 1) > drained_at]
    f.stuck = len(not_terminal)
    problem("stuck", not_terminal)
    # an end the log held 2 s before the drain stopped should be in the REST view too
    stale = [
        t for t in submitted if ends.get(t, drained_at) < drained_at - 2
        and statuses.get(t) not in TERMINAL
    ]  # fmt: skip
    problem("ended in the log but not in the REST view at the drain's end", stale)
    completions = Counter(e.task_id for e in events if e.type == "TaskCompleted")
    not_once = [t for t in submitted if completions[t] != 1]
    f.not_once = len(not_once)
    problem("not completed exactly once", not_once)

    # executions against recorded outcomes, per (task, attempt)
    starts = Counter((x["task"], x["attempt"]) for x in worker_lines if x["ev"] == "start")
    finished = {(x["task"], x["attempt"]) for x in worker_lines if x["ev"] == "end"}
    done = {(e.task_id, e.attempt) for e in events if e.type == "TaskCompleted"}
    released = {
        (e.task_id, e.attempt)
        for e in events
        if e.type == "TaskRequeued" or (e.type == "TaskFailed" and e.by == "@system")
    }
    f.executions = sum(starts.values())
    f.lease_requeues = sum(
        1 for e in events if e.type == "TaskRequeued" and e.reason == "claim-timeout"
    )
    reruns = [k[0] for k, c in starts.items() if c > 1]
    f.rerun_attempts = len(reruns)
    problem("attempt executed twice", reruns)
    unaccounted = [k[0] for k in starts if k not in done and k not in released]
    f.unaccounted = len(unaccounted)
    problem("execution without completion or release", unaccounted)
    unrun = [k[0] for k in done if k not in finished and k[0] in submitted]
    f.completed_unrun = len(unrun)
    problem("completed without an execution", unrun)

    _answers(f, events, per_task, worker_lines, submit_records, submitted)
    return f


def _answers(
    f: Figures,
    events: list[Any],
    per_task: dict[str, list[Any]],
    worker_lines: list[dict[str, Any]],
    submit_records: list[dict[str, Any]],
    submitted: dict[str, Any],
) -> None:
    def within(e: Any, x: dict[str, Any]) -> bool:
        return bool(x.get("t0")) and x["t0"] - SLACK <= e.at.timestamp() <= x["t1"] + SLACK

    claims = [e for e in events if e.type == "TaskClaimed"]
    by_number = defaultdict(list)
    for e in submitted.values():
        by_number[e.payload.get("n")].append(e)
    committed_5xx: list[str] = []
    committed_409: list[str] = []
    for x in worker_lines:
        if x["ev"] != "http":
            continue
        f.replayed += x.get("replayed") == "true"
        status, req = x["status"], x.get("req") or {}
        match = TASK_PATH.search(x["path"])
        report = x["method"] == "PATCH" and match is not None
        stored: list[Any] = []
        if report:
            wanted = REPORT_EVENT.get(req.get("status", ""))
            stored = [
                e
                for e in per_task[match.group(1)] if e.type == wanted
                and e.worker_id == req.get("worker_id") and e.attempt == req.get("attempt")
            ]  # fmt: skip
        elif x["method"] == "POST" and x["path"].endswith("/tasks/claim"):
            stored = [e for e in claims if e.worker_id == req.get("worker_id")]
        if status == 409 and report:
            f.answers_409 += 1
            if stored:
                committed_409.append(f"{x['path'][-36:]} {req} -> {x.get('answer')}")
        if status >= 500:
            f.answers_5xx += 1
            if any(within(e, x) for e in stored):
                committed_5xx.append(f"{x['method']} {x['path']} {req} -> {status}")
    for x in submit_records:
        f.replayed += x.get("replayed") == "true"
        if x["status"] is not None and x["status"] >= 500:
            f.answers_5xx += 1
            if any(within(e, x) for e in by_number[x["n"]]):
                committed_5xx.append(f"submit n={x['n']} key={x['key']} -> {x['status']}")
    f.committed_409, f.committed_5xx = len(committed_409), len(committed_5xx)
    if committed_409:
        f.problems.append(f"409 on committed x{len(committed_409)}: {committed_409[:4]}")
    if committed_5xx:
        f.problems.append(f"5xx on committed x{len(committed_5xx)}: {committed_5xx[:4]}")
