"""Where the host's CPU goes under the pinned throughput load: cProfile's top entries.

workerledger's host is served through bench/profiled_serve.py (cProfile in every thread,
over a window opened and closed by signals) with the pinning of bench_pinned.py (host on
CPU 0, this process, the load generator, on CPU 1); the load is bench_pinned's: N tasks
submitted, claimed, PATCHed running and completed by W REST workers. The window runs
from the first submit to the last completion. The top entries by own time and by
cumulative time go to bench/results/profile_<label>.json (rendered by report.py, labels
side by side) and the longer listing to bench/results/profile_<label>.txt.

    python -m bench.profile_host --label after [--workerledger-python PY] [--workers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import pstats
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_peer import TOKEN, WORK, WORKERLEDGER, log_path, stop_on_sigterm
from bench.bench_pinned import (
    Meter,
    describe_python,
    host_prefix,
    load_average,
    pin_load_generator,
    slug,
)
from bench.loadgen import ServerProcess, Target, free_port, run_throughput
from bench.report import REPO, machine_description, results_dir

TOPIC = "profile"
WRAPPER = Path(__file__).resolve().parent / "profiled_serve.py"
TOP = 15


def where(key: tuple[str, int, str]) -> str:
    """`package/module.py:line(function)`, paths cut after site-packages or the repo."""
    file, line, name = key
    if file == "~":
        return name
    for marker in ("site-packages/", "/lib/python3."):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker.startswith("/lib/"):
                file = "stdlib/" + file.split("/", 1)[1]
            break
    else:
        if file.startswith(str(REPO) + "/"):
            file = "workerledger/" + file[len(str(REPO)) + 1 :]
    return f"{file}:{line}({name})"


def top_entries(stats: pstats.Stats, key: str, tasks: int) -> list[dict[str, Any]]:
    index = {"tottime": 2, "cumtime": 3}[key]
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    ordered = sorted(table.items(), key=lambda item: item[1][index], reverse=True)
    entries = []
    for func, (_cc, nc, tt, ct, _callers) in ordered[:TOP]:
        entries.append(
            {
                "function": where(func),
                "calls": nc,
                "own_ms": 1000 * tt,
                "cumulative_ms": 1000 * ct,
                "own_ms_per_task": 1000 * tt / tasks,
                "cumulative_ms_per_task": 1000 * ct / tasks,
            }
        )
    return entries


def listing(stats: pstats.Stats) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(40)
    return out.getvalue()


def profile_once(python: str, workers: int, tasks: int, folder: Path) -> dict[str, Any]:
    out = folder / "host.prof"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERLEDGER_")}
    env.update(
        WORKERLEDGER_DATABASE_URL=f"sqlite:///{folder / 'profile.db'}",
        WORKERLEDGER_AUTH_TOKENS=json.dumps({TOKEN: {"user": "bench", "superuser": True}}),
    )
    command = [*host_prefix(), python, str(WRAPPER), str(out), "--", "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    path = log_path(WORKERLEDGER, "profile")
    path.write_bytes(b"")
    server = ServerProcess(
        name=WORKERLEDGER,
        command=command,
        env=env,
        base_url=f"http://127.0.0.1:{port}",
        log_path=path,
        cwd=folder,
    )
    with server:
        assert server.process is not None
        pid = server.process.pid
        meter = Meter(pid)

        def mark(phase: str) -> None:
            if phase == "submit":
                os.kill(pid, signal.SIGUSR1)
            meter.mark(phase)
            if phase == "done":
                os.kill(pid, signal.SIGUSR2)

        target = Target(WORKERLEDGER, server.base_url, TOKEN, socketio=True, pid=pid)
        result = asyncio.run(
            run_throughput(target, workers=workers, tasks=tasks, mark=mark, on_request=meter.count)
        )
        deadline = time.monotonic() + 120
        while not Path(str(out) + ".done").exists():
            if time.monotonic() > deadline or server.process.poll() is not None:
                raise RuntimeError(f"the profile was not written; log: {server.log_tail()}")
            time.sleep(0.1)
    if not result.exactly_once:
        raise RuntimeError(f"not exactly once under the profiler: {result.check_detail}")
    cpu, requests, seconds = meter.between("submit", "done")
    stats = pstats.Stats(str(out))
    return {
        "stats": stats,
        "cpu_ms": 1000 * cpu,
        "requests": requests,
        "seconds": seconds,
        "tasks_per_s": result.tasks_per_second,
        "threads": Path(str(out) + ".done").read_text().strip(),
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stop_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.profile_host", description=__doc__)
    parser.add_argument("--label", default="current", help="names this profile")
    parser.add_argument("--workerledger-python", default=sys.executable)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--results-dir", type=Path, help="default: bench/results")
    args = parser.parse_args(argv)
    args.workerledger_python = os.path.abspath(args.workerledger_python)  # no resolve()
    machine = machine_description()
    served = describe_python(args.workerledger_python)
    pin_load_generator()
    loadavg = load_average()
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK, prefix="profile-") as tmp:
        found = profile_once(args.workerledger_python, args.workers, args.tasks, Path(tmp))
    stats: pstats.Stats = found["stats"]
    total_own = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    document = {
        "title": "Profile of the host under the pinned throughput load (cProfile)",
        "label": args.label,
        "command": " ".join([".venv/bin/python -m bench.profile_host", *map(shlex.quote, argv)]),
        "machine": machine,
        "workerledger": served,
        "workers": args.workers,
        "tasks": args.tasks,
        "window": {
            "host_cpu_ms": found["cpu_ms"],
            "host_cpu_ms_per_task": found["cpu_ms"] / args.tasks,
            "profiled_own_ms": 1000 * total_own,
            "requests": found["requests"],
            "seconds": found["seconds"],
            "tasks_per_s": found["tasks_per_s"],
            "threads": found["threads"],
            "loadavg": loadavg,
        },
        "by_own": top_entries(stats, "tottime", args.tasks),
        "by_cumulative": top_entries(stats, "cumtime", args.tasks),
    }
    folder = args.results_dir or results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{TOPIC}_{slug(args.label)}"
    (folder / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    header = (
        f"{document['title']}\nlabel: {args.label}\n{served}\ncommand: {document['command']}\n"
        f"{args.tasks} tasks, {args.workers} workers; host CPU in the window "
        f"{found['cpu_ms']:.0f} ms (under the profiler); profiled own time "
        f"{1000 * total_own:.0f} ms\n\n"
    )
    (folder / f"{name}.txt").write_text(header + listing(stats))
    print(f"[profile] wrote {folder / name}.json and .txt", flush=True)
    for entry in document["by_own"]:
        print(
            f"[profile] {entry['own_ms_per_task']:.3f} ms/task own  {entry['function']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
