"""A worker process that serves providers with the real SDK (`JobManager.register_provider`).

    python tests/support/provider_worker.py URL TOKEN ROOM

Registers two providers in ROOM, both served from `FILES` (a dict standing in for a
filesystem): `ROOM:filesystem:local` (`Files`, JSON) and `ROOM:blobs:local` (`Blobs`,
`application/octet-stream`, the raw bytes). Prints one JSON line
{"event": "ready", "worker_id", "providers": {full_name: id}} once both are registered
and their rooms joined, then obeys stdin lines:

- `disconnect`: `JobManager.disconnect()`, then prints {"event": "left"} and exits;

and leaves the same way on SIGTERM/SIGINT. The tests SIGKILL it to see a crash.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, ClassVar

from workerledger.client import JobManager, Provider

FILES: dict[str, str] = {"/x": "hello from x", "/y": "why"}


class Files(Provider):
    """Reads a file's text by path; a missing path is an error (no result is sent)."""

    category: ClassVar[str] = "filesystem"
    path: str

    def read(self, handler: Any) -> Any:
        return {"path": self.path, "text": handler[self.path]}


class Blobs(Provider):
    """The file's text as raw bytes, served as `application/octet-stream`."""

    category: ClassVar[str] = "blobs"
    content_type: ClassVar[str] = "application/octet-stream"
    path: str

    def read(self, handler: Any) -> Any:
        return b"\x00raw:" + handler[self.path].encode()


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def main(url: str, token: str, room: str) -> int:
    manager = JobManager(url, token, heartbeat_interval=1.0)
    ids = {
        f"{room}:filesystem:local": manager.register_provider(
            Files, name="local", handler=FILES, room=room
        ),
        f"{room}:blobs:local": manager.register_provider(
            Blobs, name="local", handler=FILES, room=room
        ),
    }
    say("ready", worker_id=manager.worker_id, providers=ids)

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "disconnect":
                break
        manager.disconnect()

    threading.Thread(target=commands, daemon=True).start()
    manager.wait()
    say("left")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
