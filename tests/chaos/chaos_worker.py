"""The one worker process of the chaos tests: the real SDK (`JobManager`), nothing mocked.

    python chaos_worker.py URL TOKEN ROOM LOG_PATH

Registers job ROOM:modifiers:Chaos (RUNNING tasks of a lost worker are requeued) and
runs every task it claims for 20-60 ms. LOG_PATH gets one JSON line per execution
start and end and per HTTP answer the SDK received (method, path, request body,
idempotency key, status, answer summary, send and receive times), each line one
O_APPEND write so that a SIGKILL loses nothing already done. The accounting of
tests/chaos/chaos_support.py reads these lines back. SIGTERM leaves gracefully.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any, ClassVar

import httpx
from workerledger.client import ClaimedTask, Extension, JobManager

PID = os.getpid()


class Chaos(Extension):
    on_worker_lost: ClassVar[str | None] = "requeue"
    max_worker_losses: ClassVar[int | None] = 1000  # every task must end completed
    n: int = 0


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


def main(url: str, token: str, room: str, log_path: str) -> int:
    log = Log(log_path)

    def execute(task: ClaimedTask[Any]) -> None:
        fields = {"task": task.task_id, "attempt": task.attempt, "worker": task.worker_id}
        log.write("start", t=time.time(), **fields)
        time.sleep(random.uniform(0.02, 0.06))
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


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
