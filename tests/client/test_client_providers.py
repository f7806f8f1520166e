"""Providers in the worker SDK against the real host (`workerledger serve`, grace 0):
reads served by a worker process, its SIGKILL seen by a room watcher as
`providers_invalidate`, a clean `disconnect()`, reads that never block the Socket.IO
thread, re-registration after the server lost the worker, and zndraw-joblib 0.1.7's own
`JobManager.register_provider` (its virtualenv from bench/peer_zndraw, when built)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import socketio
import websocket
from client_support import USER_TOKEN, Host, wait_until
from support.provider_worker import FILES, Files
from workerledger.client import Provider

WAIT = 15.0  # failure bound for an awaited event, never a measured time
PROVIDER_WORKER = str(Path(__file__).resolve().parents[1] / "support" / "provider_worker.py")
PEER_WORKER = str(Path(__file__).resolve().parents[1] / "support" / "peer_provider_worker.py")
PEER_PYTHON = Path(__file__).resolve().parents[2] / "bench/.work/zndraw-joblib-0.1.7/bin/python"


class Watcher:
    """A Socket.IO client in `room:<room>`; queues (event, data, arrival time)."""

    def __init__(self, url: str, room: str) -> None:
        self.events: queue.Queue[tuple[str, Any, float]] = queue.Queue()
        self.client = socketio.Client(reconnection=False)
        self.client.on("*", self._on_any)
        self.client.connect(url, auth={"token": USER_TOKEN}, transports=["websocket"])
        assert self.client.call("join_room", {"room_id": room}, timeout=WAIT) == {"ok": True}

    def _on_any(self, event: str, data: Any = None) -> None:
        self.events.put((event, data, time.monotonic()))

    def next(self, event: str) -> float:
        """The arrival time of the next `event`."""
        deadline = time.monotonic() + WAIT
        while True:
            name, _data, at = self.events.get(timeout=max(0.001, deadline - time.monotonic()))
            if name == event:
                return at

    def close(self) -> None:
        self.client.disconnect()


@pytest.fixture
def watch(host: Host) -> Iterator[Any]:
    made: list[Watcher] = []

    def watch(room: str) -> Watcher:
        made.append(Watcher(host.url, room))
        return made[-1]

    yield watch
    for watcher in made:
        watcher.close()


def read(host: Host, room: str, full_name: str, path: str) -> httpx.Response:
    with host.http(USER_TOKEN) as http:
        return http.get(
            f"/rooms/{room}/providers/{full_name}",
            params={"path": path},
            headers={"Prefer": "wait=10"},
            timeout=WAIT,
        )


def listed(host: Host, room: str) -> dict[str, str]:
    """Full name -> worker id of the providers visible from `room`."""
    with host.http(USER_TOKEN) as http:
        items = http.get(f"/rooms/{room}/providers").json()["items"]
    return {item["full_name"]: item["worker_id"] for item in items}


class Process:
    """A worker subprocess printing JSON lines; lines are read on a thread."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout or ():
            self.lines.put(line)
        self.lines.put(None)  # the process closed its output

    def expect(self, event: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while True:
            line = self.lines.get(timeout=max(0.001, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"the worker exited ({self.proc.wait()}) before {event!r}")
            data: dict[str, Any] = json.loads(line)
            if data.get("event") == event:
                return data

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    made: list[Process] = []
    yield made
    for process in made:
        process.kill()


def test_worker_process_serves_reads_and_its_sigkill_invalidates_at_once(
    host: Host, room: str, watch: Any, processes: list[Process]
) -> None:
    # Given a worker process serving a JSON and a binary provider in the room
    worker = Process([sys.executable, PROVIDER_WORKER, host.url, USER_TOKEN, room])
    processes.append(worker)
    ready = worker.expect("ready")
    files, blobs = f"{room}:filesystem:local", f"{room}:blobs:local"
    assert listed(host, room) == {files: ready["worker_id"], blobs: ready["worker_id"]}

    # When a client reads from both
    text, raw = read(host, room, files, "/x"), read(host, room, blobs, "/y")

    # Then the worker answered each with its content type
    assert (text.status_code, text.json()) == (200, {"path": "/x", "text": "hello from x"})
    assert text.headers["content-type"].startswith("application/json")
    assert (raw.status_code, raw.content) == (200, b"\x00raw:why")
    assert raw.headers["content-type"].startswith("application/octet-stream")

    # When the worker process is SIGKILLed
    watcher = watch(room)
    killed_at = time.monotonic()
    os.kill(worker.proc.pid, signal.SIGKILL)

    # Then a watcher of the room is told at once (no sweep), and the providers are gone
    arrived = watcher.next("providers_invalidate")
    elapsed_ms = (arrived - killed_at) * 1000
    print(f"\nSIGKILL -> providers_invalidate at the watcher: {elapsed_ms:.1f} ms")
    assert listed(host, room) == {}
    assert read(host, room, files, "/x").status_code == 404
    history = host.get(f"/workers/{ready['worker_id']}/history")
    assert "WorkerLost" in [entry["type"] for entry in history["timeline"]]
    removed = {p["provider_name"] for p in history["providers"] if p["removed_at"]}
    assert removed == {files, blobs}


def test_clean_disconnect_removes_the_providers_at_once(host: Host, room: str, watch: Any) -> None:
    # Given an in-process worker serving a provider, and a watcher of its room
    manager = host.manager()
    with manager:
        provider_id = manager.register_provider(Files, name="local", handler=FILES, room=room)
        full_name = f"{room}:filesystem:local"
        assert manager.providers == [full_name]
        assert manager.handlers == {full_name: FILES}
        assert read(host, room, full_name, "/y").json() == {"path": "/y", "text": "why"}
        worker_id = manager.worker_id
        assert worker_id is not None and listed(host, room) == {full_name: worker_id}
        watcher = watch(room)

    # When it left (`with` exit: disconnect())
    # Then the provider is gone as soon as disconnect() returned, and the room was told
    assert listed(host, room) == {}
    watcher.next("providers_invalidate")
    with host.http(USER_TOKEN) as http:
        assert http.delete(f"/providers/{provider_id}").status_code == 404
    types = [entry["type"] for entry in host.history(worker_id)]
    assert types[-1] == "WorkerLeft" and "ProviderRoomLeft" in types


class Doors:
    def __init__(self) -> None:
        self.waiting = threading.Event()  # the `wait` read started
        self.opened = threading.Event()  # the `open` read ran


class Gate(Provider):
    """Its `wait` read blocks until an `open` read has run meanwhile."""

    category: ClassVar[str] = "gates"
    path: str

    def read(self, handler: Any) -> Any:
        if self.path == "open":
            handler.opened.set()
        else:
            handler.waiting.set()
            if not handler.opened.wait(WAIT):
                raise TimeoutError("no other read was served while this one waited")
        return self.path


def test_a_slow_read_never_blocks_the_next_one(host: Host, room: str) -> None:
    # Given a provider whose `wait` read blocks until an `open` read has been served
    with host.manager() as manager:
        doors = Doors()
        manager.register_provider(Gate, name="g", handler=doors, room=room)
        full_name = f"{room}:gates:g"
        slow: list[httpx.Response] = []
        reader = threading.Thread(target=lambda: slow.append(read(host, room, full_name, "wait")))

        # When the slow read is running in the worker and another read comes
        reader.start()
        assert doors.waiting.wait(WAIT)
        fast = read(host, room, full_name, "open")
        reader.join(WAIT)

    # Then both are answered: the second was served while the first still ran
    assert (fast.status_code, fast.json()) == (200, "open")
    assert [(r.status_code, r.json()) for r in slow] == [(200, "wait")]


def test_a_worker_lost_by_the_server_registers_its_providers_again(host: Host, room: str) -> None:
    # Given a worker serving a provider (grace 0: a dropped socket loses the worker)
    with host.manager() as manager:
        manager.register_provider(Files, name="local", handler=FILES, room=room)
        full_name = f"{room}:filesystem:local"
        first = manager.worker_id

        # When its Socket.IO connection drops (the SDK reconnects by itself)
        manager._session.link.client.disconnect()  # type: ignore[union-attr]

        # Then it notices the loss, registers the provider under a new worker, and serves
        second = wait_until(
            lambda: (w := listed(host, room).get(full_name)) != first and w, what="re-registered"
        )
        assert second == manager.worker_id
        # (listed once registered over REST; a read is dispatched to the provider's room,
        # which the new worker enters with its join: wait for that, as a reader would retry)
        wait_until(
            lambda: "ProviderRoomJoined" in [e["type"] for e in host.history(second or "")],
            what="the new worker in the provider's room",
        )
        answer = read(host, room, full_name, "/x")
        assert (answer.status_code, answer.json()["text"]) == (200, "hello from x")
    assert "WorkerLost" in [entry["type"] for entry in host.history(first or "")]


@pytest.mark.skipif(
    not PEER_PYTHON.exists(),
    reason="zndraw-joblib 0.1.7's virtualenv is not built (bench/peer_zndraw ensure_venv())",
)
def test_zndraw_joblib_0_1_7_register_provider_serves_a_read(
    host: Host, room: str, processes: list[Process], tmp_path: Path
) -> None:
    # Given a worker running zndraw-joblib 0.1.7's own JobManager.register_provider (its
    # venv lacks a sync Socket.IO transport: lend it our websocket-client, pure Python)
    lent = tmp_path / "lent"
    lent.mkdir()
    (lent / "websocket").symlink_to(Path(websocket.__file__).parent)
    env = {**os.environ, "PYTHONPATH": str(lent)}
    peer = Process([str(PEER_PYTHON), PEER_WORKER, host.url, USER_TOKEN, room], env=env)
    processes.append(peer)
    ready = peer.expect("ready")
    full_name = f"{room}:filesystem:peer"
    assert listed(host, room) == {full_name: ready["worker_id"]}
    # Its join_provider_room is not acknowledged (0.1.7 asks for no ack): wait for it
    wait_until(
        lambda: "ProviderRoomJoined" in [e["type"] for e in host.history(ready["worker_id"])],
        what="the peer's provider room joined",
    )

    # When a client reads from it
    answer = read(host, room, full_name, "/x")

    # Then the 0.1.7 worker answered through workerledger
    assert (answer.status_code, answer.json()) == (200, {"path": "/x", "text": "peer x"})

    # and its SIGKILL removes the provider at once
    peer.kill()
    wait_until(lambda: not listed(host, room), what="the peer's provider removed")
