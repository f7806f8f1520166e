"""The hot-request lane (adapters/rest/fast_lane.py) answers exactly as FastAPI does.

One host (SQLite file, real uvicorn) serves both paths over one runtime: a request with
`x-path: fastapi` goes to the FastAPI app itself, any other to a `FastLane` wrapping
that app through a counter of what the lane refers to it. Every hot request is sent
both ways from the same starting state and the answers are compared byte for byte
once ids and times are masked; every malformed or refused one too, and those the lane
must not answer itself (the boundary's refusals) are checked to have been referred.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from workerledger.adapters.rest.fast_lane import FastLane
from workerledger.adapters.rest.router import rest_context
from workerledger.host_fastapi.app import build_host

from .conftest import PREFIX, WAIT, serve, settings

JOB = "lab:modifiers:Rotate"
SUBMIT = f"/rooms/lab/tasks/{JOB}"
_MASKS = [
    (re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), b"<id>"),
    (re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"), b"<time>"),
]
_HEADERS_COMPARED = ("content-type", "location", "retry-after", "idempotent-replayed", "allow")


class Paths:
    """Clients of the two paths over one host, and what the lane referred."""

    def __init__(self, url: str, referred: list[str]) -> None:
        self.url, self.referred = url, referred
        self.clients: list[httpx.AsyncClient] = []

    def client(self, path: str, token: str | None = "tok-alice") -> httpx.AsyncClient:
        headers = {"x-path": path}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.AsyncClient(base_url=self.url + PREFIX, headers=headers, timeout=WAIT)
        self.clients.append(client)
        return client


@pytest.fixture
async def paths(tmp_path: Path) -> AsyncIterator[Paths]:
    database = f"sqlite:///{tmp_path / 'lane.db'}"
    host = build_host(settings(tmp_path, database_url=database, rest_fast_lane=False))
    referred: list[str] = []

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        referred.append(f"{scope['method']} {scope['path']}")
        await host.api(scope, receive, send)

    lane = FastLane(counted, rest_context(host.runtime))

    async def switch(scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or [])
        if scope["type"] != "http" or headers.get(b"x-path") == b"fastapi":
            await host.asgi(scope, receive, send)
        else:
            await lane(scope, receive, send)

    async with serve(switch) as url:
        running = Paths(url, referred)
        try:
            yield running
        finally:
            for client in running.clients:
                await client.aclose()


def masked(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """Status, the compared headers and the body, with ids and times masked."""
    body = response.content
    for pattern, mask in _MASKS:
        body = pattern.sub(mask, body)
    headers = {
        name: re.sub(r"[0-9a-f-]{36}", "<id>", response.headers[name])
        for name in _HEADERS_COMPARED
        if name in response.headers
    }
    return response.status_code, headers, body


async def worker_on_job(api: httpx.AsyncClient) -> str:
    worker = (await api.post("/workers")).json()["id"]
    body = {"category": "modifiers", "name": "Rotate", "worker_id": worker}
    assert (await api.put("/rooms/lab/jobs", json=body)).status_code in (200, 201)
    return str(worker)


async def test_hot_requests_answer_byte_for_byte_as_fastapi(paths: Paths) -> None:
    lane, fastapi = paths.client("lane"), paths.client("fastapi")
    worker = await worker_on_job(fastapi)
    paths.referred.clear()
    answers: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}

    def seen(kind: str, response: httpx.Response) -> httpx.Response:
        answers.setdefault(kind, []).append(masked(response))
        return response

    for api in (lane, fastapi):  # the same steps from the same state: nothing pending
        submitted = seen("submit", await api.post(SUBMIT, json={"payload": {"x": 1.5, "é": [1]}}))
        assert submitted.status_code == 202, submitted.text
        claimed = seen("claim", await api.post("/tasks/claim", json={"worker_id": worker}))
        task = claimed.json()["task"]
        assert task["id"] == submitted.json()["id"]
        seen("nothing to claim", await api.post("/tasks/claim", json={"worker_id": worker}))
        report = {"status": "running", "worker_id": worker, "attempt": task["attempt"]}
        seen("running", await api.patch(f"/tasks/{task['id']}", json=report))
        seen("running again", await api.patch(f"/tasks/{task['id']}", json=report))
        done = {"status": "completed", "worker_id": worker, "attempt": task["attempt"]}
        seen("completed", await api.patch(f"/tasks/{task['id']}", json=done))
        seen("heartbeat", await api.patch(f"/workers/{worker}"))
        key = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
        first = seen("keyed submit", await api.post(SUBMIT, json={}, headers=key))
        again = seen("keyed resend", await api.post(SUBMIT, json={}, headers=key))
        assert again.json()["id"] == first.json()["id"]
        claim_key = {"Idempotency-Key": f"claim-{uuid.uuid4()}"}
        seen(
            "keyed claim",
            await api.post("/tasks/claim", json={"worker_id": worker}, headers=claim_key),
        )
        seen(
            "keyed claim resend",
            await api.post("/tasks/claim", json={"worker_id": worker}, headers=claim_key),
        )

    for kind, (through_lane, through_fastapi) in answers.items():
        assert through_lane == through_fastapi, kind
    assert answers["keyed resend"][0][1]["idempotent-replayed"] == "true"
    assert answers["running again"][0][1]["idempotent-replayed"] == "true"
    assert paths.referred == []  # the lane answered every one of them itself


def _malformed(worker: str, task: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(name, method, path, httpx request arguments) of requests the boundary refuses."""
    claim = "/tasks/claim"
    big = "x" * 300
    return [
        ("no token", "POST", claim, {"json": {"worker_id": worker}, "token": None}),
        ("unknown token", "POST", claim, {"json": {"worker_id": worker}, "token": "nope"}),
        ("basic scheme", "POST", claim, {"json": {"worker_id": worker}, "auth": "Basic dG9r"}),
        ("not json", "POST", claim, {"content": b"{worker_id", "ctype": "application/json"}),
        ("empty body", "POST", claim, {"content": b""}),
        ("text/plain", "POST", claim, {"content": b'{"worker_id": "x"}', "ctype": "text/plain"}),
        ("extra field", "POST", claim, {"json": {"worker_id": worker, "more": 1}}),
        ("worker id not a uuid", "POST", claim, {"json": {"worker_id": "w"}}),
        ("NaN", "POST", claim, {"content": b'{"worker_id": NaN}', "ctype": "application/json"}),
        (
            "deep",
            "POST",
            SUBMIT,
            {"content": b'{"payload": {"a": ' + b"[" * 80 + b"]" * 80 + b"}}"},
        ),
        ("long key", "POST", SUBMIT, {"json": {}, "key": "k" * 300}),
        ("empty key", "POST", SUBMIT, {"json": {}, "key": ""}),
        ("long room", "POST", f"/rooms/{big}/tasks/{JOB}", {"json": {}}),
        ("long job", "POST", f"/rooms/lab/tasks/{big * 2}", {"json": {}}),
        ("chunked", "POST", claim, {"chunks": [b'{"worker_id": ', f'"{worker}"}}'.encode()]}),
        ("declared too large", "POST", SUBMIT, {"json": {"payload": {"x": "y" * (1 << 20)}}}),
        ("attempt 0", "PATCH", f"/tasks/{task}", {"json": {"status": "running", "attempt": 0}}),
        ("bad status", "PATCH", f"/tasks/{task}", {"json": {"status": "sleeping"}}),
        ("uppercase task id", "PATCH", f"/tasks/{task.upper()}", {"json": {"status": "x"}}),
        ("task id not a uuid", "PATCH", "/tasks/claim", {"json": {"status": "running"}}),
        ("worker id in path", "PATCH", "/workers/w-1", {}),
    ]


