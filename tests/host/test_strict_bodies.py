"""Strict request bodies: a field a request does not have is refused, named, and changes
nothing, over REST (FastAPI's 422 `extra_forbidden`) and Socket.IO (the error ack);
the bodies zndraw-joblib 0.1.7's client sends are all accepted."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import socketio

from .conftest import WAIT

JOB = "lab:modifiers:Rotate"


async def register(api: Any) -> str:
    body = {"category": "modifiers", "name": "Rotate", "schema": {}}
    response = await api.put("/rooms/lab/jobs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["worker_id"])


def assert_names_unknown_field(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    issues = response.json()["detail"]
    assert [(i["type"], i["loc"]) for i in issues] == [("extra_forbidden", ["body", field])]


async def test_an_unwrapped_payload_is_refused_not_run_with_defaults(start_host):
    # Given a job in room lab
    running = await start_host()
    api = running.api()
    await register(api)
    # When a task is submitted with its payload not wrapped in {"payload": ...}
    response = await api.post(f"/rooms/lab/tasks/{JOB}", json={"angle": 45})
    # Then it is refused naming the field, and no task exists
    assert_names_unknown_field(response, "angle")
    assert (await api.get("/rooms/lab/tasks")).json()["total"] == 0
    # And the wrapped form is accepted with its values
    accepted = await api.post(f"/rooms/lab/tasks/{JOB}", json={"payload": {"angle": 45}})
    assert accepted.status_code == 202 and accepted.json()["payload"] == {"angle": 45}


async def test_every_request_body_refuses_an_unknown_field(start_host):
    # Given a worker and a task it holds
    running = await start_host()
    api = running.api()
    worker = await register(api)
    task = (await api.post(f"/rooms/lab/tasks/{JOB}", json={"payload": {}})).json()["id"]
    before = (await api.get(f"/tasks/{task}")).json()
    # When each body carries one field its request does not have
    calls = [
        ("PUT", "/rooms/lab/jobs", {"category": "modifiers", "name": "Scale"}, "admin"),
        ("POST", "/tasks/claim", {"worker_id": worker}, "force"),
        ("PATCH", f"/tasks/{task}", {"status": "cancelled"}, "reason"),
        ("POST", f"/rooms/lab/tasks/{JOB}", {"payload": {}}, "priority"),
    ]
    for method, path, body, unknown in calls:
        response = await api.request(method, path, json=body | {unknown: True})
        # Then each is refused naming that field
        assert_names_unknown_field(response, unknown)
    # And nothing changed: no second job, the task still pending and unclaimed
    jobs = (await api.get("/rooms/lab/jobs")).json()["items"]
    assert [job["full_name"] for job in jobs] == [JOB]
    assert (await api.get(f"/tasks/{task}")).json() == before


async def test_the_bodies_of_the_0_1_7_client_are_accepted(start_host):
    # Given the bodies zndraw-joblib 0.1.7's JobManager builds (client.py: register with
    # model_dump(exclude_none=True), claim, _update_task, submit)
    running = await start_host()
    api = running.api()
    register = {"category": "modifiers", "name": "Rotate", "schema": {"type": "object"}}
    # When a worker registers, a task is submitted, claimed, started and failed
    job = await api.put("/rooms/lab/jobs", json=register)
    worker = job.json()["worker_id"]
    again = await api.put("/rooms/lab/jobs", json=register | {"worker_id": worker})
    submit = await api.post(f"/rooms/lab/tasks/{JOB}", json={"payload": {"angle": 1.0}})
    claim = await api.post("/tasks/claim", json={"worker_id": worker})
    task = claim.json()["task"]["id"]
    running_ = await api.patch(f"/tasks/{task}", json={"status": "running"})
    failed = await api.patch(f"/tasks/{task}", json={"status": "failed", "error": "boom"})
    # Then every one is accepted
    answers = [job, again, submit, claim, running_, failed]
    assert [r.status_code for r in answers] == [201, 200, 202, 200, 200, 200]
    assert failed.json()["error"] == "boom"


async def test_the_openapi_document_says_request_bodies_are_closed(start_host):
    running = await start_host()
    async with httpx.AsyncClient(base_url=running.url) as http:
        schemas = (await http.get("/openapi.json")).json()["components"]["schemas"]
    for name in ("JobRegisterRequest", "TaskSubmitRequest", "TaskClaimRequest",
                 "TaskUpdateRequest"):  # fmt: skip
        assert schemas[name]["additionalProperties"] is False, name


@pytest.mark.parametrize(
    ("event", "payload", "field"),
    [
        ("join_job_room", {"job_name": JOB, "worker_id": "W", "admin": True}, "admin"),
        ("leave_job_room", {"job_name": JOB, "worker_id": "W", "sid": "x"}, "sid"),
        ("join_room", {"room_id": "lab", "room": "lab"}, "room"),
        ("leave_room", {"room_id": "lab", "extra": 1}, "extra"),
    ],
)
async def test_socketio_events_refuse_an_unknown_field_naming_it(start_host, event, payload, field):
    # Given a connected worker of job lab:modifiers:Rotate
    running = await start_host()
    worker = await register(running.api())
    payload = {**payload, **({"worker_id": worker} if "worker_id" in payload else {})}
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(running.url, auth={"token": "tok-alice"}, transports=["websocket"])
    try:
        # When the event carries a field it does not have
        ack = await client.call(event, payload, timeout=WAIT)
        # Then the ack refuses it and names the field
        error = ack["error"]
        assert error["type"] == "/v1/problems/invalid-payload" and error["status"] == 422
        assert f"{field}: unknown field" in error["detail"]
        # And the same event without it is accepted
        del payload[field]
        if event == "leave_job_room":
            assert await client.call("join_job_room", payload, timeout=WAIT) == {"ok": True}
        assert await client.call(event, payload, timeout=WAIT) == {"ok": True}
    finally:
        await client.disconnect()
