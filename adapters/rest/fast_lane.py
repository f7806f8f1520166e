"""The hot-request lane: a worker's four busiest requests answered below FastAPI.

A busy worker sends, per task, a submit (from its client), a claim and two status
reports, plus heartbeats. FastAPI's per-request work for them (dependency solving,
parameter extraction, response validation) cost more host CPU than the decision
itself (BENCHMARKS.md, "Per core"). `FastLane` wraps the app that serves
`create_router` and answers exactly these requests itself, when they are plainly
well-formed:

    POST  /v1/joblib/rooms/{room_id}/tasks/{job_name}   submit       (202)
    POST  /v1/joblib/tasks/claim                        claim        (200)
    PATCH /v1/joblib/tasks/{task_id}                    status report (200)
    PATCH /v1/joblib/workers/{worker_id}                heartbeat    (200)

"Plainly well-formed": a known bearer token, ids in canonical UUID form, lengths
within the router's limits, a declared `Content-Length` within `max_body_bytes`,
a JSON body (no content type or `application/json`) that parses strictly and
validates against the same request model FastAPI uses. Anything else is handed,
with the body already read replayed, to the wrapped app, which gives its usual
answer (401, 413, 422, ...). So the lane decides nothing about errors at the boundary
and cannot answer them differently. Past the boundary both call the same operations
(task_operations.py, `workers.record_heartbeat`), and a refusal of the core, the
store or the boundary rule is the same problem+json (`problem_response`). The body is
serialised by the same pydantic serializer FastAPI uses (`dump_json`, by alias).

The reference host turns it on (`WORKERLEDGER_REST_FAST_LANE`, default on). A host app
that mounts `create_router` is served by the FastAPI routes (the same answers); the
lane is not part of the package-root API, since it would bypass that app's own
middleware.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError
from workerledger.core import Actor, DomainError

from ..input_limits import InputRefused, parse_json
from ..ports import StoreError
from . import task_operations as operations
from .context import RestContext
from .models import (
    TaskClaimRequest,
    TaskClaimResponse,
    TaskResponse,
    TaskSubmitRequest,
    TaskUpdateRequest,
    WorkerResponse,
)
from .problems import problem_response
from .task_operations import PREFIX, Answer
from .workers import record_heartbeat

if TYPE_CHECKING:
    from ..runtime import LedgerRuntime

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_TASK = re.compile(f"{PREFIX}/tasks/({_UUID})")
_WORKER = re.compile(f"{PREFIX}/workers/({_UUID})")
_SUBMIT = re.compile(f"{PREFIX}/rooms/([^/]+)/tasks/(.*)", re.DOTALL)
_CLAIM = f"{PREFIX}/tasks/claim"
_WANTED = frozenset({b"authorization", b"content-length", b"content-type", b"idempotency-key"})
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _Refer(Exception):
    """Not plainly well-formed: the wrapped app answers."""


@dataclass(frozen=True)
class _Request:
    headers: dict[bytes, str]
    body: bytes


Handler = Callable[["_Request", Actor], Awaitable[tuple[int, "_Answered"]]]


class FastLane:
    """`app`, with the hot requests of `ctx`'s router answered here (module docstring)."""

    def __init__(self, app: ASGIApp, ctx: RestContext) -> None:
        self.app, self.ctx = app, ctx
        boundary = ctx.route_class.boundary
        self._submit = boundary.request_model(TaskSubmitRequest)
        self._claim = boundary.request_model(TaskClaimRequest)
        self._update = boundary.request_model(TaskUpdateRequest)
        self._task_json = TypeAdapter(TaskResponse)
        self._claim_json = TypeAdapter(TaskClaimResponse)
        self._worker_json = TypeAdapter(WorkerResponse)
        limits = ctx.limits
        self._max_body, self._max_key = limits.max_body_bytes, limits.max_key_length
        self._max_room, self._max_job = limits.max_room_id_length, limits.max_full_job_name_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._handler(scope) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        replay: list[Message] = []  # what the lane read, for the wrapped app
        try:
            request = await self._admit(scope, receive, replay)
            actor = self._actor(request.headers)
            status, answer = await handler(request, actor)
        except _Refer:
            await self.app(scope, _replaying(replay, receive), send)
            return
        except (InputRefused, DomainError, StoreError) as error:
            await problem_response(error)(scope, receive, send)
            return
        await _send_json(send, status, answer)

    def _handler(self, scope: Scope) -> Handler | None:
        if scope.get("root_path"):
            return None
        method, path = scope["method"], scope["path"]
        if method == "PATCH":
            if match := _TASK.fullmatch(path):
                return partial(self._report, match[1])
            if match := _WORKER.fullmatch(path):
                return partial(self._heartbeat, match[1])
        elif method == "POST":
            if path == _CLAIM:
                return self._claim_next
            if match := _SUBMIT.fullmatch(path):
                return partial(self._queue, match[1], match[2])
        return None

    async def _queue(
        self, room_id: str, job_name: str, request: _Request, actor: Actor
    ) -> tuple[int, _Answered]:
        if not (0 < len(room_id) <= self._max_room and 0 < len(job_name) <= self._max_job):
            raise _Refer
        body = self._body(request, self._submit)
        key = self._key(request.headers)
        answer = await operations.submit_task(self.ctx, room_id, job_name, body, actor, key)
        return 202, _answered(self._task_json, answer)

    async def _claim_next(self, request: _Request, actor: Actor) -> tuple[int, _Answered]:
        body = self._body(request, self._claim)
        key = self._key(request.headers)
        answer = await operations.claim_task(self.ctx, body, actor, key)
        return 200, _answered(self._claim_json, answer)

    async def _report(self, task_id: str, request: _Request, actor: Actor) -> tuple[int, _Answered]:
        body = self._body(request, self._update)
        answer = await operations.update_task(self.ctx, task_id, body, actor)
        return 200, _answered(self._task_json, answer)

    async def _heartbeat(
        self, worker_id: str, request: _Request, actor: Actor
    ) -> tuple[int, _Answered]:
        worker = await record_heartbeat(self.ctx, worker_id, actor)
        return 200, _answered(self._worker_json, Answer(worker))

    async def _admit(self, scope: Scope, receive: Receive, replay: list[Message]) -> _Request:
        headers: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in _WANTED and name not in headers:  # the first, as Starlette reads
                headers[name] = value.decode("latin-1")
        declared = headers.get(b"content-length")
        if declared is None and scope["method"] == "PATCH" and _WORKER.fullmatch(scope["path"]):
            return _Request(headers, b"")  # a heartbeat has no body
        if declared is None or not declared.isdigit() or len(declared) > 18:
            raise _Refer
        if int(declared) > self._max_body:
            raise _Refer
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            replay.append(message)
            if message["type"] != "http.request":
                raise _Refer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _Refer
            chunks.append(chunk)
            more = message.get("more_body", False)
        return _Request(headers, b"".join(chunks))

    def _actor(self, headers: dict[bytes, str]) -> Actor:
        # FastAPI's HTTPBearer: scheme, " ", credentials (stripped)
        scheme, _, credentials = headers.get(b"authorization", "").partition(" ")
        credentials = credentials.strip()
        actor = self.ctx.authenticate(credentials) if credentials else None
        if actor is None or scheme.lower() != "bearer":
            raise _Refer
        return actor

    def _key(self, headers: dict[bytes, str]) -> str | None:
        key = headers.get(b"idempotency-key")
        if key is not None and not 0 < len(key) <= self._max_key:
            raise _Refer
        return key

    def _body(self, request: _Request, model: type[Any]) -> Any:
        content_type = request.headers.get(b"content-type")
        if content_type is not None and (
            content_type.split(";", 1)[0].strip().lower() != "application/json"
        ):
            raise _Refer
        if not request.body:
            raise _Refer
        try:
            return model.model_validate(parse_json(request.body, self.ctx.limits))
        except (InputRefused, ValidationError):
            raise _Refer from None


@dataclass(frozen=True)
class _Answered:
    body: bytes
    headers: dict[str, str]


def _answered(serializer: TypeAdapter[Any], answer: Answer[Any]) -> _Answered:
    """The body as FastAPI's response serialisation writes it (pydantic, by alias)."""
    return _Answered(serializer.dump_json(answer.body, by_alias=True), answer.headers)


def _replaying(pending: list[Message], receive: Receive) -> Receive:
    """`receive`, after the messages the lane already read from it."""

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _send_json(send: Send, status: int, answered: _Answered) -> None:
    headers = [(b"content-length", str(len(answered.body)).encode()), *_JSON_HEADERS]
    headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in answered.headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answered.body})


def fast_lane(app: ASGIApp, runtime: LedgerRuntime) -> FastLane:
    """`app` (which serves `create_router(runtime)`) with the hot-request lane in front."""
    from .router import rest_context

    return FastLane(app, rest_context(runtime))
