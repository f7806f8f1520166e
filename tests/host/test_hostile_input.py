"""Hostile input at the boundary (issue 10): every case measured against `workerledger
serve` on SQLite is refused with problem+json (or an error ack) naming the limit; the
listings are unchanged; the keep-alive connection serves the next request; and the host
restarts from the same SQLite file with `workerledger rebuild --check` exiting 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from workerledger.host_fastapi.app import Host, build_host

from workerledger import cli

from .conftest import PREFIX, WAIT, serve, settings

JOB = "lab:modifiers:Rotate"
TASKS = f"/rooms/lab/tasks/{JOB}"
PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/v1/problems/{code}"
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def assert_refused_ack(ack: Any, status: int, code: str) -> None:
    assert isinstance(ack, dict) and "error" in ack, ack
    assert ack["error"]["type"] == f"/v1/problems/{code}"
    assert ack["error"]["status"] == status


def local_port(response: httpx.Response) -> int:
    """The client side of the TCP connection a response came on."""
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


class Lab:
    """A host on a SQLite file with alice's worker on `lab:modifiers:Rotate` and one
    pending task; `api` keeps one keep-alive connection."""

    def __init__(self, directory: Path, **overrides: Any) -> None:
        self.directory, self.overrides = directory, overrides
        self.database_url = f"sqlite:///{directory / 'hostile.db'}"
        self.stack = contextlib.AsyncExitStack()
        self.host: Host
        self.url = ""
        self.api: httpx.AsyncClient
        self.worker_id = ""
        self.clients: list[socketio.AsyncClient] = []

    async def start(self) -> Lab:
        self.host = build_host(settings(self.directory, database_url=self.database_url,
                                        **self.overrides))  # fmt: skip
        self.url = await self.stack.enter_async_context(serve(self.host.asgi))
        self.api = httpx.AsyncClient(
            base_url=self.url + PREFIX,
            headers={"Authorization": "Bearer tok-alice"},
            timeout=WAIT,
            limits=httpx.Limits(max_connections=1),
            verify=False,  # plain http: no TLS context to build
        )
        self.stack.push_async_callback(self.api.aclose)
        return self

    async def seed(self) -> None:
        job = await self.api.put(
            "/rooms/lab/jobs", json={"category": "modifiers", "name": "Rotate"}
        )
        assert job.status_code == 201, job.text
        self.worker_id = job.json()["worker_id"]
        task = await self.api.post(TASKS, json={"payload": {"angle": 90}})
        assert task.status_code == 202, task.text

    async def state(self) -> tuple[Any, ...]:
        """Everything a hostile request could have changed, read on the same connection."""
        responses = [
            await self.api.get(path)
            for path in ("/rooms/lab/jobs", "/rooms/lab/tasks", "/workers",
                         f"/workers/{self.worker_id}/history")
        ]  # fmt: skip
        assert all(r.status_code == 200 for r in responses)
        history = responses[3].json()
        return local_port(responses[0]), *(r.json() for r in responses[:3]), history["version"]

    async def refused(
        self, send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]], status: int, code: str
    ) -> dict[str, Any]:
        """`send` is refused with `code`, changes nothing, and the connection stays usable."""
        port, *before = await self.state()
        response = await send(self.api)
        body = assert_problem(response, status, code)
        assert local_port(response) == port
        port_after, *after = await self.state()
        assert after == before
        assert port_after == port  # the same keep-alive connection served the next request
        return body

    def rooms_of(self, sid: str) -> list[str]:
        rooms = self.host.sio.manager.rooms.get("/", {})
        return [room for room, members in rooms.items() if room is not None and sid in members]

    async def sio(self) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(self.url, auth={"token": "tok-alice"}, transports=["websocket"],
                             wait_timeout=WAIT)  # fmt: skip
        self.clients.append(client)
        return client

    async def restart_and_check(self) -> None:
        """Close the Socket.IO clients (grace 0: their workers are lost) and wait until the
        host released them; stop; start a second host from the same file (it answers as
        the first did); stop; `workerledger rebuild --check` exits 0."""
        for client in self.clients:
            await client.disconnect()
        async with asyncio.timeout(WAIT):  # the server saw the close (no event to await)
            while self.host.sockets.local_sids:
                await asyncio.sleep(0.01)
        await self.host.sockets.idle()
        _, *before = await self.state()
        await self.stack.aclose()
        self.stack = contextlib.AsyncExitStack()
        await self.start()
        _, *after = await self.state()
        assert after == before
        await self.stack.aclose()
        command = ["rebuild", "--check", "--database-url", self.database_url]
        assert await asyncio.to_thread(cli.main, command) == 0  # the CLI, in this process


@pytest.fixture
async def open_lab(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Lab]]]:
    labs: list[Lab] = []

    async def open_(**overrides: Any) -> Lab:
        lab = await Lab(tmp_path, **overrides).start()
        labs.append(lab)
        await lab.seed()
        return lab

    yield open_
    for lab in labs:
        for client in lab.clients:
            await client.disconnect()
        await lab.stack.aclose()


async def test_deep_nesting_is_refused(open_lab):
    lab = await open_lab()
    client = await lab.sio()
    for depth in (200, 300, 1000):
        # a payload (at 200 accepted before, and start-up failed after the next checkpoint)
        payload = '{"payload": {"a": ' + nested(depth) + "}}"
        await lab.refused(lambda api, p=payload: api.post(TASKS, content=p, headers=JSON),
                          422, "json-too-deep")  # fmt: skip
        # a job schema under a new name (it would have created the job)
        schema = '{"category": "modifiers", "name": "Deep", "schema": {"a": ' + nested(depth)
        body = await lab.refused(
            lambda api, s=schema: api.put("/rooms/lab/jobs", content=s + "}}", headers=JSON),
            422, "json-too-deep")  # fmt: skip
        assert body["limit"] == 64
        # a Socket.IO payload (python-socketio decodes it; the handler walks it)
        if depth < 900:  # deeper, the client's own json module runs out of stack
            event = {"job_name": JOB, "worker_id": lab.worker_id, "x": json.loads(nested(depth))}
            ack = await client.call("join_job_room", event, timeout=WAIT)
            assert_refused_ack(ack, 422, "json-too-deep")
    assert await client.call("join_room", {"room_id": "lab"}, timeout=WAIT) == {"ok": True}
    await lab.restart_and_check()


async def test_lone_surrogates_and_invalid_utf8_are_refused(open_lab):
    lab = await open_lab()
    bodies = {
        TASKS: ['{"payload": {"a": "\\ud800"}}', '{"payload": {"\\udfff": 1}}',
                b'{"payload": {"a": "\xff"}}'],
        "/rooms/lab/jobs": ['{"category": "modifiers", "name": "\\ud800"}',
                            '{"category": "modifiers", "name": "S", "schema": {"a": "\\ud800"}}'],
    }  # fmt: skip
    for path, texts in bodies.items():
        method = "POST" if path == TASKS else "PUT"
        for text in texts:
            await lab.refused(lambda api, m=method, p=path, t=text: api.request(
                m, p, content=t, headers=JSON), 422, "invalid-unicode")  # fmt: skip
    # a room id or job name over Socket.IO
    client = await lab.sio()
    sid = client.get_sid()
    for event, data in [
        ("join_room", {"room_id": "\ud800"}),
        ("join_job_room", {"job_name": "lab:modifiers:\ud800", "worker_id": lab.worker_id}),
    ]:
        assert_refused_ack(await client.call(event, data, timeout=WAIT), 422, "invalid-unicode")
    assert lab.rooms_of(sid) == [sid]  # entered no room
    assert await client.call("join_room", {"room_id": "lab"}, timeout=WAIT) == {"ok": True}
    await lab.restart_and_check()


async def test_non_finite_numbers_are_refused(open_lab):
    lab = await open_lab()
    client = await lab.sio()
    for number in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400"):
        payload = '{"payload": {"a": [1, ' + number + "]}}"
        await lab.refused(lambda api, p=payload: api.post(TASKS, content=p, headers=JSON),
                          422, "non-finite-number")  # fmt: skip
        schema = '{"category": "modifiers", "name": "N", "schema": {"max": ' + number + "}}"
        await lab.refused(
            lambda api, s=schema: api.put("/rooms/lab/jobs", content=s, headers=JSON),
            422, "non-finite-number")  # fmt: skip
        # python-socketio decodes NaN and Infinity as floats
        ack = await client.call("join_room", {"room_id": "lab", "x": float(number)}, timeout=WAIT)
        assert_refused_ack(ack, 422, "non-finite-number")
    await lab.restart_and_check()


async def test_bodies_over_the_size_limit_are_refused(open_lab):
    lab = await open_lab()
    big = b'{"payload": {"a": "' + b"x" * (20 * 1024 * 1024) + b'"}}'  # 20 MB, Content-Length
    body = await lab.refused(lambda api: api.post(TASKS, content=big, headers=JSON),
                             413, "body-too-large")  # fmt: skip
    assert body["limit"] == 1024 * 1024

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b'{"payload": {"a": "'
        for _ in range(32):
            yield b"x" * 65536
        yield b'"}}'

    await lab.refused(lambda api: api.post(TASKS, content=chunked(), headers=JSON),
                      413, "body-too-large")  # fmt: skip
    await lab.restart_and_check()


async def test_a_one_megabyte_job_name_is_refused(open_lab):
    lab = await open_lab()
    name = "n" * 1_000_000
    body = await lab.refused(lambda api: api.put("/rooms/lab/jobs", json={
        "category": "modifiers", "name": name}), 422, "value-too-long")  # fmt: skip
    assert body["limit"] == 128
    # in a path (as long as a URL may be) and over Socket.IO
    path = f"/rooms/lab/tasks/lab:modifiers:{'n' * 60_000}"
    await lab.refused(lambda api: api.post(path, json={"payload": {}}), 422, "value-too-long")
    client = await lab.sio()
    event = {"job_name": f"lab:modifiers:{name}", "worker_id": lab.worker_id}
    ack = await client.call("join_job_room", event, timeout=WAIT)
    assert_refused_ack(ack, 422, "value-too-long")
    await lab.restart_and_check()


async def test_a_ten_thousand_character_room_id_is_refused(open_lab):
    lab = await open_lab()
    room = "r" * 10_000
    job = {"category": "modifiers", "name": "Rotate"}
    await lab.refused(lambda api: api.put(f"/rooms/{room}/jobs", json=job), 422, "value-too-long")
    await lab.refused(lambda api: api.get(f"/rooms/{room}/tasks"), 422, "value-too-long")
    submit = f"/rooms/{room}/tasks/{room}:modifiers:Rotate"
    await lab.refused(lambda api: api.post(submit, json={"payload": {}}), 422, "value-too-long")
    client = await lab.sio()
    ack = await client.call("join_room", {"room_id": room}, timeout=WAIT)
    assert_refused_ack(ack, 422, "value-too-long")
    assert lab.rooms_of(client.get_sid()) == [client.get_sid()]
    await lab.restart_and_check()


async def test_the_other_length_limits_are_refused(open_lab):
    lab = await open_lab()
    category = {"category": "m" * 65, "name": "Rotate"}
    await lab.refused(lambda api: api.put("/rooms/lab/jobs", json=category), 422, "value-too-long")
    key = {"Idempotency-Key": "k" * 256}
    await lab.refused(lambda api: api.post("/workers", headers=key), 422, "value-too-long")
    keyed_submit = f"/rooms/lab/tasks/{JOB}"  # the keyed writes of issue 18 have the same limit
    await lab.refused(lambda api: api.post(keyed_submit, json={"payload": {}}, headers=key),
                      422, "value-too-long")  # fmt: skip
    await lab.refused(lambda api: api.post("/tasks/claim", json={"worker_id": lab.worker_id},
                                           headers=key), 422, "value-too-long")  # fmt: skip
    claim = await lab.api.post("/tasks/claim", json={"worker_id": lab.worker_id})
    task_id = claim.json()["task"]["id"]
    report = {"status": "failed", "error": "e" * (64 * 1024 + 1)}
    await lab.refused(lambda api: api.patch(f"/tasks/{task_id}", json=report),
                      422, "value-too-long")  # fmt: skip
    client = await lab.sio()
    ack = await client.call("join_job_room", {"job_name": JOB, "worker_id": "w" * 256},
                            timeout=WAIT)  # fmt: skip
    assert_refused_ack(ack, 422, "value-too-long")
    await lab.restart_and_check()


async def test_a_join_leave_flood_on_one_connection_hits_the_rate_limit(open_lab):
    # given the default limits (20 events/s after a burst of 40) and alice's worker socket
    lab = await open_lab()
    client = await lab.sio()
    _, *_, version_before = await lab.state()
    # when one connection sends 500 join/leave pairs as fast as it can
    event = {"job_name": JOB, "worker_id": lab.worker_id}
    acks = [
        await client.call(name, event, timeout=WAIT)
        for _ in range(500)
        for name in ("join_job_room", "leave_job_room")
    ]
    # then most are refused as rate-limited, and only the others can have been recorded
    # (a leave after a refused join is refused as not-in-room)
    limited = [a for a in acks if a.get("error", {}).get("type") == "/v1/problems/rate-limited"]
    passed = len(acks) - len(limited)
    assert all(a["error"]["status"] == 429 and a["error"]["limit"] == 40 for a in limited)
    assert len(limited) > len(acks) // 2
    _, *_, version_after = await lab.state()
    assert version_after - version_before <= passed + 1  # + ConnectionAttached
    # and the connection is served again once its bucket refilled (20 per second)
    await asyncio.sleep(0.2)
    assert await client.call("join_room", {"room_id": "lab"}, timeout=WAIT) == {"ok": True}
    await lab.restart_and_check()
