"""Side by side: workerledger's host against zndraw-joblib 0.1.7, same load generator.

Workloads (bench/loadgen.py), each measured on a fresh host process with a fresh SQLite
file, alternating zndraw-joblib / workerledger (A B A B ...) for every run:

(a) throughput: 1, 4 and 16 workers drain 2,000 pre-submitted no-op tasks through
    claim -> PATCH running -> PATCH completed; p50/p99 claim latency; every task
    completed exactly once.
(b) DELETE /workers/{id} for a worker holding 1, 100 and 1,000 claimed tasks
    (zndraw-joblib fails them, workerledger requeues them).
(c) death to release: a worker process holding a claimed task is SIGKILLed. For
    zndraw-joblib the sweeper bound at default settings is reported from its formula
    (waiting takes minutes) and measured at short settings; workerledger is measured on
    its Socket.IO disconnect path.

`python -m bench.bench_peer [--quick]` writes bench/results/peer.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shlex
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import peer_zndraw
from bench.loadgen import (
    DeathResult,
    DeleteResult,
    ServerProcess,
    Target,
    ThroughputResult,
    free_port,
    run_death,
    run_delete,
    run_throughput,
)
from bench.report import fmt, machine_description, write_results

TOPIC = "peer"
ZNDRAW = "zndraw-joblib"
WORKERLEDGER = "workerledger"
TOKEN = "bench-token"
REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work"
ZNDRAW_DEFAULT_TIMEOUT = 60
ZNDRAW_DEFAULT_INTERVAL = 30
SDK_HEARTBEAT = 30


@dataclass
class Plan:
    tasks: int
    workers: list[int]
    holding: list[int]
    runs: int
    kills: int
    short_timeout: int
    short_interval: int
    short_heartbeat: float
    grace: float
    default_grace: bool
    workloads: list[str]
    systems: list[str]


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_peer", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, same shape")
    parser.add_argument("--runs", type=int, help="runs per system (default 3)")
    parser.add_argument("--tasks", type=int, help="tasks to drain in (a) (default 2000)")
    parser.add_argument("--workers", type=int, nargs="+", help="worker counts for (a)")
    parser.add_argument("--holding", type=int, nargs="+", help="tasks held in (b)")
    parser.add_argument("--kills", type=int, help="SIGKILLs per run in (c)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["throughput", "delete", "death"],
        help="run only these workloads",
    )
    parser.add_argument(
        "--systems", nargs="+", choices=[ZNDRAW, WORKERLEDGER], help="default: both"
    )
    parser.add_argument("--short-timeout", type=int, default=2, help="zndraw timeout in (c)")
    parser.add_argument("--short-interval", type=int, default=1, help="zndraw sweep in (c)")
    parser.add_argument(
        "--short-heartbeat", type=float, default=0.5, help="heartbeat of the zndraw worker in (c)"
    )
    parser.add_argument(
        "--grace", type=float, default=0.0, help="WORKERLEDGER_DISCONNECT_GRACE_SECONDS in (c)"
    )
    parser.add_argument(
        "--no-default-grace",
        action="store_true",
        help="skip (c) for workerledger at its default disconnect grace",
    )
    parser.add_argument("--results-dir", type=Path, help="default: bench/results")
    args = parser.parse_args(argv)
    quick = args.quick
    plan = Plan(
        tasks=args.tasks or (300 if quick else 2000),
        workers=args.workers or [1, 4, 16],
        holding=args.holding or ([1, 100, 300] if quick else [1, 100, 1000]),
        runs=args.runs or 3,
        kills=args.kills or (1 if quick else 3),
        short_timeout=args.short_timeout,
        short_interval=args.short_interval,
        short_heartbeat=args.short_heartbeat,
        grace=args.grace,
        default_grace=not args.no_default_grace,
        workloads=args.only or ["throughput", "delete", "death"],
        systems=args.systems or [ZNDRAW, WORKERLEDGER],
    )
    return args, plan


# --------------------------------------------------------------------------- hosts


def workerledger_available() -> str | None:
    """None when workerledger's host can be served, else why not."""
    if importlib.util.find_spec("workerledger") is None:
        return "workerledger is not installed"
    if not (REPO / "host_fastapi" / "app.py").exists():
        return "workerledger's host (host_fastapi/app.py) does not exist yet"
    return None


def log_path(system: str, label: str) -> Path:
    folder = WORK / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"peer-{system}-{label}.log"


