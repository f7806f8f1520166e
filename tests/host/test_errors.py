"""Refusals: each a clear error, and no state change (checked with the listings)."""

from __future__ import annotations

from typing import Any

import pytest
import socketio

from .conftest import WAIT

JOB = "r1:modifiers:Rotate"
PROBLEM = "application/problem+json"


async def register(api: Any, name: str = "Rotate") -> dict[str, Any]:
    body = {"category": "modifiers", "name": name}
    response = await api.put("/rooms/r1/jobs", json=body)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


async def snapshot(api: Any) -> tuple[Any, ...]:
    workers = (await api.get("/workers")).json()
    tasks = (await api.get("/rooms/r1/tasks")).json()
    jobs = (await api.get("/rooms/r1/jobs")).json()
    return workers, tasks, jobs


def assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == f"/v1/problems/{code}"
    assert body["status"] == status and body["title"] and body["detail"]


async def connect(url: str, token: str | None) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    auth = {"token": token} if token else None
    await client.connect(url, auth=auth, transports=["websocket"], wait_timeout=WAIT)
    return client


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_connect_without_a_valid_token_is_refused(start_host, token):
    running = await start_host()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(running.url, token)
    assert running.host.sockets.local_sids == set()


async def test_connect_accepts_an_authorization_header(start_host):
    running = await start_host()
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        running.url, headers={"Authorization": "Bearer tok-bob"}, transports=["websocket"]
    )
    assert client.get_sid() in running.host.sockets.local_sids
    await client.disconnect()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"job_name": JOB, "worker_id": "ALICE"}, 403, "forbidden"),
        ({"job_name": JOB, "worker_id": "00000000-0000-0000-0000-000000000000"}, 404,
         "worker-not-found"),
        ({"job_name": "r1:modifiers:Nope", "worker_id": "BOB"}, 404, "job-not-found"),
        ({"job_name": JOB}, 422, "invalid-payload"),
        ("not an object", 422, "invalid-payload"),
        (None, 422, "invalid-payload"),
    ],
)  # fmt: skip
async def test_join_job_room_refusals_change_nothing(start_host, payload, status, code):
    # Given alice's worker on r1:modifiers:Rotate and bob's worker on another job
    running = await start_host()
    alice, bob_api = running.api(), running.api("tok-bob")
    alice_worker = (await register(alice))["worker_id"]
    bob_body = {"category": "modifiers", "name": "Scale"}
    bob_worker = (await bob_api.put("/rooms/r1/jobs", json=bob_body)).json()["worker_id"]
    if isinstance(payload, dict) and "worker_id" in payload:
        ids = {"ALICE": alice_worker, "BOB": bob_worker}
        payload = payload | {"worker_id": ids.get(payload["worker_id"], payload["worker_id"])}
    before = await snapshot(alice)
    client = await connect(running.url, "tok-bob")

    # When bob's connection joins with a forged id, an unknown one, or a malformed payload
    ack = await client.call("join_job_room", payload, timeout=WAIT)

    # Then the ack is the problem, the sid is in no job room and nothing changed
    assert ack["error"]["status"] == status
    assert ack["error"]["type"] == f"/v1/problems/{code}"
    assert set(ack["error"]) == {"type", "title", "status", "detail"}
    assert running.rooms_of(client.get_sid()) == [client.get_sid()]
    assert await snapshot(alice) == before
    await client.disconnect()
    await running.host.sockets.idle()
    assert await snapshot(alice) == before  # the forged id was not "disconnected" either


async def test_watcher_room_and_leave_refusals(start_host):
    running = await start_host()
    client = await connect(running.url, "tok-alice")
    bad = await client.call("join_room", {"room_id": "a:b"}, timeout=WAIT)
    assert bad["error"]["type"] == "/v1/problems/invalid-room-id"
    assert (await client.call("join_room", {}, timeout=WAIT))["error"]["status"] == 422
    leave = {"job_name": JOB, "worker_id": "00000000-0000-0000-0000-000000000000"}
    missing = await client.call("leave_job_room", leave, timeout=WAIT)
    assert missing["error"]["type"] == "/v1/problems/worker-not-found"
    assert running.rooms_of(client.get_sid()) == [client.get_sid()]
    await client.disconnect()


