"""The Socket.IO side: one connection (websocket transport), acknowledged joins and
leaves, and a maintenance thread that (re)announces the worker after every connect.

python-socketio runs event handlers on their own threads; the handlers here only set
flags and call the manager's small callbacks. Anything that waits for the server
(acknowledged `join_job_room` after a reconnect) runs on the maintenance thread, never
on a Socket.IO thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import socketio

from .errors import ClientError
from .retry import backoff_delay

logger = logging.getLogger("workerledger.client")


class AckError(ClientError):
    """The server refused an event with an error acknowledgement (or never answered)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def new_socketio_client() -> socketio.Client:
    """The client the manager builds when none is given. Its reconnects are driven by
    `SocketLink` (with a real connect timeout, unlike python-socketio's loop, which
    always waits 1 s), and SIGINT is left to `JobManager.wait()`."""
    return socketio.Client(reconnection=False, handle_sigint=False)


class SocketLink:
    """Owns the lifecycle of one `socketio.Client` on behalf of a `JobManager`."""

    def __init__(
        self,
        client: socketio.Client,
        *,
        url: str,
        auth: Callable[[], dict[str, Any]],
        on_connected: Callable[[], None],
        on_event: Callable[[str, dict[str, Any]], None],
        owned: bool,
        connect_timeout: float = 5.0,
    ) -> None:
        self.client = client
        self._url = url
        self._auth = auth
        self._on_connected = on_connected
        self._on_event = on_event
        self._owned = owned
        self._connect_timeout = connect_timeout
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._announce = threading.Event()
        self._ready = threading.Event()  # connected and the worker re-announced
        self._emit_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ever_connected = False
        self._ever_announced = False
        client.on("connect", self._handle_connect)
        client.on("disconnect", self._handle_disconnect)
        for name in ("task_available", "task_cancelled", "provider_request", "worker_drain"):
            client.on(name, self._handler_for(name))

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._maintain, name="workerledger-socketio", daemon=True
            )
            self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until connected and announced (rooms joined); False on timeout."""
        return self._ready.wait(timeout)

    def call(self, event: str, data: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Emit with an acknowledgement; return `{"ok": ...}` or raise `AckError`."""
        if not self.connected:
            raise AckError("not-connected", f"cannot send {event}: Socket.IO is not connected")
        answered = threading.Event()
        answer: list[Any] = []

        def callback(*args: Any) -> None:
            answer.extend(args)
            answered.set()

        try:
            with self._emit_lock:
                self.client.emit(event, data, callback=callback)
        except socketio.exceptions.SocketIOError as error:
            raise AckError("not-connected", f"cannot send {event}: {error}") from error
        if not answered.wait(timeout):
            raise AckError("ack-timeout", f"no acknowledgement for {event} within {timeout} s")
        return _check_ack(answer[0] if answer else None)

    def close(self, timeout: float) -> None:
        """Stop maintaining the connection and close it (only if this link owns it)."""
        self._stop.set()
        self._wake.set()
        if self._owned:
            try:
                self.client.shutdown()
            except Exception as error:  # closing must never raise
                logger.debug("socket shutdown failed: %r", error)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _handler_for(self, name: str) -> Callable[[Any], None]:
        def handler(data: Any = None) -> None:
            try:
                self._on_event(name, data if isinstance(data, dict) else {})
            except Exception:
                logger.exception("handler for %s failed", name)

        return handler

    def _handle_connect(self) -> None:
        self._announce.set()
        self._wake.set()

    def _handle_disconnect(self, reason: str = "") -> None:
        self._ready.clear()
        if not self._stop.is_set():
            logger.info("Socket.IO disconnected (%s); reconnecting", reason)
        self._wake.set()

    def _maintain(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._wake.clear()
            if self._announce.is_set():
                self._announce.clear()
                self._run_announce()
            if not self.connected and self._should_connect():
                if self._try_connect():
                    attempt = 0
                    continue
                self._wake.wait(backoff_delay(attempt, base=0.5))
                attempt += 1
                continue
            self._wake.wait()

    def _run_announce(self) -> None:
        if self._ever_announced:
            logger.info("Socket.IO reconnected; re-joining the job rooms")
        self._ever_announced = True
        try:
            self._on_connected()
        except Exception:
            logger.exception("re-announcing the worker after connect failed")
        if self.connected:
            self._ready.set()

    def _should_connect(self) -> bool:
        """Always before the first connect; afterwards only for clients without their
        own reconnection loop (a given client with `reconnection=True` keeps its own)."""
        return not self._ever_connected or not getattr(self.client, "reconnection", False)

    def _try_connect(self) -> bool:
        try:
            self.client.connect(
                self._url,
                auth=self._auth,
                transports=["websocket"],
                wait_timeout=self._connect_timeout,
            )
        except (socketio.exceptions.ConnectionError, ValueError) as error:
            logger.debug("Socket.IO connect failed: %s", error)
            return False
        self._ever_connected = True
        return True


def _check_ack(answer: Any) -> dict[str, Any]:
    if isinstance(answer, dict) and "error" not in answer:
        return answer
    if isinstance(answer, dict):
        error = answer["error"]
        if isinstance(error, dict):
            code = str(error.get("code") or error.get("type") or "error").rsplit("/", 1)[-1]
            return _raise(code, str(error.get("detail") or error.get("message") or error))
        return _raise("error", str(error))
    return _raise("bad-ack", f"unexpected acknowledgement {answer!r}")


def _raise(code: str, detail: str) -> dict[str, Any]:
    raise AckError(code, detail)
