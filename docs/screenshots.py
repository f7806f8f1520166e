"""`make screenshots`: the console's pictures for the README, from a real run.

    python docs/screenshots.py [--out docs]

Starts `workerledger serve` (a fresh SQLite file, grace 8 s), five SDK worker
processes in rooms `lab` and `render`, and submits tasks; SIGKILLs one worker mid-task
and waits until it is lost (its task requeued and run by another), SIGKILLs a second
one and SIGTERMs a third (it leaves), then photographs with headless Chromium (Debian's
`chromium`, driven by Playwright): the overview while the second is in its grace
window (docs/console.png) and the first one's timeline (docs/console-worker.png).
Every process is ended on exit. `python docs/screenshots.py worker URL ROOM JOB` is one
of the worker processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
from workerledger.client import ClaimedTask, Extension, JobManager, TaskCancelledError

CHROMIUM = os.environ.get("WORKERLEDGER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
GRACE_SECONDS = 8
WAIT = 60.0  # failure bound for a step, never a measured time


class Rotate(Extension):
    category: ClassVar[str] = "modifiers"
    on_worker_lost: ClassVar[str | None] = "requeue"
    seconds: float = 2.0

    def run(self, task: ClaimedTask[Any]) -> None:
        if task.wait_cancelled(self.seconds):
            raise TaskCancelledError(task.cancel_reason or "cancelled")


class Smooth(Rotate):
    pass


class Render(Rotate):
    category: ClassVar[str] = "analysis"


JOBS: dict[str, type[Rotate]] = {"Rotate": Rotate, "Smooth": Smooth, "Render": Render}
WORKERS = [("lab", "Rotate"), ("lab", "Rotate"), ("lab", "Smooth"), ("render", "Render"),
           ("render", "Render")]  # fmt: skip


def run_worker(url: str, room: str, job: str) -> int:
    """One worker process: prints READY <id>, START <task>, DONE <task>."""

    def execute(task: ClaimedTask[Any]) -> None:
        print(f"START {task.task_id}", flush=True)
        task.extension.run(task)
        print(f"DONE {task.task_id}", flush=True)

    with JobManager(url, execute=execute, heartbeat_interval=2, polling_interval=1) as manager:
        manager.register(JOBS[job], room=room)
        print(f"READY {manager.worker_id}", flush=True)
        manager.wait()
    return 0


class Run:
    """The host and the workers, each a process whose lines are collected."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="workerledger-screens-"))
        self.token = secrets.token_urlsafe(16)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "WORKERLEDGER_DATABASE_URL": f"sqlite:///{self.tmp / 'screens.db'}",
            "WORKERLEDGER_AUTH_TOKENS": json.dumps({self.token: {"user": "ops"}}),
            "WORKERLEDGER_DISCONNECT_GRACE_SECONDS": str(GRACE_SECONDS),
            "WORKERLEDGER_SWEEP_INTERVAL_SECONDS": "1",
            "WORKERLEDGER_TOKEN": self.token,
        }
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.lines: dict[str, list[str]] = {}
        self.changed = threading.Condition()

    def start(self, name: str, command: list[str]) -> None:
        proc = subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.procs[name] = proc
        self.lines[name] = []
        threading.Thread(target=self._read, args=(name, proc), daemon=True).start()

    def _read(self, name: str, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout or ():
            with self.changed:
                self.lines[name].append(line.rstrip())
                self.changed.notify_all()

    def wait_line(self, name: str, prefix: str) -> str:
        deadline = time.monotonic() + WAIT
        with self.changed:
            while True:
                for line in self.lines[name]:
                    if (prefix in line) if name == "host" else line.startswith(prefix):
                        return line
                if self.procs[name].poll() is not None:
                    raise SystemExit(f"{name} exited: {self.lines[name][-5:]}")
                if not self.changed.wait(deadline - time.monotonic()):
                    raise SystemExit(f"{name} did not print {prefix!r} in {WAIT:.0f} s")

    def running(self, name: str) -> str:
        """Wait until worker `name` runs a task; its id."""
        return self.wait_line(name, "START").split()[1]

    def stop(self, name: str, sig: int) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=WAIT)

    def close(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.stop(name, signal.SIGKILL if name != "host" else signal.SIGTERM)


def wait_worker_state(url: str, token: str, worker_id: str, state: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/console/api/overview", headers=headers, timeout=10).json()
        states = {w["id"]: w["state"] for w in body["workers"]["items"]}
        if states.get(worker_id) == state:
            return
        time.sleep(0.2)
    raise SystemExit(f"worker {worker_id} not {state} in {WAIT:.0f} s")


async def photograph(url: str, token: str, worker_id: str, out: Path) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            await page.goto(f"{url}/console")
            await page.fill("#login input[name=token]", token)
            await page.click("#login button")
            await page.wait_for_selector("tr.worker[data-state=disconnected] [data-countdown]")
            await page.wait_for_function(
                "document.querySelector('[data-countdown]').textContent.startsWith('lost in')"
            )
            await page.screenshot(path=str(out / "console.png"), full_page=True)
            await page.click(f"tr.worker[data-worker-id='{worker_id}'] a")
            await page.wait_for_selector("#worker-timeline [data-kind=end]")
            await page.wait_for_selector("#state-at[data-status]")
            await page.screenshot(path=str(out / "console-worker.png"), full_page=True)
        finally:
            await browser.close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        return run_worker(*argv[1:4])
    parser = argparse.ArgumentParser(prog="screenshots.py")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    run = Run()
    try:
        serve = [sys.executable, "-m", "workerledger", "serve", "--port", str(run.port)]
        run.start("host", serve)
        run.wait_line("host", "listening on")
        names = []
        for n, (room, job) in enumerate(WORKERS, 1):
            name = f"w{n}"
            run.start(name, [sys.executable, __file__, "worker", run.url, room, job])
            names.append(name)
        ids = {name: run.wait_line(name, "READY").split()[1] for name in names}
        with JobManager(run.url, run.token, sio=False) as client:
            for n in range(24):
                job = ["Rotate", "Smooth", "Render"][n % 3]
                room = "render" if job == "Render" else "lab"
                client.submit(JOBS[job](seconds=1.5 + (n % 4)), room, job_room=room)
        run.running("w1")
        run.stop("w1", signal.SIGKILL)  # lost after the grace window; its task requeued
        wait_worker_state(run.url, run.token, ids["w1"], "lost")
        run.stop("w3", signal.SIGTERM)  # leaves: its task released at once
        run.running("w4")
        run.stop("w4", signal.SIGKILL)  # in its grace window when photographed
        wait_worker_state(run.url, run.token, ids["w4"], "disconnected")
        args.out.mkdir(parents=True, exist_ok=True)
        asyncio.run(photograph(run.url, run.token, ids["w1"], args.out))
        print(f"wrote {args.out / 'console.png'} and {args.out / 'console-worker.png'}")
        return 0
    finally:
        run.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