@contextmanager
def serve_workerledger(
    database: Path,
    label: str,
    extra: dict[str, str] | None = None,
    *,
    python: str | None = None,
    prefix: list[str] | None = None,
) -> Iterator[Target]:
    """`python` serves another installation (e.g. a venv of an older commit); `prefix`
    goes before the command (the pinned bench's `taskset -c 0`)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERLEDGER_")}
    env.update(
        WORKERLEDGER_DATABASE_URL=f"sqlite:///{database}",
        WORKERLEDGER_AUTH_TOKENS=json.dumps({TOKEN: {"user": "bench", "superuser": True}}),
    )
    env.update(extra or {})
    command = [*(prefix or []), python or sys.executable, "-m", "workerledger", "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    path = log_path(WORKERLEDGER, label)
    path.write_bytes(b"")
    server = ServerProcess(
        name=WORKERLEDGER,
        command=command,
        env=env,
        base_url=f"http://127.0.0.1:{port}",
        log_path=path,
        cwd=database.parent,
    )
    with server:
        pid = server.process.pid if server.process else None
        yield Target(WORKERLEDGER, server.base_url, TOKEN, socketio=True, pid=pid)


@contextmanager
def serve_zndraw(
    database: Path,
    label: str,
    extra: dict[str, str] | None = None,
    *,
    prefix: list[str] | None = None,
) -> Iterator[Target]:
    path = log_path(ZNDRAW, label)
    path.write_bytes(b"")
    with peer_zndraw.start_host(database, env=extra, log_path=path, prefix=prefix) as server:
        pid = server.process.pid if server.process else None
        yield Target(ZNDRAW, server.base_url, TOKEN, socketio=False, pid=pid)


@contextmanager
def fresh_host(
    system: str,
    label: str,
    extra: dict[str, str] | None = None,
    *,
    python: str | None = None,
    prefix: list[str] | None = None,
) -> Iterator[Target]:
    """A new host process on a new SQLite file, removed afterwards. `python` and
    `prefix` as for serve_workerledger (`python` only applies to workerledger)."""
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK, prefix=f"run-{system}-") as folder:
        database = Path(folder) / f"{system}.db"
        if system == ZNDRAW:
            with serve_zndraw(database, label, extra, prefix=prefix) as target:
                yield target
        else:
            with serve_workerledger(database, label, extra, python=python, prefix=prefix) as target:
                yield target


# --------------------------------------------------------------------------- runs


@dataclass
class Sample:
    system: str
    workload: str
    size: int
    run: int
    value: float
    extra: dict[str, Any]


class Runner:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.samples: list[Sample] = []
        self.failures: list[str] = []

    def say(self, message: str) -> None:
        print(f"[peer] {message}", flush=True)

    def each_run(
        self,
        workload: str,
        size: int,
        measure: Callable[[str, Target], Sample],
        extra: Callable[[str], dict[str, str]] | None = None,
        systems: list[str] | None = None,
    ) -> None:
        for run in range(1, self.plan.runs + 1):
            for system in systems or self.plan.systems:  # A B A B ...
                label = f"{workload}-{size}-run{run}"
                started = time.perf_counter()
                try:
                    env = extra(system) if extra else None
                    with fresh_host(system, label, env) as target:
                        sample = measure(system, target)
                except Exception as error:
                    message = f"{workload} {size} run {run} {system}: {error!r}"
                    self.failures.append(message)
                    self.say("FAILED " + message)
                    traceback.print_exc()
                    path = log_path(system, label)
                    tail = (
                        path.read_text(errors="replace").splitlines()[-15:] if path.exists() else []
                    )
                    for line in tail:
                        print(f"    {system} log: {line}", flush=True)
                    continue
                sample.run = run
                self.samples.append(sample)
                took = time.perf_counter() - started
                self.say(f"{label} {system}: {describe(sample)} ({took:.1f} s)")

    def throughput(self, workers: int) -> None:
        def measure(system: str, target: Target) -> Sample:
            result: ThroughputResult = asyncio.run(
                run_throughput(target, workers=workers, tasks=self.plan.tasks)
            )
            return Sample(
                system,
                "throughput",
                workers,
                0,
                result.tasks_per_second,
                {
                    "p50_ms": result.claim_p50_ms,
                    "p99_ms": result.claim_p99_ms,
                    "exactly_once": result.exactly_once,
                    "check": result.check_detail,
                    "errors": result.errors[:5],
                    "empty_claims": result.empty_claims,
                    "submit_per_s": result.tasks / result.submit_seconds,
                    "seconds": result.seconds,
                },
            )

        self.each_run("throughput", workers, measure)

    def delete(self, holding: int) -> None:
        def measure(system: str, target: Target) -> Sample:
            result: DeleteResult = asyncio.run(run_delete(target, holding=holding))
            return Sample(
                system,
                "delete",
                holding,
                0,
                result.seconds * 1000,
                {"statuses": result.statuses_after},
            )

        self.each_run("delete", holding, measure)

    def death(self) -> None:
        plan = self.plan

        def extra(system: str) -> dict[str, str]:
            if system == ZNDRAW:
                return {
                    "ZNDRAW_JOBLIB_WORKER_TIMEOUT_SECONDS": str(plan.short_timeout),
                    "ZNDRAW_JOBLIB_SWEEPER_INTERVAL_SECONDS": str(plan.short_interval),
                }
            return {"WORKERLEDGER_DISCONNECT_GRACE_SECONDS": str(plan.grace)}

        def measure(system: str, target: Target, workload: str = "death") -> Sample:
            results: list[DeathResult] = []
            for _ in range(plan.kills if workload == "death" else 1):
                deadline = 10.0 + plan.short_timeout + plan.short_interval + plan.grace
                if workload == "death-grace":
                    deadline = 120.0
                beat = plan.short_heartbeat if system == ZNDRAW else None
                results.append(
                    asyncio.run(
                        run_death(target, heartbeat_interval=beat, deadline_seconds=deadline)
                    )
                )
            values = [r.seconds * 1000 for r in results]
            return Sample(
                system,
                workload,
                0,
                0,
                statistics.median(values),
                {
                    "kills_ms": values,
                    "since_beat_ms": [
                        r.since_last_heartbeat * 1000
                        for r in results
                        if r.since_last_heartbeat is not None
                    ],
                    "observed_by": sorted({r.observed_by for r in results}),
                    "status_after": sorted({r.status_after for r in results}),
                },
            )

        self.each_run("death", 0, measure, extra)
        if WORKERLEDGER in plan.systems and plan.default_grace:
            self.each_run(
                "death-grace",
                0,
                lambda system, target: measure(system, target, "death-grace"),
                systems=[WORKERLEDGER],
            )


def default_grace() -> str:
    """workerledger's default WORKERLEDGER_DISCONNECT_GRACE_SECONDS, for the notes."""
    try:
        from workerledger.host_fastapi.settings import Settings

        return f"{Settings.model_fields['disconnect_grace_seconds'].default:g} s"
    except Exception:
        return "(unknown)"


