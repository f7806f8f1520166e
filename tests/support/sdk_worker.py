"""The modes of the scripted worker (tests/support/worker.py) that run the real SDK
(`JobManager`), nothing mocked.

- `chaos`: registers `Chaos` and runs every task it claims for 20-60 ms. LOG gets one
  JSON line per execution start and end and per HTTP answer the SDK received (method,
  path, request body, idempotency key, status, answer summary, send and receive
  times), each line one O_APPEND write so that a SIGKILL loses nothing already done;
  tests/chaos/chaos_accounting.py reads these lines back.
- `hold`: registers `Redo`, prints `READY <worker_id>`, `START <task_id>` for each task,
  which it holds until the task is cancelled, and `LEFT` once `wait()` returned.

Both leave gracefully on SIGTERM/SIGINT (`JobManager.wait()`).
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import httpx
from workerledger.client import ClaimedTask, JobManager

from support.jobs import Chaos, Redo

PID = os.getpid()


class Log:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"ev": event, "pid": PID, **fields}) + "\n"
        os.write(self.fd, line.encode())


class LoggedApi:
    """An `ApiManager` whose httpx client logs every answer (event hooks)."""

    def __init__(self, url: str, token: str, log: Log) -> None:
        self._url = url.rstrip("/")
        self._token = token
        self.log = log
        hooks = {"request": [self._sent], "response": [self._answered]}
        self.http = httpx.Client(timeout=5.0, event_hooks=hooks)  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        return self._url

    def get_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _sent(self, request: httpx.Request) -> None:
        request.extensions["chaos_t0"] = time.time()

    def _answered(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        self.log.write(
            "http",
            method=request.method,
            path=request.url.path,
            req=decoded(request.content),
            key=request.headers.get("idempotency-key"),
            status=response.status_code,
            replayed=response.headers.get("idempotent-replayed"),
            answer=summary(decoded(response.content)),
            t0=request.extensions.get("chaos_t0"),
            t1=time.time(),
        )


def decoded(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:  # e.g. a plain-text 500
        return None


def summary(answer: Any) -> Any:
    """The parts of an answer the accounting needs (task id, status, attempt, problem)."""
    if not isinstance(answer, dict):
        return None
    if "task" in answer:
        answer = answer["task"] or {}
    keep = ("id", "status", "attempt", "worker_id", "type", "detail")
    return {k: answer[k] for k in keep if k in answer}


def run_chaos(url: str, token: str, room: str, log_path: str) -> int:
    log = Log(log_path)

    def execute(task: ClaimedTask[Any]) -> None:
        fields = {"task": task.task_id, "attempt": task.attempt, "worker": task.worker_id}
        log.write("start", t=time.time(), **fields)
        time.sleep(random.uniform(0.02, 0.06))  # the task's work
        log.write("end", t=time.time(), **fields)

    manager = JobManager(
        LoggedApi(url, token, log),
        execute=execute,
        heartbeat_interval=1.0,
        polling_interval=0.5,
        request_timeout=5.0,
    )
    manager.register(Chaos, room=room)
    log.write("ready", worker=manager.worker_id, t=time.time())
    manager.wait()
    log.write("left", t=time.time())
    return 0


def hold_until_cancelled(task: ClaimedTask[Any]) -> None:
    print(f"START {task.task_id}", flush=True)
    task.wait_cancelled()
    task.raise_if_cancelled()


def run_hold(url: str, token: str, room: str) -> int:
    manager = JobManager(url, token, execute=hold_until_cancelled, heartbeat_interval=1.0)
    manager.register(Redo, room=room)
    print(f"READY {manager.worker_id}", flush=True)
    manager.wait()
    print("LEFT", flush=True)
    return 0