ROUTES = [
    ("POST", "/workers", None),
    ("GET", "/workers", None),
    ("PATCH", "/workers/00000000-0000-0000-0000-000000000000", None),
    ("DELETE", "/workers/00000000-0000-0000-0000-000000000000", None),
    ("GET", "/rooms/r1/workers", None),
    ("PUT", "/rooms/r1/jobs", {"category": "modifiers", "name": "X"}),
    ("GET", "/rooms/r1/jobs", None),
    ("GET", f"/rooms/r1/jobs/{JOB}/tasks", None),
    ("GET", f"/rooms/r1/jobs/{JOB}", None),
    ("POST", f"/rooms/r1/tasks/{JOB}", {"payload": {}}),
    ("GET", "/rooms/r1/tasks", None),
    ("POST", "/tasks/claim", {"worker_id": "00000000-0000-0000-0000-000000000000"}),
    ("GET", "/tasks/00000000-0000-0000-0000-000000000000", None),
    ("PATCH", "/tasks/00000000-0000-0000-0000-000000000000", {"status": "running"}),
]


async def test_every_route_needs_a_valid_token(start_host):
    running = await start_host()
    for token in (None, "wrong"):
        api = running.api(token)
        for method, path, body in ROUTES:
            response = await api.request(method, path, json=body)
            assert (response.status_code, response.json()) == (401, {"detail": "Unauthorized"})
    assert (await running.api().get("/workers")).json()["total"] == 0


async def test_malformed_bodies_and_ids_are_422_and_change_nothing(start_host):
    running = await start_host()
    api = running.api()
    worker = (await register(api))["worker_id"]
    before = await snapshot(api)
    bad = [
        await api.put("/rooms/r1/jobs", content=b"{not json", headers=_json()),
        await api.put("/rooms/r1/jobs", json={"name": "NoCategory"}),
        await api.post(f"/rooms/r1/tasks/{JOB}", content=b"[", headers=_json()),
        await api.post("/tasks/claim", json={}),
        await api.post("/tasks/claim", json={"worker_id": "not-a-uuid"}),
        await api.patch("/tasks/not-a-uuid", json={"status": "running"}),
        await api.patch(f"/workers/{worker[:-1]}"),
        await api.get("/rooms/r1/tasks", params={"status": "sleeping"}),
        await api.get("/workers", params={"limit": 501}),
        await api.get("/workers", params={"offset": -1}),
    ]
    assert [r.status_code for r in bad] == [422] * len(bad)
    assert all("detail" in r.json() for r in bad)
    assert await snapshot(api) == before


def _json() -> dict[str, str]:
    return {"content-type": "application/json"}


