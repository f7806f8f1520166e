"""A provider worker on zndraw-joblib 0.1.7's own SDK, run with the peer's python
(bench/peer_zndraw `ensure_venv()`); it imports nothing from workerledger.

    PEER_PYTHON tests/support/peer_provider_worker.py URL TOKEN ROOM

The peer's virtualenv has no transport for python-socketio's sync client (neither
websocket-client nor requests): the test lends it workerledger's websocket-client on
PYTHONPATH. Connects a `zndraw_socketio.SyncClientWrapper`, registers `PeerFiles` as provider
`ROOM:filesystem:peer` with `JobManager.register_provider`, prints one JSON line
{"event": "ready", "worker_id", "provider_id"} and serves until killed.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, ClassVar

import httpx
import socketio
from zndraw_joblib.client import JobManager
from zndraw_joblib.provider import Provider
from zndraw_socketio import SyncClientWrapper

FILES = {"/x": "peer x"}


class PeerFiles(Provider):
    category: ClassVar[str] = "filesystem"
    path: str

    def read(self, handler: Any) -> Any:
        return {"path": self.path, "text": handler[self.path]}


class Api:
    """The `ApiManager` 0.1.7's JobManager expects (its error mapping included)."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(timeout=10.0)
        self._url, self._token = url.rstrip("/"), token

    @property
    def base_url(self) -> str:
        return self._url

    def get_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code == 404:
            raise KeyError(response.text)
        if response.status_code in (401, 403):
            raise PermissionError(response.text)
        if response.status_code in (409, 422):
            raise ValueError(response.text)
        response.raise_for_status()


def main(url: str, token: str, room: str) -> int:
    tsio = SyncClientWrapper(socketio.Client())
    tsio.connect(url, auth={"token": token}, transports=["websocket"], wait=True)
    manager = JobManager(Api(url, token), tsio=tsio, heartbeat_interval=1.0)
    provider_id = manager.register_provider(PeerFiles, name="peer", handler=FILES, room=room)
    print(
        json.dumps({"event": "ready", "worker_id": str(manager._worker_id),
                    "provider_id": str(provider_id)}),
        flush=True,
    )  # fmt: skip
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