def describe(sample: Sample) -> str:
    if sample.workload == "throughput":
        x = sample.extra
        once = "exactly once" if x["exactly_once"] else "NOT exactly once: " + x["check"]
        return (
            f"{sample.value:.1f} tasks/s, claim p50 {x['p50_ms']:.1f} ms "
            f"p99 {x['p99_ms']:.1f} ms, {once}"
        )
    if sample.workload == "delete":
        return f"DELETE {sample.value:.1f} ms, tasks after: {sample.extra['statuses']}"
    kills = ", ".join(f"{v:.1f}" for v in sample.extra["kills_ms"])
    return f"death -> release {kills} ms ({', '.join(sample.extra['status_after'])})"


# --------------------------------------------------------------------------- rows


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


class Report:
    """Turns samples into rows, a side-by-side comparison and goal verdicts."""

    def __init__(self, runner: Runner) -> None:
        self.plan = runner.plan
        self.samples = runner.samples
        self.rows: list[dict[str, Any]] = []
        self.comparison: list[dict[str, Any]] = []
        self.ratios: dict[str, float] = {}

    def values(
        self, system: str, workload: str, size: int, pick: Callable[[Sample], list[float]]
    ) -> list[float]:
        found: list[float] = []
        for s in self.samples:
            if s.system == system and s.workload == workload and s.size == size:
                found.extend(pick(s))
        return found

    def compare(
        self,
        key: str,
        figure: str,
        unit: str,
        better: str,
        workload: str,
        size: int,
        pick: Callable[[Sample], list[float]],
        notes: dict[str, str],
    ) -> None:
        entry: dict[str, Any] = {"figure": figure, "unit": unit, "better": better}
        medians: dict[str, float] = {}
        for system in (ZNDRAW, WORKERLEDGER):
            values = self.values(system, workload, size, pick)
            if not values:
                continue
            stats = spread(values)
            medians[system] = stats["median"]
            entry[system] = stats
            self.rows.append(
                {
                    "figure": f"{figure} — {system}",
                    "value": stats["median"],
                    "unit": unit,
                    "note": notes.get(system, ""),
                    "min": stats["min"],
                    "max": stats["max"],
                    "runs": values,
                }
            )
        if len(medians) == 2 and medians[ZNDRAW] > 0:
            ratio = medians[WORKERLEDGER] / medians[ZNDRAW]
            entry["ratio"] = ratio
            self.ratios[key] = ratio
            self.rows.append(
                {
                    "figure": f"{figure} — ratio workerledger / zndraw-joblib",
                    "value": ratio,
                    "unit": "x",
                    "note": f"of the medians; {better} is better",
                }
            )
        self.comparison.append(entry)

    def build(self) -> None:
        plan = self.plan
        for workers in plan.workers:
            once = {
                system: all(
                    s.extra["exactly_once"]
                    for s in self.samples
                    if s.system == system and s.workload == "throughput" and s.size == workers
                )
                for system in (ZNDRAW, WORKERLEDGER)
            }
            note = {
                system: ("exactly once in every run" if ok else "EXACTLY-ONCE CHECK FAILED")
                for system, ok in once.items()
            }
            self.compare(
                f"throughput-{workers}",
                f"(a) throughput, {workers} worker{'s' if workers > 1 else ''}, "
                f"{plan.tasks:,} tasks",
                "tasks/s",
                "higher",
                "throughput",
                workers,
                lambda s: [s.value],
                note,
            )
            self.compare(
                f"p50-{workers}",
                f"(a) claim latency p50, {workers} worker{'s' if workers > 1 else ''}",
                "ms",
                "lower",
                "throughput",
                workers,
                lambda s: [s.extra["p50_ms"]],
                {},
            )
            self.compare(
                f"p99-{workers}",
                f"(a) claim latency p99, {workers} worker{'s' if workers > 1 else ''}",
                "ms",
                "lower",
                "throughput",
                workers,
                lambda s: [s.extra["p99_ms"]],
                {},
            )
        if "throughput" in plan.workloads and plan.workers:
            self.compare(
                "submit",
                f"(a) submit {plan.tasks:,} tasks, 8 in flight (setup of the 1st row)",
                "tasks/s",
                "higher",
                "throughput",
                plan.workers[0],
                lambda s: [s.extra["submit_per_s"]],
                {},
            )
        for holding in plan.holding:
            after = {system: self._statuses(system, holding) for system in (ZNDRAW, WORKERLEDGER)}
            self.compare(
                f"delete-{holding}",
                f"(b) DELETE /workers/{{id}}, worker holding {holding:,} claimed "
                f"task{'s' if holding > 1 else ''}",
                "ms",
                "lower",
                "delete",
                holding,
                lambda s: [s.value],
                after,
            )
        if "death" in plan.workloads:
            self._death_rows()

    def _statuses(self, system: str, holding: int) -> str:
        seen = [
            s.extra["statuses"]
            for s in self.samples
            if s.system == system and s.workload == "delete" and s.size == holding
        ]
        if not seen:
            return ""
        last = {k: v for k, v in seen[-1].items() if v}
        return "tasks afterwards: " + ", ".join(f"{v} {k}" for k, v in last.items())

    def _death_rows(self) -> None:
        plan = self.plan
        low = ZNDRAW_DEFAULT_TIMEOUT
        high = ZNDRAW_DEFAULT_TIMEOUT + ZNDRAW_DEFAULT_INTERVAL
        formula = {
            "figure": "(c) death -> release, zndraw-joblib default settings (formula bound)",
            "value": high * 1000.0,
            "unit": "ms",
            "note": (
                f"not measured (minutes): worker_timeout {low} s + sweeper_interval "
                f"{ZNDRAW_DEFAULT_INTERVAL} s -> released {low}-{high} s after the last "
                f"heartbeat, i.e. {low - SDK_HEARTBEAT}-{high} s after death with the SDK's "
                f"{SDK_HEARTBEAT} s heartbeat; value = upper bound"
            ),
            "min": low * 1000.0,
            "max": high * 1000.0,
        }
        self.rows.append(formula)
        zn_kind = (
            f"zndraw-joblib at short settings: worker_timeout {plan.short_timeout} s, "
            f"sweeper_interval {plan.short_interval} s, worker heartbeat every "
            f"{plan.short_heartbeat} s; failed by the sweeper"
        )
        wl_kind = f"workerledger: Socket.IO disconnect, grace {plan.grace:g} s; " + ", ".join(
            self._death_observed()
        )
        self.compare(
            "death-short",
            "(c) death -> release, measured (SIGKILL to task no longer claimed)",
            "ms",
            "lower",
            "death",
            0,
            lambda s: list(s.extra["kills_ms"]),
            {ZNDRAW: zn_kind, WORKERLEDGER: wl_kind},
        )
        wl = self.values(WORKERLEDGER, "death", 0, lambda s: list(s.extra["kills_ms"]))
        if wl:
            ratio = statistics.median(wl) / (high * 1000.0)
            self.ratios["death-default"] = ratio
            self.rows.append(
                {
                    "figure": "(c) death -> release — ratio workerledger / zndraw-joblib "
                    "default bound",
                    "value": ratio,
                    "unit": "x",
                    "note": f"workerledger median over the {high} s upper bound; lower is better",
                }
            )
            self.comparison.append(
                {
                    "figure": "(c) death -> release, zndraw-joblib at its defaults (formula)",
                    "unit": "ms",
                    "better": "lower",
                    ZNDRAW: {"median": high * 1000.0, "min": low * 1000.0, "max": high * 1000.0},
                    WORKERLEDGER: spread(wl),
                    "ratio": ratio,
                    "note": formula["note"],
                }
            )
        graced = self.values(WORKERLEDGER, "death-grace", 0, lambda s: list(s.extra["kills_ms"]))
        if graced:
            grace = default_grace()
            stats = spread(graced)
            ratio = stats["median"] / (high * 1000.0)
            self.ratios["death-default-grace"] = ratio
            figure = (
                "(c) death -> release, both at their defaults (workerledger: default "
                f"disconnect grace {grace}; zndraw-joblib: formula)"
            )
            self.rows.append(
                {
                    "figure": figure + " — workerledger",
                    "value": stats["median"],
                    "unit": "ms",
                    "note": "WORKERLEDGER_DISCONNECT_GRACE_SECONDS unset: tasks are kept for "
                    "the grace window (a reconnecting worker resumes), then released",
                    "min": stats["min"],
                    "max": stats["max"],
                    "runs": graced,
                }
            )
            self.comparison.append(
                {
                    "figure": figure,
                    "unit": "ms",
                    "better": "lower",
                    ZNDRAW: {"median": high * 1000.0, "min": low * 1000.0, "max": high * 1000.0},
                    WORKERLEDGER: stats,
                    "ratio": ratio,
                }
            )

    def _graced_text(self) -> str:
        graced = self.values(WORKERLEDGER, "death-grace", 0, lambda s: list(s.extra["kills_ms"]))
        if not graced:
            return ""
        return (
            f"; at the default grace ({default_grace()}) median {fmt(statistics.median(graced))} ms"
        )

    def _death_observed(self) -> list[str]:
        by: set[str] = set()
        status: set[str] = set()
        for s in self.samples:
            if s.system == WORKERLEDGER and s.workload == "death":
                by.update(s.extra["observed_by"])
                status.update(s.extra["status_after"])
        return [f"seen by {' / '.join(sorted(by))}", f"task then {' / '.join(sorted(status))}"]

    def goals(self) -> list[dict[str, Any]]:
        verdicts: list[dict[str, Any]] = []

        def add(goal: str, key: str, test: Callable[[float], bool], shown: str) -> None:
            if key not in self.ratios:
                verdicts.append({"goal": goal, "met": None, "detail": "not measured"})
                return
            ratio = self.ratios[key]
            verdicts.append({"goal": goal, "met": test(ratio), "detail": shown.format(ratio=ratio)})

        for workers in (4, 16):
            add(
                f">= 10x zndraw-joblib's task throughput at {workers} workers",
                f"throughput-{workers}",
                lambda r: r >= 10,
                "ratio {ratio:.1f}x",
            )
        if self.plan.holding:
            top = max(self.plan.holding)
            add(
                f"DELETE cleanup not slower at {top:,} tasks",
                f"delete-{top}",
                lambda r: r <= 1.0,
                "ratio {ratio:.2f}x (workerledger time / zndraw-joblib time)",
            )
        wl = self.values(WORKERLEDGER, "death", 0, lambda s: list(s.extra["kills_ms"]))
        if wl:
            verdicts.append(
                {
                    "goal": "death-to-release in milliseconds instead of 60-90 s",
                    "met": max(wl) < 1000.0,
                    "detail": f"workerledger median {fmt(statistics.median(wl))} ms, "
                    f"max {fmt(max(wl))} ms with grace {self.plan.grace:g} s" + self._graced_text(),
                }
            )
        else:
            verdicts.append(
                {
                    "goal": "death-to-release in milliseconds instead of 60-90 s",
                    "met": None,
                    "detail": "not measured",
                }
            )
        checks = [s for s in self.samples if s.workload == "throughput"]
        if checks:
            bad = [
                f"{s.system} {s.size}w run {s.run}" for s in checks if not s.extra["exactly_once"]
            ]
            verdicts.append(
                {
                    "goal": "every task completed exactly once (both systems, every run)",
                    "met": not bad,
                    "detail": "all runs passed" if not bad else "failed: " + ", ".join(bad),
                }
            )
        return verdicts


