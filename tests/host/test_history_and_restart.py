"""History over REST (survives worker deletion) and a host restart on the read-model tables."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
from workerledger.adapters.store.read_models import ReadModelTables
from workerledger.adapters.store.url import open_store
from workerledger.host_fastapi.app import build_host

from .conftest import serve, settings

JOB = "r1:modifiers:Rotate"


async def _worker_with_a_claim(api) -> tuple[str, str]:
    job = await api.put("/rooms/r1/jobs", json={"category": "modifiers", "name": "Rotate"})
    worker_id = job.json()["worker_id"]
    task_id = (await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {"n": 1}})).json()["id"]
    claim = await api.post("/tasks/claim", json={"worker_id": worker_id})
    assert claim.json()["task"]["id"] == task_id
    return worker_id, task_id


async def test_worker_history_survives_deletion_and_answers_as_at(start_host):
    # given a worker that claimed a task and then left (DELETE)
    running = await start_host()
    api = running.api()
    worker_id, task_id = await _worker_with_a_claim(api)
    before_leaving = datetime.fromisoformat(
        (await api.get(f"/tasks/{task_id}")).json()["created_at"]
    )
    assert (await api.delete(f"/workers/{worker_id}")).status_code == 204
    assert (await api.get("/workers")).json()["total"] == 0

    # when its history is read, then the whole life is there
    history = (await api.get(f"/workers/{worker_id}/history")).json()
    types = [entry["type"] for entry in history["timeline"]]
    assert types[0] == "WorkerRegistered" and types[-1] == "WorkerLeft"
    assert "WorkerTaskAssigned" in types
    assert history["state"]["status"] == "left"
    assert [(c["task_id"], c["outcome"]) for c in history["claims"]] == [(task_id, "requeued")]
    assert [(r["task_id"], r["outcome"]) for r in history["caused"]] == [(task_id, "requeued")]

    # and `at` shows the state of that moment (online, before the claim ended)
    as_at = await api.get(
        f"/workers/{worker_id}/history",
        params={"at": (before_leaving + timedelta(microseconds=1)).isoformat()},
    )
    assert as_at.json()["state"]["status"] == "online"

    task = (await api.get(f"/tasks/{task_id}/history")).json()
    assert [(a["attempt"], a["worker_id"], a["outcome"]) for a in task["attempts"]] == [
        (1, worker_id, "requeued")
    ]


async def test_history_errors_are_problems(start_host):
    running = await start_host()
    api = running.api()
    unknown = await api.get(f"/workers/{uuid.uuid4()}/history")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert unknown.json()["type"] == "/v1/problems/worker-not-found"
    assert (await api.get(f"/tasks/{uuid.uuid4()}/history")).json()["type"] == (
        "/v1/problems/task-not-found"
    )
    assert (await api.get("/workers/not-a-uuid/history")).status_code == 422
    assert (
        await running.api(token=None).get(f"/workers/{uuid.uuid4()}/history")
    ).status_code == 401


async def test_restart_starts_from_the_read_model_tables(tmp_path):
    # given a host on a SQLite file that registered, submitted and claimed, then stopped
    url = f"sqlite:///{tmp_path / 'host.db'}"
    first = build_host(settings(tmp_path, database_url=url))
    async with (
        serve(first.asgi) as base,
        httpx.AsyncClient(
            base_url=base + "/v1/joblib", headers={"Authorization": "Bearer tok-alice"}
        ) as api,
    ):
        worker_id, _ = await _worker_with_a_claim(api)
        before = (await api.get("/rooms/r1/tasks")).json()

    # then the shutdown checkpoint wrote the tables, and they equal a fresh fold of the log
    store = open_store(url)
    tables = ReadModelTables.for_store(store)
    assert tables.position() > 0
    assert tables.check(store) == []
    store.close()

    # when a second host starts on the same file, it answers as the first did
    second = build_host(settings(tmp_path, database_url=url))
    async with (
        serve(second.asgi) as base,
        httpx.AsyncClient(
            base_url=base + "/v1/joblib", headers={"Authorization": "Bearer tok-alice"}
        ) as api,
    ):
        assert (await api.get("/rooms/r1/tasks")).json() == before
        workers = (await api.get("/workers")).json()
        assert [w["id"] for w in workers["items"]] == [worker_id]
