"""Per core: host CPU per task, the host pinned to one CPU and the load generator to another.

bench_peer's throughput workload (bench/loadgen.py's `run_throughput`: N tasks submitted,
then W REST workers claim -> PATCH running -> PATCH completed, each task exactly once),
with the host process started by `taskset -c 0` and this process (the load generator)
re-pinned to CPU 1, for zndraw-joblib 0.1.7, workerledger and the floor, alternating
runs. The host's CPU time (utime + stime of the host process and of any children, from
/proc/<pid>/stat) is read when the submitting starts and when the last task is completed,
and reported per task and per request next to the throughput of the drain.

The floor: bench/floor_app.py, one FastAPI route returning a small JSON object on the same
uvicorn, driven by W loops of 4 requests (POST, POST, PATCH, PATCH: a task's submit,
claim, running, completed) until N x 4 requests were sent, under the same pinning.

`--workerledger-python` serves another installation of workerledger (e.g. a venv of an
older commit); `--label` names the set of figures: each label is kept in
bench/results/pinned_<label>.json, and report.py shows the labels side by side.

    python -m bench.bench_pinned [--quick] [--label L] [--workerledger-python PY]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import peer_zndraw
from bench.bench_peer import WORK, WORKERLEDGER, ZNDRAW, fresh_host, log_path, stop_on_sigterm
from bench.loadgen import PREFIX, ServerProcess, Target, free_port, run_throughput
from bench.report import machine_description, write_results

TOPIC = "pinned"
FLOOR = "floor"
HOST_CPU, LOAD_CPU = 0, 1
REQUESTS_PER_TASK = 4
FLOOR_APP = Path(__file__).resolve().parent / "floor_app.py"


# --------------------------------------------------------------------------- /proc


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            except OSError:
                continue
            found += [int(child) for child in text.split()]
    except OSError:
        return []
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue += _children(current)
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live descendants (plus the children it reaped),
    in seconds, from /proc/<pid>/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for index, member in enumerate(process_tree(pid)):
        try:
            text = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        total += utime + stime + (cutime + cstime if index == 0 else 0)
    return total / ticks


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def pin_load_generator() -> None:
    """This process (the load generator) onto LOAD_CPU; the hosts go on HOST_CPU."""
    allowed = os.sched_getaffinity(0)
    if not {HOST_CPU, LOAD_CPU} <= allowed:
        raise SystemExit(
            f"the pinned bench needs CPUs {HOST_CPU} and {LOAD_CPU}; allowed: {sorted(allowed)}"
        )
    os.sched_setaffinity(0, {LOAD_CPU})


def host_prefix() -> list[str]:
    return ["taskset", "-c", str(HOST_CPU)]


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", label).strip("-").lower() or "current"


def neutral_cwd() -> str:
    """A working directory without a `workerledger/` folder: the repository root holds
    one (the package's own files), which `python -m` would import instead of the
    installation under test."""
    return tempfile.gettempdir()


def describe_python(python: str) -> str:
    """Which workerledger `python` serves: its version and where it is installed."""
    code = (
        "import importlib.metadata as m, workerledger; "
        "print(m.version('workerledger'), workerledger.__file__)"
    )
    done = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, cwd=neutral_cwd(), check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{python} cannot import workerledger: {done.stderr.strip()[-500:]}")
    version, where = done.stdout.split()
    return f"workerledger {version} from {Path(where).parent}"


# --------------------------------------------------------------------------- meter


@dataclass
class Meter:
    """The host's CPU seconds, the requests sent and the wall clock at each mark."""

    pid: int
    requests: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)

    def count(self) -> None:
        self.requests += 1

    def mark(self, phase: str) -> None:
        self.cpu[phase] = cpu_seconds(self.pid)
        self.sent[phase] = self.requests
        self.wall[phase] = time.perf_counter()

    def between(self, first: str, last: str) -> tuple[float, int, float]:
        """(host CPU seconds, requests, wall seconds) from mark `first` to mark `last`."""
        return (
            self.cpu[last] - self.cpu[first],
            self.sent[last] - self.sent[first],
            self.wall[last] - self.wall[first],
        )


# --------------------------------------------------------------------------- floor


@contextmanager
def serve_floor(python: str, label: str) -> Iterator[Target]:
    port = free_port()
    path = log_path(FLOOR, label)
    path.write_bytes(b"")
    server = ServerProcess(
        name=FLOOR,
        command=[*host_prefix(), python, str(FLOOR_APP), "--port", str(port)],
        env=dict(os.environ),
        base_url=f"http://127.0.0.1:{port}",
        log_path=path,
        cwd=Path(neutral_cwd()),
    )
    with server:
        pid = server.process.pid if server.process else None
        yield Target(FLOOR, server.base_url, "floor", pid=pid)


