"""zndraw-joblib 0.1.7 wire shapes: field names, status codes, headers, pagination."""

from __future__ import annotations

import asyncio
from datetime import datetime

JOB = "r1:modifiers:Rotate"
TASK_FIELDS = {
    "id", "job_name", "room_id", "status", "created_at", "started_at", "completed_at",
    "worker_id", "error", "payload", "queue_position", "attempt",
}  # fmt: skip


def utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert value.endswith("+00:00") and parsed.utcoffset() is not None
    return parsed


async def test_worker_routes(start_host):
    running = await start_host()
    api = running.api()
    created = await api.post("/workers")
    assert created.status_code == 201
    worker = created.json()
    fields = {"id", "last_heartbeat", "draining", "drain_deadline"}  # + the drain extension
    assert set(worker) == fields
    utc(worker["last_heartbeat"])
    beat = await api.patch(f"/workers/{worker['id']}")
    assert beat.status_code == 200 and set(beat.json()) == fields
    listing = (await api.get("/workers", params={"limit": 1, "offset": 0})).json()
    assert listing == {
        "items": [{"id": worker["id"], "last_heartbeat": beat.json()["last_heartbeat"],
                   "job_count": 0, "draining": False, "drain_deadline": None}],
        "total": 1, "limit": 1, "offset": 0,
    }  # fmt: skip
    deleted = await api.delete(f"/workers/{worker['id']}")
    assert (deleted.status_code, deleted.content) == (204, b"")


async def test_idempotency_key_makes_registration_retries_reuse_one_worker(start_host):
    running = await start_host()
    api = running.api()
    key = {"Idempotency-Key": "boot-7"}
    first, again = [(await api.post("/workers", headers=key)).json() for _ in range(2)]
    assert first["id"] == again["id"]
    body = {"category": "modifiers", "name": "Rotate"}
    jobs = [(await api.put("/rooms/r1/jobs", json=body, headers={"Idempotency-Key": "j"}))
            for _ in range(2)]  # fmt: skip
    assert [r.status_code for r in jobs] == [201, 200]
    assert jobs[0].json()["worker_id"] == jobs[1].json()["worker_id"]
    assert (await api.get("/workers")).json()["total"] == 2
    other = await running.api("tok-bob").post("/workers", headers=key)
    assert other.json()["id"] != first["id"]


async def test_job_routes(start_host):
    running = await start_host()
    api = running.api()
    body = {"category": "modifiers", "name": "Rotate", "schema": {"type": "object"}}
    registered = await api.put("/rooms/r1/jobs", json=body)
    assert registered.status_code == 201
    job = registered.json()
    assert set(job) == {
        "id", "room_id", "category", "name", "full_name", "schema", "workers", "worker_id"
    }  # fmt: skip
    assert (job["full_name"], job["room_id"], job["schema"]) == (JOB, "r1", {"type": "object"})
    assert job["workers"] == [job["worker_id"]]
    again = await api.put("/rooms/r1/jobs", json=body | {"worker_id": job["worker_id"]})
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    got = (await api.get(f"/rooms/r1/jobs/{JOB}")).json()
    assert got == job | {"worker_id": None}
    listing = (await api.get("/rooms/r1/jobs")).json()
    assert listing["items"] == [
        {"full_name": JOB, "category": "modifiers", "name": "Rotate", "workers": job["workers"]}
    ]
    assert (await api.get("/rooms/@global/jobs")).json()["total"] == 0
    assert (await api.get("/rooms/other/jobs")).json()["total"] == 0
    admin = running.api("tok-admin")
    global_job = {"category": "analysis", "name": "Stats:v1/x"}
    made = (await admin.put("/rooms/@global/jobs", json=global_job)).json()
    assert made["full_name"] == "@global:analysis:Stats:v1/x"
    assert (await api.get("/rooms/@global:analysis:Stats:v1/x", params={})).status_code == 404
    names = [j["full_name"] for j in (await api.get("/rooms/r1/jobs")).json()["items"]]
    assert names == ["@global:analysis:Stats:v1/x", JOB]
    assert (await api.get(f"/rooms/r1/jobs/{made['full_name']}")).status_code == 200
    workers = (await api.get("/rooms/r1/workers")).json()
    assert workers["total"] == 2 and set(workers["items"][0]) == {
        "id",
        "last_heartbeat",
        "job_count",
        "draining",
        "drain_deadline",
    }


async def test_task_routes_and_long_poll(start_host, watchers):
    running = await start_host()
    api = running.api()
    watcher = await watchers(running.url, "r1")
    worker = await api.put("/rooms/r1/jobs", json={"category": "modifiers", "name": "Rotate"})
    worker_id = worker.json()["worker_id"]
    submitted = await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {"angle": 90}})
    assert submitted.status_code == 202
    task = submitted.json()
    assert submitted.headers["location"] == f"/v1/joblib/tasks/{task['id']}"
    assert submitted.headers["retry-after"] == "1"
    assert set(task) == TASK_FIELDS
    assert (task["status"], task["queue_position"], task["attempt"]) == ("pending", 1, 0)
    assert (task["room_id"], task["job_name"], task["payload"]) == ("r1", JOB, {"angle": 90})
    utc(task["created_at"])
    event = await watcher.next("task_status_event", id=task["id"], status="pending")
    assert set(event) == {
        "id", "name", "room_id", "status", "created_at", "started_at", "completed_at",
        "queue_position", "worker_id", "error", "attempt",
    }  # fmt: skip
    assert event["queue_position"] == 1
    second = (await api.post(f"/rooms/r1/tasks/{JOB}", json={})).json()
    assert second["queue_position"] == 2

    claim = await api.post("/tasks/claim", json={"worker_id": worker_id})
    assert claim.status_code == 200 and set(claim.json()) == {"task"}
    claimed = claim.json()["task"]
    assert (claimed["id"], claimed["status"], claimed["attempt"]) == (task["id"], "claimed", 1)
    assert claimed["started_at"] is None and claimed["worker_id"] == worker_id

    listing = (await api.get("/rooms/r1/tasks", params={"status": "pending"})).json()
    assert [t["id"] for t in listing["items"]] == [second["id"]]
    assert listing["items"][0]["queue_position"] == 1
    by_job = (await api.get(f"/rooms/r1/jobs/{JOB}/tasks", params={"limit": 1})).json()
    assert (by_job["total"], by_job["limit"], by_job["offset"]) == (2, 1, 0)
    assert [t["id"] for t in by_job["items"]] == [second["id"]]  # newest first

    # Long-poll: woken by the completion, not by its timeout
    poll = asyncio.create_task(api.get(f"/tasks/{task['id']}", headers={"Prefer": "wait=30"}))
    fence = {"worker_id": worker_id, "attempt": 1}
    run = await api.patch(f"/tasks/{task['id']}", json={"status": "running"} | fence)
    assert run.status_code == 200 and run.json()["started_at"] is not None
    done = await api.patch(f"/tasks/{task['id']}", json={"status": "completed"} | fence)
    assert done.json()["status"] == "completed" and done.json()["completed_at"] is not None
    polled = await poll
    assert polled.json()["status"] == "completed"
    assert polled.headers["preference-applied"] == "wait=30"
    instant = await api.get(f"/tasks/{task['id']}", headers={"Prefer": "wait=30"})
    assert "preference-applied" not in instant.headers  # terminal: answered at once
    empty = (await api.post("/tasks/claim", json={"worker_id": worker_id})).json()
    assert empty["task"]["id"] == second["id"]
    assert (await api.post("/tasks/claim", json={"worker_id": worker_id})).json() == {"task": None}