async def test_unknown_ids_forbidden_users_and_illegal_transitions(start_host):
    running = await start_host()
    alice, bob, admin = running.api(), running.api("tok-bob"), running.api("tok-admin")
    worker = (await register(alice))["worker_id"]
    task = (await alice.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {}})).json()
    unknown = "00000000-0000-0000-0000-000000000000"
    before = await snapshot(alice)

    assert_problem(await alice.get(f"/tasks/{unknown}"), 404, "task-not-found")
    assert_problem(await alice.patch(f"/workers/{unknown}"), 404, "worker-not-found")
    assert_problem(await alice.delete(f"/workers/{unknown}"), 404, "worker-not-found")
    assert_problem(await alice.get("/rooms/r1/jobs/r1:modifiers:Nope"), 404, "job-not-found")
    assert_problem(await alice.get("/rooms/r1/jobs/nocolons"), 404, "job-not-found")
    missing_job = await alice.post("/rooms/r1/tasks/r1:modifiers:Nope", json={})
    assert_problem(missing_job, 404, "job-not-found")
    assert_problem(await alice.get("/rooms/a@b/jobs"), 400, "invalid-room-id")
    wrong_category = {"category": "nope", "name": "X"}
    assert_problem(await alice.put("/rooms/r1/jobs", json=wrong_category), 400, "invalid-category")
    global_job = {"category": "modifiers", "name": "X"}
    assert_problem(await alice.put("/rooms/@global/jobs", json=global_job), 403, "forbidden")
    assert_problem(await bob.patch(f"/workers/{worker}"), 403, "forbidden")
    assert_problem(await bob.delete(f"/workers/{worker}"), 403, "forbidden")
    assert_problem(await bob.post("/tasks/claim", json={"worker_id": worker}), 403, "forbidden")
    running_body = {"status": "running"}
    assert_problem(await bob.patch(f"/tasks/{task['id']}", json=running_body), 403, "forbidden")
    done = {"status": "completed"}
    assert_problem(
        await admin.patch(f"/tasks/{task['id']}", json=done), 409, "invalid-task-transition"
    )
    claimed = {"status": "claimed"}
    assert_problem(
        await admin.patch(f"/tasks/{task['id']}", json=claimed), 409, "invalid-task-transition"
    )
    schema = {"category": "modifiers", "name": "Rotate", "schema": {"x": 1}}
    other = (await alice.post("/workers")).json()["id"]
    conflict = await alice.put("/rooms/r1/jobs", json=schema | {"worker_id": other})
    assert_problem(conflict, 409, "schema-conflict")
    assert (await snapshot(alice))[1:] == before[1:]  # tasks and jobs unchanged


async def test_stale_worker_completing_a_reassigned_task_is_rejected(start_host):
    # Given a task claimed by w1 (attempt 1), requeued when w1 left, claimed by w2
    running = await start_host()
    api = running.api()
    w1 = (await register(api))["worker_id"]
    task = (await api.post(f"/rooms/r1/tasks/{JOB}", json={})).json()
    first = (await api.post("/tasks/claim", json={"worker_id": w1})).json()["task"]
    assert (first["id"], first["attempt"]) == (task["id"], 1)
    assert (await api.delete(f"/workers/{w1}")).status_code == 204
    assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "pending"
    w2 = (await register(api))["worker_id"]
    second = (await api.post("/tasks/claim", json={"worker_id": w2})).json()["task"]
    assert (second["id"], second["attempt"], second["worker_id"]) == (task["id"], 2, w2)

    # When w1 (same user) reports on its old claim, by worker id or by attempt
    late = [
        {"status": "running", "worker_id": w1, "attempt": 1},
        {"status": "running", "attempt": 1},
        {"status": "running", "worker_id": w1},
    ]
    responses = [await api.patch(f"/tasks/{task['id']}", json=body) for body in late]

    # Then each is refused as stale and w2's claim is untouched
    for response in responses:
        assert_problem(response, 409, "stale-attempt")
    now = (await api.get(f"/tasks/{task['id']}")).json()
    assert (now["status"], now["worker_id"], now["attempt"]) == ("claimed", w2, 2)
    fenced = {"status": "running", "worker_id": w2, "attempt": 2}
    assert (await api.patch(f"/tasks/{task['id']}", json=fenced)).status_code == 200


async def test_submitter_may_cancel_own_pending_task(start_host):
    running = await start_host()
    alice, bob = running.api(), running.api("tok-bob")
    await register(alice)
    task = (await bob.post(f"/rooms/r1/tasks/{JOB}", json={})).json()
    cancel = {"status": "cancelled", "error": "changed my mind"}
    assert_problem(await alice.patch(f"/tasks/{task['id']}", json=cancel), 403, "forbidden")
    response = await bob.patch(f"/tasks/{task['id']}", json=cancel)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["error"]) == ("cancelled", "changed my mind")