def command_line(argv: list[str]) -> str:
    return " ".join([".venv/bin/python -m bench.bench_peer", *map(shlex.quote, argv)]).strip()


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so that every host process started is stopped."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stop_on_sigterm()
    args, plan = parse_args(argv)
    notes: list[str] = []
    if WORKERLEDGER in plan.systems:
        missing = workerledger_available()
        if missing:
            print(f"[peer] skipping workerledger: {missing}", flush=True)
            notes.append(f"workerledger was not measured: {missing}.")
            plan.systems.remove(WORKERLEDGER)
    if ZNDRAW in plan.systems:
        try:
            print("[peer] preparing zndraw-joblib's virtualenv ...", flush=True)
            python = peer_zndraw.ensure_venv()
            version = peer_zndraw.installed_version(python)
            where = python.parent.parent.relative_to(REPO)
            notes.append(
                f"Peer: zndraw-joblib {version} from PyPI, in its own virtualenv {where}/ "
                f"({', '.join(peer_zndraw.requirements())}); host: bench/peer_zndraw/host.py."
            )
        except peer_zndraw.PeerUnavailable as error:
            print(f"[peer] skipping zndraw-joblib: {error}", flush=True)
            notes.append(f"zndraw-joblib was not measured: {error}")
            plan.systems.remove(ZNDRAW)
    if not plan.systems:
        print("[peer] nothing to measure", flush=True)
        return 2
    runner = Runner(plan)
    runner.say(
        f"systems {', '.join(plan.systems)}; workloads {', '.join(plan.workloads)}; "
        f"{plan.runs} runs each, alternating"
    )
    if "throughput" in plan.workloads:
        for workers in plan.workers:
            runner.throughput(workers)
    if "delete" in plan.workloads:
        for holding in plan.holding:
            runner.delete(holding)
    if "death" in plan.workloads:
        runner.death()

    report = Report(runner)
    report.build()
    notes += [
        "Both hosts run as uvicorn subprocesses on 127.0.0.1 (same uvicorn version), each "
        "measurement on a fresh host process and a fresh SQLite file; runs alternate "
        "zndraw-joblib, workerledger, zndraw-joblib, ...",
        "zndraw-joblib's host mounts its router as its test suite does: dependency "
        "overrides for the session maker and current (super)user, one fixed superuser, "
        "sessions serialized by one asyncio lock on a SQLite file (its concurrent-test "
        "fixture and ZnDraw's SQLite setup); no Socket.IO server, so it emits nothing.",
        "The load generator (bench/loadgen.py, httpx, one connection pool per worker) runs "
        "in one process on the same 2-core machine as the host; at high rates it competes "
        "with the host for CPU, so workerledger's figures are a lower bound.",
        "workerledger's PATCHes carry worker_id and the claim's attempt (its fencing "
        "extension); zndraw-joblib's claim returns no attempt, so its PATCHes carry only "
        "the status.",
    ]
    notes += [f"FAILED: {failure}" for failure in runner.failures]
    document = {
        "title": "Side by side with zndraw-joblib 0.1.7",
        "command": command_line(argv),
        "machine": machine_description(),
        "rows": report.rows,
        "comparison": report.comparison,
        "goals": report.goals(),
        "notes": notes,
    }
    out = write_results(TOPIC, document, args.results_dir)
    print(f"[peer] wrote {out}", flush=True)
    for goal in document["goals"]:
        mark = {True: "met", False: "MISSED", None: "not measured"}[goal["met"]]
        print(f"[peer] goal {mark}: {goal['goal']} ({goal['detail']})", flush=True)
    return 1 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main())
