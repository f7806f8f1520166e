"""Helpers for the client tests. The real host: `workerledger serve` as a subprocess on 127.0.0.1,
on a fresh SQLite file, with its own tokens. No mocked server anywhere."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from workerledger.client import ClaimedTask, JobManager

USER_TOKEN = "alice-token"
OTHER_TOKEN = "bob-token"
ADMIN_TOKEN = "admin-token"
T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `check` until it returns a truthy value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Host:
    """One `workerledger serve` process; can be killed and restarted on the same port
    and database."""

    def __init__(self, directory: Path, *, grace: float = 0, heartbeat_timeout: float = 30) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = f"sqlite:///{directory / 'host.db'}"
        tokens = {
            USER_TOKEN: {"user": "alice", "superuser": False},
            OTHER_TOKEN: {"user": "bob", "superuser": False},
            ADMIN_TOKEN: {"user": "admin", "superuser": True},
        }
        self.env = {
            **os.environ,
            "WORKERLEDGER_DATABASE_URL": self.database_url,
            "WORKERLEDGER_AUTH_TOKENS": json.dumps(tokens),
            "WORKERLEDGER_DISCONNECT_GRACE_SECONDS": str(grace),
            "WORKERLEDGER_HEARTBEAT_TIMEOUT_SECONDS": str(heartbeat_timeout),
            "WORKERLEDGER_SWEEP_INTERVAL_SECONDS": "1",
        }
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self) -> None:
        command = [sys.executable, "-m", "workerledger", "serve"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        listening = threading.Event()
        threading.Thread(target=self._read, args=(self.proc, listening), daemon=True).start()
        if not listening.wait(30):
            self.kill()
            raise RuntimeError("host did not start:\n" + "\n".join(self.output[-40:]))
        try:
            wait_until(self._answers, 15, "host to answer HTTP")
        except AssertionError:
            self.kill()
            raise

    def _read(self, proc: subprocess.Popen[str], listening: threading.Event) -> None:
        for line in proc.stdout or ():
            self.output.append(line.rstrip())
            if "listening on" in line:
                listening.set()

    def _answers(self) -> bool:
        try:
            return self.http().get("/workers").status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def http(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/v1/joblib",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
            verify=False,  # plain http: no TLS context to build (0.1-0.5 s per client)
        )

    def get(self, path: str) -> Any:
        with self.http() as client:
            answer = client.get(path)
        return answer.json() if answer.status_code == 200 else None

    def manager(self, token: str = USER_TOKEN, **options: Any) -> JobManager:
        options.setdefault("heartbeat_interval", 1.0)
        options.setdefault("polling_interval", 0.5)
        return JobManager(self.url, token, **options)

    # -- server-side views -----------------------------------------------------

    def worker_ids(self) -> set[str]:
        return {item["id"] for item in self.get("/workers?limit=500")["items"]}

    def job_workers(self, room: str, full_name: str) -> list[str]:
        job = self.get(f"/rooms/{room}/jobs/{full_name}")
        return [] if job is None else list(job["workers"])

    def task(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/tasks/{task_id}")
        return result

    def history(self, worker_id: str) -> list[dict[str, Any]]:
        """The worker's timeline: `GET .../history` if the host has it, else the CLI."""
        body = self.get(f"/workers/{worker_id}/history")
        if body is None:
            command = [sys.executable, "-m", "workerledger", "history", worker_id, "--json"]
            result = subprocess.run(command, env=self.env, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            body = json.loads(result.stdout)
        timeline: list[dict[str, Any]] = body["timeline"]
        return timeline

    def submit_raw(self, room: str, full_name: str, payload: dict[str, Any]) -> str:
        with self.http(USER_TOKEN) as client:
            answer = client.post(f"/rooms/{room}/tasks/{full_name}", json={"payload": payload})
        assert answer.status_code == 202, answer.text
        task_id: str = answer.json()["id"]
        return task_id


class Recorder:
    """An `execute` callable that records what it ran; `hold` makes tasks wait until
    cancelled or released."""

    def __init__(self, *, hold: bool = False) -> None:
        self.hold = hold
        self.release = threading.Event()
        self.started: list[str] = []
        self.saw_cancel: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, task: ClaimedTask[Any]) -> None:
        with self.lock:
            self.started.append(task.task_id)
        while self.hold and not self.release.is_set():
            if task.wait_cancelled(0.05):
                self.saw_cancel.append(task.task_id)
                task.raise_if_cancelled()
        task.extension.run(task)
