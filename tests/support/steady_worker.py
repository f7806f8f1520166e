"""A worker process of the rolling-restart test: the real SDK (`JobManager`), nothing
mocked, serving `Steady` tasks, each of which sleeps its payload's `seconds`.

    python tests/support/steady_worker.py URL TOKEN ROOM LOG

LOG gets one JSON line per event, each one O_APPEND write (support.sdk_worker.Log):
`ready` (worker id), `start` and `end` of every execution (task id, attempt, time) and
`left` once `wait()` returned, that is after a drain (or SIGTERM) and the clean leave.
SDK warnings go to stderr. Exit code 0 after a clean leave.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/: the `support` package

from workerledger.client import ClaimedTask, Extension, JobManager

from support.sdk_worker import Log


class Steady(Extension):
    """A task of the steady stream: `seconds` of work. A lost worker's running task
    fails (the server's default), so a rough restart would show as a failure."""

    category: ClassVar[str] = "modifiers"
    seconds: float = 0.3


def run(url: str, token: str, room: str, log_path: str) -> int:
    log = Log(log_path)

    def execute(task: ClaimedTask[Any]) -> None:
        fields = {"task": task.task_id, "attempt": task.attempt, "worker": task.worker_id}
        log.write("start", t=time.time(), **fields)
        time.sleep(task.extension.seconds)  # the work
        log.write("end", t=time.time(), **fields)

    manager = JobManager(url, token, execute=execute, heartbeat_interval=1.0,
                         polling_interval=0.5)  # fmt: skip
    manager.register(Steady, room=room)
    log.write("ready", worker=manager.worker_id, t=time.time())
    manager.wait()
    log.write("left", worker=manager.worker_id, drained=manager.draining, t=time.time())
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(run(*sys.argv[1:5]))
