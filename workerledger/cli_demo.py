"""`workerledger demo`: the main job, live in the terminal.

Starts the host (`workerledger serve`, fresh SQLite file, grace 0, its own token),
three worker processes, submits tasks, SIGKILLs one worker while it runs a task, and
prints as they arrive the status events a watcher receives in `room:demo`: the loss
detected at once, the task requeued and finished by another worker. Then it replays
the killed worker's history and cleans up every process (also on Ctrl-C). Tasks and
workers are named by the first 8 characters of their ids, in the live output and in
the history (`workerledger history --short-ids`) alike.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, ClassVar

import httpx
import socketio

from workerledger.client import ClaimedTask, Extension, JobManager, TaskCancelledError

ROOM = "demo"
SHORT = 8  # characters of an id shown (as `history --short-ids` shows them)
Line = tuple[float, str, str]  # (time, source, text)


class Sleep(Extension):
    """The demo job: sleeps `seconds`, stopping early when cancelled."""

    category: ClassVar[str] = "modifiers"
    on_worker_lost: ClassVar[str | None] = "requeue"
    seconds: float = 3.0

    def run(self, task: ClaimedTask[Any]) -> None:
        if task.wait_cancelled(self.seconds):
            raise TaskCancelledError(task.cancel_reason or "cancelled")


def add_commands(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo", help="host + three workers; one is SIGKILLed mid-task (the main job)"
    )
    demo.add_argument("--tasks", type=int, default=6, help="tasks to submit (default 6)")
    demo.add_argument("--seconds", type=float, default=3.0, help="duration of a task")
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    demo = Demo(tasks=args.tasks, seconds=args.seconds)
    try:
        return demo.run()
    except KeyboardInterrupt:
        demo.say("interrupted; cleaning up")
        return 130
    finally:
        demo.cleanup()


class Demo:
    def __init__(self, *, tasks: int, seconds: float) -> None:
        self.n_tasks, self.seconds = tasks, seconds
        self.tmp = Path(tempfile.mkdtemp(prefix="workerledger-demo-"))
        self.token = secrets.token_urlsafe(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "WORKERLEDGER_DATABASE_URL": f"sqlite:///{self.tmp / 'demo.db'}",
            "WORKERLEDGER_AUTH_TOKENS": json.dumps(
                {self.token: {"user": "demo", "superuser": True}}
            ),
            "WORKERLEDGER_DISCONNECT_GRACE_SECONDS": "0",
            "WORKERLEDGER_HEARTBEAT_TIMEOUT_SECONDS": "10",
            "WORKERLEDGER_SWEEP_INTERVAL_SECONDS": "1",
            "WORKERLEDGER_TOKEN": self.token,
        }
        self.lines: queue.Queue[Line] = queue.Queue()
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.names: dict[str, str] = {}  # worker id -> its process, w1, w2, ...
        self.tasks: list[str] = []  # task ids, in submission order
        self.status: dict[str, str] = {}
        self.started = time.monotonic()
        self.watcher: socketio.Client | None = None
        self.killed_at: float | None = None

    # -- output ---------------------------------------------------------------

    def say(self, text: str, mark: str = " ") -> None:
        print(f"{time.monotonic() - self.started:6.2f}s {mark} {text}", flush=True)

    def who(self, worker_id: object) -> str:
        """A worker as `7b1c0d2e (w1)`: its short id, and its process if it is one of ours."""
        if not worker_id:
            return "-"
        name = self.names.get(str(worker_id))
        return str(worker_id)[:SHORT] + (f" ({name})" if name else "")

    def label(self, source: str) -> str:
        """An output source: `host`, or `worker 7b1c0d2e (w1)` once that one registered."""
        return f"worker {self.worker_of(source)}" if source.startswith("w") else source

    def worker_of(self, process: str) -> str:
        wid = next((wid for wid, name in self.names.items() if name == process), process)
        return self.who(wid)

    # -- the story ------------------------------------------------------------

    def run(self) -> int:
        self.say(f"starting the host on {self.url} (SQLite in {self.tmp}, grace 0 s)")
        self.start_process(
            "host",
            [
                sys.executable,
                "-m",
                "workerledger",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
        )
        self.expect("host", "listening on", timeout=30)
        self.watch()
        for n in (1, 2, 3):
            self.start_process(
                f"w{n}", [sys.executable, "-m", "workerledger.cli_demo", "worker", self.url, str(n)]
            )
        self.wait_line(lambda s, t: len(self.names) == 3, timeout=30)
        self.submit()
        victim, task_id = self.kill_one_mid_task()
        self.follow_until_done(timeout=30 + 3 * self.n_tasks * self.seconds)
        self.summary(task_id)
        self.history(victim)
        return 0

    def submit(self) -> None:
        with JobManager(self.url, self.token, sio=False) as client:
            for _ in range(self.n_tasks):
                self.tasks.append(client.submit(Sleep(seconds=self.seconds), ROOM))
        self.say(
            f"submitted {self.n_tasks} tasks of {Sleep.full_name()} "
            f"({self.seconds:g} s each) from room {ROOM!r}"
        )

    def kill_one_mid_task(self) -> tuple[str, str]:
        source, text = self.wait_line(lambda s, t: s.startswith("w") and t.startswith("START"), 30)
        task_id = text.split()[1]
        victim = next(wid for wid, name in self.names.items() if name == source)
        self.pump(deadline=time.monotonic() + self.seconds / 3)
        proc = self.procs.pop(source)
        proc.kill()
        proc.wait()
        self.killed_at = time.monotonic()
        self.say(
            f"SIGKILL worker {self.who(victim)} (pid {proc.pid}) while it runs task "
            f"{_short(task_id)}",
            "!",
        )
        return victim, task_id

    def follow_until_done(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.all_done():
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: tasks not finished within {timeout:.0f} s")
            self.pump(deadline=min(deadline, time.monotonic() + 0.5))

    def all_done(self) -> bool:
        done = ("completed", "failed", "cancelled")
        return all(self.status.get(task_id) in done for task_id in self.tasks)

    def summary(self, killed_task: str) -> None:
        with httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}
        ) as h:
            info = h.get(f"/v1/joblib/tasks/{killed_task}").json()
        counts = {s: list(self.status.values()).count(s) for s in sorted(set(self.status.values()))}
        self.say(f"all {len(self.tasks)} tasks finished: {counts}", "=")
        self.say(
            f"task {_short(killed_task)} (the killed worker's) ended {info['status']} "
            f"on {self.who(info.get('worker_id'))}, attempt {info.get('attempt')}",
            "=",
        )

    def history(self, worker_id: str) -> None:
        self.say(f"replayed history of the killed worker {self.who(worker_id)} ({worker_id}):", "=")
        command = [sys.executable, "-m", "workerledger", "history", worker_id, "--short-ids"]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if result.returncode == 0:
            print(result.stdout, end="", flush=True)
            return
        with httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}
        ) as h:
            answer = h.get(f"/v1/joblib/workers/{worker_id}/history")
        if answer.status_code != 200:
            print(
                f"  (no history available: `workerledger history` said {result.stderr.strip()!r},"
                f" GET .../history said {answer.status_code})"
            )
            return
        body = answer.json()
        for event in body.get("items", body) if isinstance(body, dict) else body:
            print(f"  {json.dumps(event, sort_keys=True)}")

    # -- events ---------------------------------------------------------------

    def watch(self) -> None:
        watcher = socketio.Client(reconnection=False, handle_sigint=False)
        watcher.on(
            "task_status_event",
            lambda d: self.lines.put((time.monotonic(), "event", json.dumps(d))),
        )
        watcher.on(
            "jobs_invalidate", lambda d=None: self.lines.put((time.monotonic(), "invalidate", ""))
        )
        watcher.connect(
            self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=5
        )
        for room_id in (ROOM, "@global"):
            watcher.call("join_room", {"room_id": room_id}, timeout=5)
        self.watcher = watcher
        self.say(f"watcher joined room:{ROOM} and room:@global")

    def show_event(self, data: dict[str, Any]) -> None:
        task_id = str(data.get("id"))
        if task_id not in self.tasks:
            return
        status, before = str(data.get("status")), self.status.get(task_id)
        self.status[task_id] = status
        who, n, attempt = self.who(data.get("worker_id")), _short(task_id), data.get("attempt")
        text = {
            "pending": f"task {n} pending" + (self.requeued() if before else ""),
            "claimed": f"task {n} claimed by {who}, attempt {attempt}",
            "running": f"task {n} running on {who}",
            "completed": f"task {n} completed by {who}",
        }.get(status, f"task {n} {status} ({data.get('error')})")
        self.say(text, "*" if before in ("claimed", "running") and status == "pending" else " ")

    def requeued(self) -> str:
        after = ""
        if self.killed_at is not None:
            after = f", {(time.monotonic() - self.killed_at) * 1000:.0f} ms after the kill"
        return f" AGAIN: its worker's disconnect was detected{after}; requeued"

    def pump(self, deadline: float) -> None:
        while (left := deadline - time.monotonic()) > 0:
            try:
                _, source, text = self.lines.get(timeout=left)
            except queue.Empty:
                return
            self.show(source, text)

    def show(self, source: str, text: str) -> None:
        if source == "event":
            self.show_event(json.loads(text))
        elif source == "invalidate":
            self.say("jobs_invalidate (the job's worker list changed)")
        elif source.startswith("w") and text.startswith("READY"):
            self.names[text.split()[1]] = source
            self.say(f"worker {self.who(text.split()[1])} registered ({text.split()[1]})")
        elif source.startswith("w") and text.startswith(("START", "DONE")):
            verb, task_id = text.split()[:2]
            action = "starts" if verb == "START" else "finished"
            self.say(f"worker {self.worker_of(source)} {action} task {_short(task_id)}")
        elif text == "<exit>":
            self.say(f"{self.label(source)}: process ended")
        elif source.startswith("w") or "error" in text.lower() or "warning" in text.lower():
            self.say(f"{self.label(source)}: {text}")

    def wait_line(self, match: Callable[[str, str], bool], timeout: float) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                _, source, text = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.show(source, text)
            if match(source, text):
                return source, text
            if source in self.procs and text == "<exit>":
                raise SystemExit(f"demo: {source} exited early")
        raise SystemExit(f"demo: timed out after {timeout:.0f} s")

    def expect(self, source: str, prefix: str, timeout: float) -> str:
        return self.wait_line(lambda s, t: s == source and prefix in t, timeout)[1]

    # -- processes ------------------------------------------------------------

    def start_process(self, name: str, command: list[str]) -> None:
        proc = subprocess.Popen(
            command,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.procs[name] = proc
        threading.Thread(target=self._read, args=(name, proc.stdout), daemon=True).start()

    def _read(self, name: str, stream: IO[str] | None) -> None:
        for line in stream or ():
            self.lines.put((time.monotonic(), name, line.rstrip()))
        self.lines.put((time.monotonic(), name, "<exit>"))

    def cleanup(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a 2nd Ctrl-C must not strand processes
        if self.watcher is not None:
            self.watcher.disconnect()
        workers = [name for name in self.procs if name != "host"]
        for name in [*workers, "host"]:
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _short(task_id: str) -> str:
    return task_id[:SHORT]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_worker(url: str, number: str) -> int:
    """One demo worker process: register Sleep, run tasks, leave on SIGTERM."""

    def execute(task: ClaimedTask[Any]) -> None:
        print(f"START {task.task_id}", flush=True)
        task.extension.run(task)
        print(f"DONE {task.task_id}", flush=True)

    with JobManager(url, execute=execute, heartbeat_interval=2, polling_interval=1) as manager:
        manager.register(Sleep)
        print(f"READY {manager.worker_id}", flush=True)
        manager.wait()
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    sys.exit(run_worker(sys.argv[2], sys.argv[3]))
