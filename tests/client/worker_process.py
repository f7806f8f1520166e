"""A worker process for the client tests: `python worker_process.py URL TOKEN ROOM`.

Registers `Redo` in ROOM, runs tasks until they are cancelled, prints
`READY <worker_id>` and `START <task_id>`, and leaves on SIGTERM/SIGINT via `wait()`.
"""

from __future__ import annotations

import sys
from typing import Any

from client_support import Redo
from workerledger.client import ClaimedTask

from workerledger import JobManager


def hold_until_cancelled(task: ClaimedTask[Any]) -> None:
    print(f"START {task.task_id}", flush=True)
    task.wait_cancelled()
    task.raise_if_cancelled()


def main(url: str, token: str, room: str) -> int:
    manager = JobManager(url, token, execute=hold_until_cancelled, heartbeat_interval=1.0)
    manager.register(Redo, room=room)
    print(f"READY {manager.worker_id}", flush=True)
    manager.wait()
    print("LEFT", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