async def run_floor(target: Target, *, workers: int, tasks: int, meter: Meter) -> dict[str, Any]:
    """W loops of 4 requests shaped like a task's (submit, claim, running, completed)."""
    clients = [
        httpx.AsyncClient(
            base_url=target.base_url + PREFIX,
            headers=target.headers,
            timeout=httpx.Timeout(120.0),
            event_hooks={"request": [_counter(meter)]},
        )
        for _ in range(workers)
    ]
    started_tasks = 0
    errors: list[str] = []

    async def loop(client: httpx.AsyncClient, worker: int) -> None:
        nonlocal started_tasks
        while started_tasks < tasks:
            started_tasks += 1
            calls = [
                ("POST", {"payload": {"n": started_tasks}}),
                ("POST", {"worker_id": f"worker-{worker}"}),
                ("PATCH", {"status": "running", "worker_id": f"worker-{worker}", "attempt": 1}),
                ("PATCH", {"status": "completed", "worker_id": f"worker-{worker}", "attempt": 1}),
            ]
            for method, body in calls:
                response = await client.request(method, "/floor", json=body)
                if response.status_code != 200:
                    errors.append(f"{method} -> {response.status_code}")

    try:
        for client in clients:  # connections open before the window, as in run_throughput
            await client.get("/floor")
        meter.mark("submit")
        await asyncio.gather(*(loop(client, i) for i, client in enumerate(clients)))
        meter.mark("done")
    finally:
        for client in clients:
            await client.aclose()
    if errors:
        raise RuntimeError(f"floor: {len(errors)} failed requests, e.g. {errors[:3]}")
    return {}


def _counter(meter: Meter) -> Callable[[httpx.Request], Any]:
    async def sent(request: httpx.Request) -> None:
        meter.count()

    return sent


# --------------------------------------------------------------------------- runs


@dataclass
class Plan:
    tasks: int
    workers: list[int]
    runs: int
    peer_runs: int
    systems: list[str]
    python: str
    label: str


def measure(plan: Plan, system: str, workers: int, run: int) -> dict[str, Any]:
    label = f"pinned-{slug(plan.label)}-{workers}w-run{run}"
    loadavg = load_average()
    if system == FLOOR:
        host: Any = serve_floor(plan.python, label)
    else:
        python = plan.python if system == WORKERLEDGER else None
        host = fresh_host(system, label, python=python, prefix=host_prefix())
    with host as target:
        assert target.pid is not None
        meter = Meter(target.pid)
        sample: dict[str, Any] = {"system": system, "workers": workers, "run": run}
        if system == FLOOR:
            asyncio.run(run_floor(target, workers=workers, tasks=plan.tasks, meter=meter))
            cpu, requests, seconds = meter.between("submit", "done")
            sample |= {
                "requests_per_s": requests / seconds,
                "tasks_per_s": requests / seconds / REQUESTS_PER_TASK,
                "exactly_once": True,
            }
        else:
            result = asyncio.run(
                run_throughput(
                    target,
                    workers=workers,
                    tasks=plan.tasks,
                    mark=meter.mark,
                    on_request=meter.count,
                )
            )
            cpu, requests, _ = meter.between("submit", "done")
            drain_cpu, drain_requests, _ = meter.between("drain", "done")
            sample |= {
                "tasks_per_s": result.tasks_per_second,
                "seconds": result.seconds,
                "submit_per_s": result.tasks / result.submit_seconds,
                "claim_p50_ms": result.claim_p50_ms,
                "empty_claims": result.empty_claims,
                "exactly_once": result.exactly_once,
                "check": result.check_detail,
                "errors": result.errors[:5],
                "drain_cpu_ms_per_task": 1000 * drain_cpu / plan.tasks,
                "drain_cpu_ms_per_request": 1000 * drain_cpu / drain_requests,
            }
        sample |= {
            "cpu_ms": 1000 * cpu,
            "requests": requests,
            "cpu_ms_per_task": 1000 * cpu / plan.tasks,
            "cpu_ms_per_request": 1000 * cpu / requests,
            "loadavg": loadavg,
        }
    return sample


def describe(sample: dict[str, Any]) -> str:
    text = (
        f"{sample['cpu_ms_per_task']:.2f} ms CPU/task, {sample['cpu_ms_per_request']:.3f} "
        f"ms CPU/request ({sample['requests']} requests), {sample['tasks_per_s']:.1f} tasks/s"
    )
    if not sample["exactly_once"]:
        text += ", NOT exactly once: " + str(sample.get("check"))
    return text + f", load {sample['loadavg'][0]}"


