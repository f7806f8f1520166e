"""Providers in the worker SDK: a worker's resources that serve reads on demand.

A `Provider` subclass is a pydantic model of one read's parameters (its JSON schema is
registered with the server) with a `category` and a `read(handler)` that does the
work against the handler object given at registration (a filesystem, a frame source).

`ProviderRegistry` keeps the registered providers of one `JobManager`:

- `register` PUTs `/rooms/{room}/providers` (creating the worker when there is none
  yet), then joins `providers:<full name>` over Socket.IO (acknowledged); every
  (re)connect re-joins, and a worker the server lost re-registers its providers.
- `provider_request {request_id, provider_name, params}` from the Socket.IO thread is
  only handed to a thread pool (never run on the callback thread, unlike 0.1.7): the
  pool thread validates `params` against the class, calls `read(handler)` and POSTs
  the result to `/providers/{id}/results` with `X-Request-Hash: request_id`. The body
  is JSON (`json.dumps(result)`) unless the provider's content type is not JSON and
  `read` returned bytes, which are sent as they are. A request id already being
  served is not served twice.
- On `disconnect()` the provider rooms are left (acknowledged) and the worker's
  DELETE removes its providers on the server, in the same decision that ends the
  worker (with `providers_invalidate` to each room): no per-provider DELETE is sent.
  `unregister` removes one provider while the worker goes on.

A read that raises is logged; no result is sent, so the reader gets 504
`provider-timeout` and may retry.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from .errors import ServerError, ServerUnavailableError, WorkerGoneError
from .realtime import AckError
from .retry import retry_transient

if TYPE_CHECKING:
    from .session import Session

logger = logging.getLogger("workerledger.client")
JSON = "application/json"
RESULT_RETRY_SECONDS = 30.0  # a reader waits at most the server's long-poll cap for it


class Provider(BaseModel):
    """Base of provider read requests: fields are the read's parameters.

    Example::

        class FilesystemRead(Provider):
            category: ClassVar[str] = "filesystem"
            path: str

            def read(self, handler: Any) -> Any:
                return handler.cat(self.path)
    """

    category: ClassVar[str]
    content_type: ClassVar[str] = JSON

    def read(self, handler: Any) -> Any:
        """Answer this read using `handler`: JSON-serialisable data, or bytes for a
        provider whose `content_type` is not JSON."""
        raise NotImplementedError(f"{type(self).__name__}.read")


@dataclass
class RegisteredProvider:
    id: str
    full_name: str
    room_id: str
    name: str
    cls: type[Provider]
    handler: Any

    def body(self, worker_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "category": self.cls.category,
            "name": self.name,
            "schema": self.cls.model_json_schema(),
            "content_type": self.cls.content_type,
        }
        if worker_id is not None:
            body["worker_id"] = worker_id
        return body


def encode_result(cls: type[Provider], result: Any) -> bytes:
    """The result's body: raw bytes for a non-JSON provider returning bytes, else JSON."""
    if cls.content_type != JSON and isinstance(result, bytes | bytearray | memoryview):
        return bytes(result)
    return json.dumps(result).encode()