def _refused(worker: str, task: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Well-formed requests the core refuses: the lane answers them itself."""
    other = str(uuid.uuid4())
    return [
        ("unknown worker", "POST", "/tasks/claim", {"json": {"worker_id": other}}),
        (
            "foreign worker",
            "POST",
            "/tasks/claim",
            {"json": {"worker_id": worker}, "token": "tok-bob"},
        ),
        ("unknown task", "PATCH", f"/tasks/{other}", {"json": {"status": "running"}}),
        (
            "stale attempt",
            "PATCH",
            f"/tasks/{task}",
            {"json": {"status": "running", "worker_id": worker, "attempt": 9}},
        ),
        ("unknown job", "POST", "/rooms/lab/tasks/lab:modifiers:Nope", {"json": {}}),
        ("invalid room", "POST", f"/rooms/a@b/tasks/{JOB}", {"json": {}}),
        ("malformed job name", "POST", "/rooms/lab/tasks/no-colons", {"json": {}}),
        ("unknown worker heartbeat", "PATCH", f"/workers/{other}", {}),
    ]


async def _send(
    paths: Paths, path: str, method: str, url: str, args: dict[str, Any]
) -> httpx.Response:
    api = paths.client(path, token=args.get("token", "tok-alice"))
    headers: dict[str, str] = {}
    if "auth" in args:
        headers["Authorization"] = args["auth"]
    if "ctype" in args:
        headers["content-type"] = args["ctype"]
    if "key" in args:
        headers["Idempotency-Key"] = args["key"]
    if "chunks" in args:
        chunks: list[bytes] = args["chunks"]

        async def stream() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return await api.request(method, url, content=stream(), headers=headers)
    if "json" in args:
        return await api.request(method, url, json=args["json"], headers=headers)
    return await api.request(method, url, content=args.get("content"), headers=headers)


async def test_refusals_are_fastapis_own_and_change_nothing(paths: Paths) -> None:
    fastapi = paths.client("fastapi")
    worker = await worker_on_job(fastapi)
    task = (await fastapi.post(SUBMIT, json={})).json()["id"]
    claimed = (await fastapi.post("/tasks/claim", json={"worker_id": worker})).json()["task"]
    assert claimed["id"] == task
    before = (await fastapi.get("/rooms/lab/tasks")).json()

    for name, method, url, args in _malformed(worker, task):
        paths.referred.clear()
        through_lane = masked(await _send(paths, "lane", method, url, args))
        through_fastapi = masked(await _send(paths, "fastapi", method, url, args))
        assert through_lane == through_fastapi, name
        assert through_lane[0] >= 400, name
        assert len(paths.referred) == 1, name  # the lane referred it to FastAPI

    for name, method, url, args in _refused(worker, task):
        paths.referred.clear()
        through_lane = masked(await _send(paths, "lane", method, url, args))
        through_fastapi = masked(await _send(paths, "fastapi", method, url, args))
        assert through_lane == through_fastapi, name
        assert through_lane[0] in (400, 403, 404, 409), name
        assert through_lane[1]["content-type"] == "application/problem+json", name
        assert paths.referred == [], name  # answered by the lane, as problem+json

    assert (await fastapi.get("/rooms/lab/tasks")).json() == before
