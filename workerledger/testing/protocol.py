"""The public protocol of a running host, as a test drives it: REST over httpx and
Socket.IO over python-socketio's threaded client, nothing else.

`HostTarget` names what a test needs to know about the host: its base URL(s) (several
hosts of one deployment are used in turn), bearer tokens and the users they stand for,
and which parts of the protocol it speaks. `WorkerSocket` is one worker connection
(join/leave job rooms, a graceful close, an abrupt teardown of its TCP socket);
`Watcher` is a connection in `room:<room_id>` that keeps every event it receives and
lets a caller wait for them (no sleeps: a condition variable is notified per event).
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import socketio

PREFIX = "/v1/joblib"
WAIT = 10.0  # how long a step waits for the host before it reports a divergence


@dataclass(frozen=True)
class Token:
    """A bearer token and the user it authenticates as."""

    token: str
    user: str
    superuser: bool = False


@dataclass(frozen=True)
class HostTarget:
    """A running host (or several sharing one deployment) and how to reach it.

    `urls`: base URLs (`http://127.0.0.1:8000`); REST calls and new connections go to
    them in turn. `owner`: the token the machine's workers and tasks use; `other`: a
    second user, for forged ids (optional); `admin`: a superuser, for deletes (optional).
    `socketio`: the host serves Socket.IO (watchers, worker connections); without it the
    machine drives REST only and a "disconnect" is the worker's process going silent.
    `fencing`: task reports carry `worker_id` and `attempt`. `history`: the host serves
    `/workers/{id}/history` and `/tasks/{id}/history` with the replayed `state`.
    `problem_codes`: refusals are problem+json whose type ends with the core's code.
    """

    urls: Sequence[str]
    owner: Token
    other: Token | None = None
    admin: Token | None = None
    socketio: bool = True
    fencing: bool = True
    history: bool = True
    problem_codes: bool = True
    prefix: str = PREFIX
    wait_seconds: float = WAIT


@dataclass(frozen=True)
class Answer:
    """One REST answer: the status code, the JSON body (or None) and the problem code."""

    status: int
    body: Any
    code: str | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Rest:
    """REST calls to the target, spread over its URLs in turn."""

    def __init__(self, target: HostTarget) -> None:
        self.target = target
        self._clients = [
            httpx.Client(base_url=url.rstrip("/") + target.prefix, timeout=target.wait_seconds)
            for url in target.urls
        ]
        self._turn = itertools.cycle(range(len(self._clients)))

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def call(
        self,
        method: str,
        path: str,
        token: Token,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Answer:
        client = self._clients[next(self._turn)]
        sent = {"Authorization": f"Bearer {token.token}", **(headers or {})}
        if content is not None:
            sent.setdefault("Content-Type", "application/json")
            response = client.request(method, path, content=content, headers=sent)
        else:
            response = client.request(method, path, json=body, headers=sent)
        try:
            parsed = response.json() if response.content else None
        except ValueError:
            parsed = response.text
        code = None
        if isinstance(parsed, dict) and isinstance(parsed.get("type"), str):
            code = parsed["type"].rsplit("/", 1)[-1]
        return Answer(response.status_code, parsed, code)

    def listing(self, path: str, token: Token) -> list[dict[str, Any]]:
        """Every item of a paginated listing."""
        items: list[dict[str, Any]] = []
        while True:
            answer = self.call("GET", f"{path}?limit=500&offset={len(items)}", token)
            if not answer.ok or not isinstance(answer.body, dict):
                raise HostProtocolError(f"GET {path} answered {answer.status}: {answer.body}")
            page = answer.body.get("items", [])
            items.extend(page)
            if not page or len(items) >= int(answer.body.get("total", 0)):
                return items


class HostProtocolError(AssertionError):
    """The host answered outside its protocol (an unexpected status, a missing field)."""


def _connect(url: str, token: Token, on_event: Callable[[str, Any], None]) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.on("*", on_event)
    client.connect(url, auth={"token": token.token}, transports=["websocket"], wait_timeout=WAIT)
    return client


class WorkerSocket:
    """One worker connection: a python-socketio client speaking for workers it names."""

    def __init__(self, url: str, token: Token, wait: float = WAIT) -> None:
        self.events: list[tuple[str, Any]] = []
        self.wait = wait
        self.client = _connect(url, token, self._on_event)
        self.sid = str(self.client.get_sid())

    def _on_event(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))

    def emit(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Emit with an ack; the ack (`{"ok": true}` or `{"error": {...}}`)."""
        ack = self.client.call(event, payload, timeout=self.wait)
        return ack if isinstance(ack, dict) else {"ack": ack}

    def close(self) -> None:
        """A graceful close (the Socket.IO disconnect packet)."""
        if self.client.connected:
            self.client.disconnect()

    def tear_down(self) -> None:
        """Shut the TCP socket down under the connection, as when the worker's process is
        killed or its network goes: no disconnect packet, no close frame."""
        ws = getattr(self.client.eio, "ws", None)
        sock = getattr(ws, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        else:  # not a websocket-client transport: the next best thing
            self.client.eio.disconnect(abort=True)
        deadline = time.monotonic() + self.wait
        while self.client.connected and time.monotonic() < deadline:
            self.client.sleep(0.01)  # the client's own loop notices the dead socket


@dataclass
class Watcher:
    """A connection in `room:<room_id>` that keeps every event it receives."""

    url: str
    token: Token
    room_id: str
    wait: float = WAIT
    events: list[tuple[str, Any]] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _client: socketio.Client | None = None

    def start(self) -> Watcher:
        self._client = _connect(self.url, self.token, self._on_event)
        ack = self._client.call("join_room", {"room_id": self.room_id}, timeout=self.wait)
        if ack != {"ok": True}:
            raise HostProtocolError(f"join_room {self.room_id} answered {ack}")
        return self

    def _on_event(self, event: str, data: Any = None) -> None:
        with self._changed:
            self.events.append((event, data))
            self._changed.notify_all()

    def wait_until(self, done: Callable[[list[tuple[str, Any]]], bool], seconds: float) -> bool:
        """Wait (notified per event) until `done(events)` holds or `seconds` pass."""
        deadline = time.monotonic() + seconds
        with self._changed:
            while not done(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def close(self) -> None:
        if self._client is not None and self._client.connected:
            self._client.disconnect()