class ProviderRegistry:
    """The providers of one worker; thread-safe. Reads run on `max_workers` threads."""

    def __init__(self, session: Session, *, max_workers: int = 4) -> None:
        self.session = session
        self._lock = threading.Lock()
        self._providers: dict[str, RegisteredProvider] = {}
        self._serving: set[tuple[str, str]] = set()  # (provider, request id) in flight
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="workerledger-provider")

    def __len__(self) -> int:
        with self._lock:
            return len(self._providers)

    def get(self, full_name: str) -> RegisteredProvider | None:
        with self._lock:
            return self._providers.get(full_name)

    def all(self) -> list[RegisteredProvider]:
        with self._lock:
            return list(self._providers.values())

    # -- registration --------------------------------------------------------

    def register(self, cls: type[Provider], *, name: str, handler: Any, room: str) -> str:
        """PUT the provider (creating the worker if needed), then join its room; its id."""
        category = getattr(cls, "category", None)
        if not isinstance(category, str) or not category:
            raise TypeError(f"{cls.__name__} needs a `category: ClassVar[str]`")
        provider = RegisteredProvider(
            id="", full_name=f"{room}:{category}:{name}", room_id=room, name=name,
            cls=cls, handler=handler,
        )  # fmt: skip
        s = self.session
        with s.register_lock:
            try:
                self._put(provider)
            except WorkerGoneError:
                s._reregister_locked(s.worker_id, "provider registration")
                self._put(provider)
            with self._lock:
                self._providers[provider.full_name] = provider
        if s.link is not None and s.link.connected:
            self.join(provider)
        return provider.id

    def _put(self, provider: RegisteredProvider) -> None:
        """PUT one provider for the current worker (a new worker when there is none)."""
        s = self.session
        worker_id = s.worker_id
        key = None if worker_id is not None else f"wl-{uuid.uuid4()}"
        answer = retry_transient(
            lambda: s.rest.register_provider(
                provider.room_id, provider.body(worker_id), idempotency_key=key
            ),
            stop=s.stop,
            deadline_seconds=s.startup_timeout,
            what=f"register provider {provider.full_name}",
            outage=s.outage,
        )
        provider_id, new_worker = answer.get("id"), answer.get("worker_id")
        if not provider_id or not new_worker:
            raise ServerError(500, "bad-answer", f"provider registration answered {answer!r}")
        provider.id = str(provider_id)
        if worker_id is None:
            s.adopt_worker(str(new_worker))

    def reregister_locked(self) -> None:
        """Put every provider again for the current worker (the session holds its
        register lock: the server lost the worker, and its providers with it)."""
        for provider in self.all():
            self._put(provider)

    def unregister(self, full_name: str, *, timeout: float) -> bool:
        """Remove one provider on the server (its room is left there); False if unknown."""
        with self._lock:
            provider = self._providers.pop(full_name, None)
        if provider is None:
            return False
        try:
            self.session.rest.delete_provider(provider.id, timeout=timeout)
        except ServerError as error:
            if error.code != "provider-not-found":
                raise
        return True

    # -- rooms ---------------------------------------------------------------

    def join(self, provider: RegisteredProvider) -> None:
        self.session.join_room("join_provider_room", "provider_name", provider.full_name)

    def announce(self, worker_id: str | None) -> None:
        """Join every provider room for `worker_id` (after each (re)connect)."""
        s = self.session
        for provider in self.all():
            if s.stop.is_set() or s.worker_id != worker_id:
                return  # stopping, or a re-registration announced itself already
            self.join(provider)

    def leave_rooms(self, worker_id: str, timeout: float) -> int:
        """Leave every provider room (acknowledged); how many leaves were confirmed."""
        link = self.session.link
        if link is None or not link.connected:
            return 0
        confirmed = 0
        for provider in self.all():
            data = {"provider_name": provider.full_name, "worker_id": worker_id}
            try:
                link.call("leave_provider_room", data, timeout)
                confirmed += 1
            except AckError as error:
                name = provider.full_name
                logger.warning("leave_provider_room %s not confirmed: %s", name, error)
        return confirmed

    # -- serving reads -------------------------------------------------------

    def on_request(self, data: dict[str, Any]) -> None:
        """The `provider_request` callback: hand the read to the pool and return."""
        name, request_id = data.get("provider_name"), data.get("request_id")
        if not isinstance(name, str) or not isinstance(request_id, str):
            logger.warning("malformed provider_request ignored: %r", data)
            return
        provider = self.get(name)
        if provider is None:
            logger.warning("provider_request for unknown provider %s ignored", name)
            return
        with self._lock:
            if (name, request_id) in self._serving or self.session.stop.is_set():
                return
            self._serving.add((name, request_id))
        try:
            self._pool.submit(self._serve, provider, request_id, data.get("params"))
        except RuntimeError:  # the pool shut down meanwhile
            with self._lock:
                self._serving.discard((name, request_id))

    def _serve(self, provider: RegisteredProvider, request_id: str, params: Any) -> None:
        try:
            body = self._read(provider, params)
            if body is not None:
                self._upload(provider, request_id, body)
        finally:
            with self._lock:
                self._serving.discard((provider.full_name, request_id))

    def _read(self, provider: RegisteredProvider, params: Any) -> bytes | None:
        try:
            values = json.loads(params) if isinstance(params, str | bytes) else params
            request = provider.cls.model_validate(values or {})
            return encode_result(provider.cls, request.read(provider.handler))
        except Exception:
            logger.exception("provider %s: read failed for %r", provider.full_name, params)
            return None

    def _upload(self, provider: RegisteredProvider, request_id: str, body: bytes) -> None:
        s = self.session
        try:
            retry_transient(
                lambda: s.rest.post_provider_result(
                    provider.id, request_id, body, content_type=provider.cls.content_type
                ),
                stop=s.stop,
                deadline_seconds=RESULT_RETRY_SECONDS,
                what=f"result of {provider.full_name}",
                outage=s.outage,
            )
        except (ServerError, ServerUnavailableError) as error:
            logger.warning("provider %s: result %s not stored: %s", provider.full_name,
                           request_id, error)  # fmt: skip

    # -- shutdown ------------------------------------------------------------

    def close(self) -> None:
        """Stop serving: reads not started are dropped; running ones finish on their own
        (their results are refused once the worker is gone; the process waits for them
        at exit)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._providers.clear()
