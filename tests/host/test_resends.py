"""Every REST write is safe to resend (issue 18): keyed submit and claim, repeated
status reports, keys bound to their request, and the claim lease."""

from __future__ import annotations

from .test_wire import JOB


async def _worker_with_job(api) -> str:
    body = {"category": "modifiers", "name": "Rotate"}
    registered = await api.put("/rooms/r1/jobs", json=body)
    assert registered.status_code == 201
    return registered.json()["worker_id"]


async def test_a_keyed_submit_sent_again_answers_with_the_same_task(start_host):
    running = await start_host()
    api = running.api()
    await _worker_with_job(api)
    key = {"Idempotency-Key": "submit-1"}
    first = await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {"a": 1}}, headers=key)
    again = await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {"a": 1}}, headers=key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"]
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    listing = (await api.get("/rooms/r1/tasks")).json()
    assert listing["total"] == 1
    other_user = await running.api("tok-bob").post(
        f"/rooms/r1/tasks/{JOB}", json={"payload": {"a": 1}}, headers=key
    )
    assert other_user.json()["id"] != first.json()["id"]  # keys are per user


async def test_a_submit_key_reused_for_another_request_is_refused(start_host):
    running = await start_host()
    api = running.api()
    await _worker_with_job(api)
    key = {"Idempotency-Key": "submit-2"}
    await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {"a": 1}}, headers=key)
    reused = await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {"a": 2}}, headers=key)
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["type"] == "/v1/problems/idempotency-key-reused"
    assert (await api.get("/rooms/r1/tasks")).json()["total"] == 1


async def test_a_keyed_claim_sent_again_answers_with_the_task_it_claimed(start_host):
    running = await start_host()
    api = running.api()
    worker_id = await _worker_with_job(api)
    for n in range(2):
        await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {"n": n}})
    key = {"Idempotency-Key": "claim-1"}
    first = await api.post("/tasks/claim", json={"worker_id": worker_id}, headers=key)
    again = await api.post("/tasks/claim", json={"worker_id": worker_id}, headers=key)
    assert first.json()["task"]["id"] == again.json()["task"]["id"]
    assert again.json()["task"]["status"] == "claimed"
    assert again.headers["Idempotent-Replayed"] == "true"
    pending = (await api.get("/rooms/r1/tasks", params={"status": "pending"})).json()
    assert pending["total"] == 1  # the second task was not claimed by the resend
    other = await api.post("/tasks/claim", json={"worker_id": worker_id}, headers={})
    assert other.json()["task"]["id"] != first.json()["task"]["id"]


async def test_a_repeated_status_report_answers_200_and_records_nothing(start_host):
    running = await start_host()
    api = running.api()
    worker_id = await _worker_with_job(api)
    task = (await api.post(f"/rooms/r1/tasks/{JOB}", json={})).json()
    claimed = (await api.post("/tasks/claim", json={"worker_id": worker_id})).json()["task"]
    fenced = {"worker_id": worker_id, "attempt": claimed["attempt"]}
    for status in ("running", "running", "completed", "completed"):
        answer = await api.patch(f"/tasks/{task['id']}", json={"status": status, **fenced})
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == status
    bare = await api.patch(f"/tasks/{task['id']}", json={"status": "completed"})  # 0.1.7 client
    assert bare.status_code == 200
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    kinds = [entry["type"] for entry in history["timeline"]]
    assert kinds.count("TaskStarted") == 1 and kinds.count("TaskCompleted") == 1
    illegal = await api.patch(f"/tasks/{task['id']}", json={"status": "running", **fenced})
    assert illegal.status_code == 409  # a real transition backwards is still refused


async def test_a_registration_key_reused_for_another_job_is_refused(start_host):
    running = await start_host()
    api = running.api()
    key = {"Idempotency-Key": "boot-1"}
    first = await api.put(
        "/rooms/r1/jobs", json={"category": "modifiers", "name": "A"}, headers=key
    )
    other = await api.put(
        "/rooms/r1/jobs", json={"category": "modifiers", "name": "B"}, headers=key
    )
    assert first.status_code == 201
    assert other.status_code == 422
    assert other.json()["type"] == "/v1/problems/idempotency-key-reused"
    jobs = (await api.get("/rooms/r1/jobs")).json()
    assert [job["name"] for job in jobs["items"]] == ["A"]


async def test_a_claim_not_started_within_its_lease_is_requeued_and_fenced(start_host, watchers):
    running = await start_host(claim_timeout_seconds=0.2, sweep_interval_seconds=0.1)
    api = running.api()
    worker_id = await _worker_with_job(api)
    watcher = await watchers(running.url, "r1")
    task = (await api.post(f"/rooms/r1/tasks/{JOB}", json={})).json()
    claimed = (await api.post("/tasks/claim", json={"worker_id": worker_id})).json()["task"]
    assert claimed["id"] == task["id"]
    await watcher.next("task_status_event", id=task["id"], status="pending", attempt=1)
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    requeue = [e for e in history["timeline"] if e["type"] == "TaskRequeued"]
    assert requeue and requeue[0]["event"]["reason"] == "claim-timeout"
    again = (await api.post("/tasks/claim", json={"worker_id": worker_id})).json()["task"]
    assert again["attempt"] == 2
    late = await api.patch(
        f"/tasks/{task['id']}", json={"status": "running", "worker_id": worker_id, "attempt": 1}
    )
    assert late.status_code == 409 and late.json()["type"] == "/v1/problems/stale-attempt"