def run_all(plan: Plan) -> tuple[list[dict[str, Any]], list[str]]:
    samples: list[dict[str, Any]] = []
    failures: list[str] = []
    for workers in plan.workers:
        for run in range(1, plan.runs + 1):
            for system in plan.systems:  # A B C A B C ...
                if system == ZNDRAW and run > plan.peer_runs:
                    continue
                started = time.perf_counter()
                try:
                    sample = measure(plan, system, workers, run)
                except Exception as error:
                    failures.append(f"{system} {workers} workers run {run}: {error!r}")
                    print(f"[pinned] FAILED {failures[-1]}", flush=True)
                    traceback.print_exc()
                    continue
                samples.append(sample)
                took = time.perf_counter() - started
                print(
                    f"[pinned] {workers}w run {run} {system}: {describe(sample)} ({took:.1f} s)",
                    flush=True,
                )
    return samples, failures


# --------------------------------------------------------------------------- summary


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


FIGURES = {
    "cpu_ms_per_task": ("host CPU per task", "ms"),
    "cpu_ms_per_request": ("host CPU per request", "ms"),
    "tasks_per_s": ("throughput (drain)", "tasks/s"),
}


def summarize(plan: Plan, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per worker count: each system's spreads of the FIGURES, and the ratios."""
    summary: list[dict[str, Any]] = []
    for workers in plan.workers:
        entry: dict[str, Any] = {"workers": workers}
        for system in plan.systems:
            mine = [s for s in samples if s["system"] == system and s["workers"] == workers]
            if not mine:
                continue
            entry[system] = {key: spread([s[key] for s in mine]) for key in FIGURES}
            entry[system]["exactly_once"] = all(s["exactly_once"] for s in mine)
            entry[system]["loadavg"] = statistics.median(s["loadavg"][0] for s in mine)
        wl, zn = entry.get(WORKERLEDGER), entry.get(ZNDRAW)
        if wl and zn:
            entry["cpu_ratio"] = zn["cpu_ms_per_task"]["median"] / wl["cpu_ms_per_task"]["median"]
            entry["throughput_ratio"] = zn["tasks_per_s"]["median"] and (
                wl["tasks_per_s"]["median"] / zn["tasks_per_s"]["median"]
            )
        summary.append(entry)
    return summary


NAMES = {WORKERLEDGER: "workerledger", ZNDRAW: "zndraw-joblib", FLOOR: "floor (trivial FastAPI)"}


def rows(plan: Plan, summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for entry in summary:
        workers = entry["workers"]
        for system in plan.systems:
            if system not in entry:
                continue
            for key, (figure, unit) in FIGURES.items():
                stats = entry[system][key]
                shown = figure
                if system == FLOOR and key == "tasks_per_s":
                    shown = "throughput (requests/s / 4)"
                found.append(
                    {
                        "figure": f"{shown}, {workers} workers — {NAMES[system]}",
                        "value": stats["median"],
                        "unit": unit,
                        "note": f"median load average {entry[system]['loadavg']}",
                        "min": stats["min"],
                        "max": stats["max"],
                        "runs": stats["runs"],
                    }
                )
        if "cpu_ratio" in entry:
            found.append(
                {
                    "figure": f"host CPU per task, {workers} workers — ratio zndraw-joblib / "
                    "workerledger",
                    "value": entry["cpu_ratio"],
                    "unit": "x",
                    "note": "of the medians; higher is better for workerledger",
                }
            )
    return found


def command_line(argv: list[str]) -> str:
    return " ".join([".venv/bin/python -m bench.bench_pinned", *map(shlex.quote, argv)])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stop_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.bench_pinned", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 tasks, 4 workers, 1 run")
    parser.add_argument("--tasks", type=int, help="tasks per run (default 1000)")
    parser.add_argument("--workers", type=int, nargs="+", help="worker counts (default 4 16)")
    parser.add_argument("--runs", type=int, help="runs per system (default 3)")
    parser.add_argument(
        "--peer-runs",
        type=int,
        help="zndraw-joblib only in the first N of the runs (default: all; it takes minutes "
        "per run on a busy machine)",
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=[ZNDRAW, WORKERLEDGER, FLOOR],
        help="default: all three, alternating",
    )
    parser.add_argument(
        "--workerledger-python",
        default=sys.executable,
        help="python of the workerledger installation to serve (default: this one)",
    )
    parser.add_argument("--label", default="current", help="names this set of figures")
    parser.add_argument("--results-dir", type=Path, help="default: bench/results")
    args = parser.parse_args(argv)
    plan = Plan(
        tasks=args.tasks or (200 if args.quick else 1000),
        workers=args.workers or ([4] if args.quick else [4, 16]),
        runs=args.runs or (1 if args.quick else 3),
        peer_runs=args.peer_runs or args.runs or (1 if args.quick else 3),
        systems=args.systems or [ZNDRAW, WORKERLEDGER, FLOOR],
        python=os.path.abspath(args.workerledger_python),  # a venv's python: no resolve()
        label=args.label,
    )
    machine = machine_description()  # before the pinning narrows the affinity
    notes: list[str] = []
    if WORKERLEDGER in plan.systems:
        served = describe_python(plan.python)
        notes.append(f"workerledger: {served} (`--workerledger-python {plan.python}`).")
    if ZNDRAW in plan.systems:
        try:
            python = peer_zndraw.ensure_venv()
            notes.append(
                f"Peer: zndraw-joblib {peer_zndraw.installed_version(python)} in "
                f"{python.parent.parent.relative_to(WORK.parent.parent)}/ "
                "(bench_peer's virtualenv and host)."
            )
        except peer_zndraw.PeerUnavailable as error:
            print(f"[pinned] skipping zndraw-joblib: {error}", flush=True)
            notes.append(f"zndraw-joblib was not measured: {error}")
            plan.systems.remove(ZNDRAW)
    pin_load_generator()
    loadavg_start = load_average()
    print(
        f"[pinned] {plan.label}: hosts on CPU {HOST_CPU}, load generator on CPU {LOAD_CPU}; "
        f"{', '.join(plan.systems)}; {plan.tasks} tasks; workers {plan.workers}; "
        f"{plan.runs} runs ({ZNDRAW}: {min(plan.peer_runs, plan.runs)}); "
        f"load average {loadavg_start}",
        flush=True,
    )
    samples, failures = run_all(plan)
    summary = summarize(plan, samples)
    loadavg_end = load_average()
    notes += [
        f"Every host process is started by `taskset -c {HOST_CPU}`; the load generator "
        f"(this process, bench/loadgen.py) runs on CPU {LOAD_CPU} alone. Host CPU = utime + "
        "stime of the host process (and of any children) from /proc/<pid>/stat, read when "
        "the submitting starts and when the last task is completed; per task = that / tasks, "
        "per request = that / the requests sent in between (submit, claims including empty "
        "ones, 2 PATCHes per task, heartbeats).",
        f"{plan.tasks:,} tasks per run, each submitted (8 in flight), claimed, PATCHed "
        "running and completed over REST; throughput is that of the drain (first claim to "
        "last completion); fresh host process and SQLite file per run; runs alternate "
        + ", ".join(NAMES[s] for s in plan.systems)
        + ".",
        "Floor: bench/floor_app.py, one FastAPI route returning a small JSON object on the "
        f"same uvicorn, driven by W loops of {REQUESTS_PER_TASK} requests (POST, POST, PATCH, "
        f"PATCH) until {plan.tasks:,} x {REQUESTS_PER_TASK} requests were sent; its "
        "throughput (requests/s / 4) is the ceiling this load generator on one core allows.",
        f"Load average (1 min) at the start {loadavg_start}, at the end {loadavg_end}; "
        "it counts this bench's own two processes, so about 2 means an otherwise idle "
        "machine.",
    ]
    notes += [f"FAILED: {failure}" for failure in failures]
    document = {
        "title": "Per core: host CPU per task (host pinned to CPU 0, load generator to CPU 1)",
        "label": plan.label,
        "command": command_line(argv),
        "machine": machine,
        "workerledger_python": plan.python,
        "tasks": plan.tasks,
        "loadavg": {"start": loadavg_start, "end": loadavg_end},
        "summary": summary,
        "rows": rows(plan, summary),
        "samples": samples,
        "notes": notes,
    }
    out = write_results(f"{TOPIC}_{slug(plan.label)}", document, args.results_dir)
    print(f"[pinned] wrote {out}", flush=True)
    for entry in summary:
        parts = [f"{entry['workers']} workers:"]
        for system in plan.systems:
            if system in entry:
                figure = entry[system]["cpu_ms_per_task"]["median"]
                parts.append(f"{NAMES[system]} {figure:.2f} ms/task")
        if "cpu_ratio" in entry:
            parts.append(f"ratio {entry['cpu_ratio']:.1f}x")
        print("[pinned] " + ", ".join(parts), flush=True)
    bad = [s for s in samples if not s["exactly_once"]]
    return 1 if failures or bad else 0


if __name__ == "__main__":
    sys.exit(main())
