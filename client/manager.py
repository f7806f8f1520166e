"""`JobManager`: the worker client's public API."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar, overload

import httpx
import socketio

from .api import ApiManager, Rest, TokenApi, bearer_token, new_idempotency_key
from .errors import ClientError
from .models import GLOBAL_ROOM, ClaimedTask, Extension, TaskInfo
from .providers import Provider, ProviderRegistry
from .realtime import SocketLink, new_socketio_client
from .retry import retry_transient
from .runner import Execute, TaskRunner
from .session import Job, Session
from .shutdown import leave, stop_signals

logger = logging.getLogger("workerledger.client")
X = TypeVar("X", bound=type[Extension])


class JobManager:
    """Registers jobs, claims and runs tasks, heartbeats, and leaves cleanly.

    `server` is the host's base URL (with `token`, default `$WORKERLEDGER_TOKEN`) or
    an `ApiManager` supplying an httpx client and headers. `sio` is a
    `socketio.Client` to use, True to build one (websocket transport), or False
    for a REST-only worker. With `execute`, tasks are claimed and run in the
    background; without it, use `listen()`. `transport` (only with a URL) is the
    httpx transport of the REST calls, e.g. a wrapper around `httpx.HTTPTransport`.
    `register_provider` adds providers, whose reads run on `provider_threads` threads.

    Writes are retried on transport failures and 5xx for up to `report_timeout`
    (registration: `startup_timeout`); submit and claim carry an `Idempotency-Key`
    re-sent on every retry, so a lost answer never duplicates or strands a task.

    A drain (`worker_drain` over Socket.IO, from `workerledger drain` or the REST
    route) stops claiming, lets the running task finish and report, then leaves like
    `disconnect()`; `wait()` returns. `draining` tells it happened.
    """

    def __init__(
        self,
        server: str | ApiManager,
        token: str | None = None,
        *,
        sio: socketio.Client | bool = True,
        execute: Execute | None = None,
        heartbeat_interval: float = 10.0,
        polling_interval: float = 2.0,
        request_timeout: float = 10.0,
        ack_timeout: float = 5.0,
        startup_timeout: float = 60.0,
        report_timeout: float = 120.0,
        drain_timeout: float = 10.0,
        shutdown_timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        provider_threads: int = 4,
    ) -> None:
        self._own_api: TokenApi | None = None
        if isinstance(server, str):
            token = token or os.environ.get("WORKERLEDGER_TOKEN")
            if not token:
                raise ValueError("a bearer token is needed (argument or WORKERLEDGER_TOKEN)")
            self._own_api = TokenApi(server, token, timeout=request_timeout, transport=transport)
            server = self._own_api
        elif transport is not None:
            raise ValueError("transport= needs a URL; an ApiManager brings its own httpx client")
        self.api: ApiManager = server
        self._session = Session(
            Rest(server, request_timeout), ack_timeout=ack_timeout, startup_timeout=startup_timeout
        )
        self._runner = TaskRunner(self._session, report_timeout=report_timeout)
        self._providers = ProviderRegistry(self._session, max_workers=provider_threads)
        self._session.providers = self._providers
        self._execute = execute
        self._intervals = (heartbeat_interval, polling_interval)
        self._timeouts = (drain_timeout, shutdown_timeout)
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._leave_lock = threading.Lock()
        self._left = False
        self._drain_lock = threading.Lock()
        self._drainer: threading.Thread | None = None
        if sio is not False:
            client = new_socketio_client() if sio is True else sio
            self._session.link = SocketLink(
                client,
                url=server.base_url,
                auth=self._socket_auth,
                on_connected=self._session.announce,
                on_event=self._on_event,
                owned=sio is True,
                connect_timeout=ack_timeout,
            )

    # -- identity ------------------------------------------------------------

    @property
    def worker_id(self) -> str | None:
        """The server-assigned worker id (None before the first registration)."""
        return self._session.worker_id

    @property
    def jobs(self) -> list[str]:
        """Full names (`room:category:name`) of the registered jobs."""
        return [job.full_name for job in self._session.job_list()]

    @property
    def providers(self) -> list[str]:
        """Full names (`room:category:name`) of the registered providers."""
        return [provider.full_name for provider in self._providers.all()]

    @property
    def handlers(self) -> dict[str, Any]:
        """The handler of each registered provider, by full name (as in 0.1.7)."""
        return {provider.full_name: provider.handler for provider in self._providers.all()}

    @property
    def draining(self) -> bool:
        """True once the server drained this worker (it claims nothing, then leaves)."""
        return self._session.draining.is_set()

    def __contains__(self, full_name: object) -> bool:
        return isinstance(full_name, str) and self._session.job(full_name) is not None

    def __len__(self) -> int:
        return len(self._session.job_list())

    # -- registration --------------------------------------------------------

    @overload
    def register(self, extension: X, *, room: str = GLOBAL_ROOM) -> X: ...
    @overload
    def register(self, *, room: str = GLOBAL_ROOM) -> Callable[[X], X]: ...

    def register(
        self, extension: X | None = None, *, room: str = GLOBAL_ROOM
    ) -> X | Callable[[X], X]:
        """Register an `Extension` subclass as a job in `room`; usable as a decorator.

        The first registration creates the worker (the server assigns its id); the
        worker then joins the job's room over Socket.IO (acknowledged).
        """

        def decorator(cls: X) -> X:
            self._register(cls, room)
            return cls

        return decorator if extension is None else decorator(extension)

    def _register(self, cls: type[Extension], room: str) -> None:
        if self._session.stop.is_set() or self._session.draining.is_set():
            raise ClientError("this JobManager has disconnected (or is draining)")
        self._session.register(Job(full_name=cls.full_name(room), room_id=room, cls=cls))
        self._start_background()

    def register_provider(
        self, provider_cls: type[Provider], *, name: str, handler: Any, room: str = GLOBAL_ROOM
    ) -> str:
        """Register `provider_cls` as provider `room:category:name`; returns its id.

        The first registration (job or provider) creates the worker. The worker joins
        the provider's room over Socket.IO (acknowledged, again after every reconnect)
        and answers each `provider_request` with `provider_cls(**params).read(handler)`
        on a background thread. The provider goes when the worker leaves or is lost.
        """
        if self._session.stop.is_set():
            raise ClientError("this JobManager has disconnected")
        provider_id = self._providers.register(provider_cls, name=name, handler=handler, room=room)
        self._start_background()
        return provider_id

    def unregister_provider(self, full_name: str) -> bool:
        """Remove one provider on the server (the worker goes on); False if unknown."""
        return self._providers.unregister(full_name, timeout=self._timeouts[1])

    def _start_background(self) -> None:
        with self._start_lock:
            if self._threads or self._session.stop.is_set():
                return
            heartbeat, polling = self._intervals
            self._spawn("heartbeat", self._runner.heartbeat_loop, heartbeat)
            if self._execute is not None:
                self._spawn("claim", self._runner.claim_loop, self._execute, polling)
        link = self._session.link
        if link is not None and not link.connected:
            link.start()
            link.wait_ready(self._session.ack_timeout)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(
            target=target, args=args, name=f"workerledger-{name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    # -- tasks: worker side --------------------------------------------------

    def claim(self) -> ClaimedTask[Any] | None:
        """Claim one task (None if none is pending). Bad tasks are failed on the server."""
        return self._runner.claim()

    def listen(self, stop_event: threading.Event | None = None) -> Iterator[ClaimedTask[Any]]:
        """Yield claimed tasks until the manager stops (or `stop_event` is set)."""
        if self._execute is not None:
            raise ClientError("listen() cannot be used together with execute=")
        session, polling = self._session, self._intervals[1]
        while not session.stop.is_set() and not (stop_event and stop_event.is_set()):
            if session.draining.is_set():
                return  # drained: the tasks yielded so far are yours to report
            session.wake.clear()
            task = self._runner.claim()
            if task is not None:
                yield task
            else:
                session.wake.wait(polling)

    def start(self, task: ClaimedTask[Any]) -> TaskInfo:
        return self._runner.report(task, "running")

    def complete(self, task: ClaimedTask[Any]) -> TaskInfo:
        return self._runner.report(task, "completed")

    def fail(self, task: ClaimedTask[Any], error: str) -> TaskInfo:
        return self._runner.report(task, "failed", error)

    def cancel(self, task: ClaimedTask[Any] | str, error: str | None = None) -> TaskInfo:
        """Cancel a held task (fenced by its attempt), or any task id you submitted."""
        if isinstance(task, ClaimedTask):
            return self._runner.report(task, "cancelled", error)
        return self._runner.report_status(task, "cancelled", error, None, None)

    # -- tasks: submitter side -----------------------------------------------

    def submit(
        self, extension: Extension, room: str = GLOBAL_ROOM, *, job_room: str = GLOBAL_ROOM
    ) -> str:
        """Submit a task for `type(extension)`'s job in `job_room`, from `room`.

        Retried under one `Idempotency-Key`: a resend after a lost answer returns the
        task the first try created, never a second task.
        """
        job_name = type(extension).full_name(job_room)
        payload = extension.model_dump(mode="json")
        key = new_idempotency_key()
        session = self._session
        task = retry_transient(
            lambda: session.rest.submit(room, job_name, payload, idempotency_key=key),
            stop=session.stop,
            deadline_seconds=self._runner.report_timeout,
            what=f"submit {job_name}",
            outage=session.outage,
        )
        return task.id

    def get_task(self, task_id: str) -> TaskInfo:
        return self._session.rest.get_task(task_id)

    def wait_for_task(self, task_id: str, timeout: float = 60.0) -> TaskInfo:
        """Long-poll until the task is terminal or `timeout` passed; returns the last view."""
        deadline = time.monotonic() + timeout
        info = self._session.rest.get_task(task_id)
        while not info.is_terminal and (left := deadline - time.monotonic()) > 0:
            info = self._session.rest.get_task(task_id, wait_seconds=max(1, min(int(left), 30)))
        return info

    # -- lifecycle -----------------------------------------------------------

    def disconnect(self) -> None:
        """Leave rooms (acknowledged), DELETE the worker, clear the registry.

        Idempotent and thread-safe; bounded in time when the server is unreachable.
        Provider rooms are left like job rooms; the worker's DELETE removes its
        providers on the server in the same decision (no per-provider DELETE).
        """
        with self._leave_lock:
            if self._left:
                return
            self._left = True
            drain, budget = self._timeouts
            leave(
                self._session,
                self._runner,
                # Only the claim thread is drained: an in-flight heartbeat may land
                # after the DELETE (its 404 is ignored while stopping).
                [t for t in self._threads if t.name == "workerledger-claim"],
                drain_timeout=drain,
                shutdown_timeout=budget,
            )
            self._providers.close()
            if self._own_api is not None:
                self._own_api.close()

    def wait(self) -> None:
        """Block until SIGINT/SIGTERM, a fatal error, a finished drain or `disconnect()`;
        then disconnect (after a drain: once its leave is done)."""
        with stop_signals() as received:
            while not received and not self._session.stop.wait(0.2):
                pass
        self.disconnect()

    def __enter__(self) -> JobManager:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    # -- Socket.IO callbacks -------------------------------------------------

    def _socket_auth(self) -> dict[str, Any]:
        return {"token": bearer_token(self.api) or ""}

    def _on_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "worker_drain":
            self._begin_drain(data)
        elif name == "provider_request":
            self._providers.on_request(data)  # only queues the read: this is a Socket.IO thread
        elif name == "task_available":
            self._session.wake.set()
        elif name == "task_cancelled" and isinstance(data.get("task_id"), str):
            attempt = data.get("attempt")
            reason = data.get("error")
            self._session.cancelled_by_server(
                data["task_id"], attempt if isinstance(attempt, int) else None, reason
            )

    # -- drain ---------------------------------------------------------------

    def _begin_drain(self, data: dict[str, Any]) -> None:
        """The server drained this worker: stop claiming, then leave on a thread of its
        own (this is a Socket.IO thread, which must not wait)."""
        with self._drain_lock:
            session = self._session
            if self._drainer is not None or session.stop.is_set():
                return
            session.draining.set()
            session.wake.set()
            logger.info(
                "worker %s drained by %s (%s): finishing %d held task(s), then leaving",
                data.get("worker_id"), data.get("by"), data.get("reason"),
                len(session.held_tasks()),
            )  # fmt: skip
            self._drainer = threading.Thread(
                target=self._finish_drain, name="workerledger-drain", daemon=True
            )
            self._drainer.start()

    def _finish_drain(self) -> None:
        """Wait for the claim loop to finish its task (or, without `execute`, for the
        held tasks to be reported), then leave like `disconnect()`."""
        session = self._session
        for thread in [t for t in self._threads if t.name == "workerledger-claim"]:
            while thread.is_alive() and not session.stop.is_set():
                thread.join(0.1)
        while session.held_tasks() and not session.stop.wait(0.1):
            pass
        self.disconnect()
