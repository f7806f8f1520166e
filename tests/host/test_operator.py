"""Operator routes end to end (adapters/rest/operator.py): drain, requeue, fail, cancel,
remove with a reason, on a real uvicorn with a bare zndraw-joblib 0.1.7-style worker
(REST + Socket.IO, no drain support) whose Socket.IO events the test reads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import socketio

from workerledger.cli import main

from .conftest import WAIT

JOB = "r1:modifiers:Rotate"
DRAIN_BODY = {"reason": "deploy v2"}


class BareWorker:
    """A 0.1.7-style worker: registers over REST, joins its job room, records events."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.worker_id = ""
        self.sio.on("*", self._on_any)

    async def _on_any(self, event: str, data: Any = None) -> None:
        await self.events.put((event, data))

    async def start(self, url: str, token: str = "tok-alice") -> BareWorker:
        body = {"category": "modifiers", "name": "Rotate", "on_worker_lost": "requeue"}
        job = (await self.api.put("/rooms/r1/jobs", json=body)).json()
        self.worker_id = job["worker_id"]
        await self.sio.connect(url, auth={"token": token}, transports=["websocket"])
        join = {"job_name": JOB, "worker_id": self.worker_id}
        assert await self.sio.call("join_job_room", join, timeout=WAIT) == {"ok": True}
        return self

    @property
    def sid(self) -> str:
        return str(self.sio.get_sid())

    async def next(self, name: str) -> dict[str, Any]:
        """The next event called `name` (others received meanwhile are skipped)."""
        while True:
            event, data = await asyncio.wait_for(self.events.get(), WAIT)
            if event == name:
                return dict(data)

    async def claim(self) -> dict[str, Any] | None:
        answer = await self.api.post("/tasks/claim", json={"worker_id": self.worker_id})
        assert answer.status_code == 200, answer.text
        task: dict[str, Any] | None = answer.json()["task"]
        return task

    async def report(self, task: dict[str, Any], status: str) -> Any:
        return await self.api.patch(f"/tasks/{task['id']}", json={"status": status})


async def submit(api: Any) -> dict[str, Any]:
    response = await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {"n": 1}})
    assert response.status_code == 202, response.text
    return dict(response.json())


async def test_drain_of_a_worker_without_drain_support_is_done_by_the_server(start_host, watchers):
    # Given a bare worker running one task, and a second task pending
    running = await start_host()
    api, admin = running.api(), running.api("tok-admin")
    watcher = await watchers(running.url, "r1")
    worker = await BareWorker(api).start(running.url)
    first = await submit(api)
    task = await worker.claim()
    assert task is not None and task["id"] == first["id"]
    assert (await worker.report(task, "running")).status_code == 200
    second = await submit(api)

    # When an admin drains it
    answer = await admin.post(f"/workers/{worker.worker_id}/drain", json=DRAIN_BODY)

    # Then it is draining, still online with its task, and out of its job room
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["status"], body["draining"], body["tasks"]) == ("online", True, [first["id"]])
    assert (body["drained_by"], body["drain_reason"], body["drain_deadline"]) == (
        "admin", "deploy v2", None,
    )  # fmt: skip
    notice = await worker.next("worker_drain")
    assert notice == {"worker_id": worker.worker_id, "reason": "deploy v2", "deadline": None,
                      "by": "admin"}  # fmt: skip
    assert f"jobs:{JOB}" not in running.rooms_of(worker.sid)
    listed = (await api.get("/workers")).json()["items"]
    assert [(w["id"], w["draining"]) for w in listed] == [(worker.worker_id, True)]
    # its claims answer "no task" although one is pending
    assert await worker.claim() is None
    # a second drain changes nothing (202, same drain)
    again = await api.post(f"/workers/{worker.worker_id}/drain", json={"reason": "other"})
    assert (again.status_code, again.json()["drain_reason"]) == (202, "deploy v2")

    # When its running task completes
    assert (await worker.report(task, "completed")).status_code == 200

    # Then the server ends it (left, by the drainer, with the reason); the task waits
    gone = await api.get(f"/workers/{worker.worker_id}")
    assert (gone.status_code, gone.json()["type"]) == (404, "/v1/problems/worker-not-found")
    history = (await api.get(f"/workers/{worker.worker_id}/history")).json()
    ended = history["state"]
    assert (ended["status"], ended["end_reason"]) == ("left", "left (by admin): drained: deploy v2")
    assert (await api.get("/workers")).json()["items"] == []
    assert (await api.get(f"/tasks/{second['id']}")).json()["status"] == "pending"
    await watcher.next("task_status_event", id=first["id"], status="completed")
    summaries = [entry["summary"] for entry in history["timeline"]]
    assert "drain requested by admin: deploy v2" in summaries
    assert summaries[-1] == "left (by admin): drained: deploy v2"
    await worker.sio.disconnect()


async def test_a_drain_deadline_releases_what_the_worker_still_holds(start_host, watchers):
    # Given a worker running a task of a requeue job, and a sweeper every 0.1 s
    running = await start_host(sweep_interval_seconds=0.1)
    api = running.api()
    watcher = await watchers(running.url, "r1")
    worker = await BareWorker(api).start(running.url)
    await submit(api)
    task = await worker.claim()
    assert task is not None
    assert (await worker.report(task, "running")).status_code == 200

    # When its owner drains it with a deadline of 0.2 s and it never finishes
    body = {"reason": "host going away", "deadline_seconds": 0.2}
    answer = await api.post(f"/workers/{worker.worker_id}/drain", json=body)
    assert answer.status_code == 202 and answer.json()["drain_deadline"] is not None

    # Then a sweep ends it at the deadline and its task goes back to the queue (policy)
    requeued = await watcher.next("task_status_event", id=task["id"], status="pending", attempt=1)
    assert requeued["worker_id"] is None
    ended = (await api.get(f"/workers/{worker.worker_id}/history")).json()["state"]
    assert (ended["status"], ended["end_reason"]) == ("lost", "drain deadline passed")


async def test_requeue_fences_the_old_attempt_and_tells_its_worker(start_host):
    # Given a worker running a task
    running = await start_host()
    api, admin = running.api(), running.api("tok-admin")
    worker = await BareWorker(api).start(running.url)
    await submit(api)
    task = await worker.claim()
    assert task is not None
    assert (await worker.report(task, "running")).status_code == 200

    # When an admin requeues it
    answer = await admin.post(f"/tasks/{task['id']}/requeue", json={"reason": "stuck on gpu"})

    # Then it is pending again, first in its queue; the worker is told
    assert answer.status_code == 200, answer.text
    requeued = answer.json()
    assert (requeued["status"], requeued["worker_id"], requeued["queue_position"]) == (
        "pending", None, 1,
    )  # fmt: skip
    cancelled = await worker.next("task_cancelled")
    assert cancelled == {"task_id": task["id"], "attempt": 1,
                         "error": "requeued by admin: stuck on gpu"}  # fmt: skip
    # and a late fenced report of the old attempt is refused as stale
    late = await api.patch(
        f"/tasks/{task['id']}",
        json={"status": "completed", "worker_id": worker.worker_id, "attempt": 1},
    )
    assert late.status_code == 409 and late.json()["type"] == "/v1/problems/stale-attempt"
    again = await worker.claim()
    assert again is not None and (again["id"], again["attempt"]) == (task["id"], 2)
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert history["attempts"][0]["outcome"] == "requeued"
    assert history["attempts"][0]["reason"] == "requeued by admin: stuck on gpu"
    await worker.sio.disconnect()


async def test_fail_and_cancel_record_the_reason_and_the_operator(start_host):
    running = await start_host()
    api, admin = running.api(), running.api("tok-admin")
    worker = await BareWorker(api).start(running.url)
    first, second = await submit(api), await submit(api)
    task = await worker.claim()
    assert task is not None and task["id"] == first["id"]

    failed = await admin.post(f"/tasks/{first['id']}/fail", json={"reason": "bad input file"})
    cancelled = await api.post(f"/tasks/{second['id']}/cancel", json={"reason": "not needed"})

    assert (failed.status_code, failed.json()["status"], failed.json()["error"]) == (
        200, "failed", "bad input file",
    )  # fmt: skip
    assert (cancelled.json()["status"], cancelled.json()["error"]) == ("cancelled", "not needed")
    timeline = (await api.get(f"/tasks/{first['id']}/history")).json()["timeline"]
    expected = f"failed (attempt 1, worker {worker.worker_id}, by admin): bad input file"
    assert timeline[-1]["summary"] == expected
    await worker.sio.disconnect()


async def test_remove_with_a_reason_ends_the_worker_at_once(start_host):
    running = await start_host()
    api, admin = running.api(), running.api("tok-admin")
    worker = await BareWorker(api).start(running.url)
    await submit(api)
    task = await worker.claim()
    assert task is not None

    answer = await admin.post(f"/workers/{worker.worker_id}/remove", json={"reason": "bad disk"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["end_reason"], body["tasks"]) == (
        "deleted", "deleted (by admin): bad disk", [],
    )  # fmt: skip
    assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "pending"
    await worker.sio.disconnect()


async def test_operator_routes_refuse_as_problem_json(start_host):
    running = await start_host()
    api, bob = running.api(), running.api("tok-bob")
    worker = await BareWorker(api).start(running.url)
    pending = await submit(api)
    path = f"/workers/{worker.worker_id}/drain"

    forbidden = await bob.post(path, json=DRAIN_BODY)
    unknown = await api.post("/workers/00000000-0000-4000-8000-000000000000/drain", json=DRAIN_BODY)
    not_held = await api.post(f"/tasks/{pending['id']}/requeue", json={"reason": "x"})
    empty = await api.post(path, json={"reason": ""})
    extra = await api.post(path, json={"reason": "x", "force": True})
    negative = await api.post(path, json={"reason": "x", "deadline_seconds": -1})
    boolean = await api.post(path, json={"reason": "x", "deadline_seconds": False})

    assert (forbidden.status_code, forbidden.json()["type"]) == (403, "/v1/problems/forbidden")
    assert forbidden.headers["content-type"] == "application/problem+json"
    assert (unknown.status_code, unknown.json()["type"]) == (404, "/v1/problems/worker-not-found")
    assert (not_held.status_code, not_held.json()["type"]) == (
        409, "/v1/problems/invalid-task-transition",
    )  # fmt: skip
    refused = [empty, extra, negative, boolean]
    assert [answer.status_code for answer in refused] == [422, 422, 422, 422]
    assert (await api.get(f"/workers/{worker.worker_id}")).json()["draining"] is False
    await worker.sio.disconnect()


async def test_the_operator_routes_are_documented(start_host):
    running = await start_host(max_error_length=500)
    document = running.host.api.openapi()
    paths, prefix = document["paths"], "/v1/joblib"
    for path, method in [
        ("/workers/{worker_id}/drain", "post"),
        ("/workers/{worker_id}/remove", "post"),
        ("/workers/{worker_id}", "get"),
        ("/tasks/{task_id}/requeue", "post"),
        ("/tasks/{task_id}/fail", "post"),
        ("/tasks/{task_id}/cancel", "post"),
    ]:
        operation = paths[prefix + path][method]
        assert operation["tags"] == ["operator"]
        assert {"403", "404", "409", "422"} <= set(operation["responses"])
    drain = paths[prefix + "/workers/{worker_id}/drain"]["post"]
    ref = drain["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(body["properties"]) == {"reason", "deadline_seconds"}
    assert body["properties"]["reason"]["maxLength"] == 500  # the host's error limit
    assert body["additionalProperties"] is False


# --- the CLI: workerledger drain | requeue | remove ------------------------------------


async def cli(*words: str) -> int:
    """`workerledger WORDS` in this process (a thread: the host runs in this loop)."""
    return await asyncio.to_thread(main, list(words))


async def test_cli_drain_waits_for_the_worker_to_end(start_host, capsys):
    # Given a worker running a task
    running = await start_host()
    api = running.api()
    worker = await BareWorker(api).start(running.url)
    await submit(api)
    task = await worker.claim()
    assert task is not None
    assert (await worker.report(task, "running")).status_code == 200

    # When `drain --wait` runs (by id prefix, the admin's token) and the task completes
    words = ["drain", worker.worker_id[:8], "--reason", "rolling restart", "--wait"]
    drain = asyncio.create_task(cli(*words, "--url", running.url, "--token", "tok-admin"))
    await worker.next("worker_drain")
    assert not drain.done()
    assert (await worker.report(task, "completed")).status_code == 200

    # Then it returns 0 once the worker has ended, saying so
    assert await asyncio.wait_for(drain, WAIT) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"worker {worker.worker_id}: draining; ends when its 1 task(s)")
    assert lines[1].startswith(f"worker {worker.worker_id}: left (by admin): drained: rolling")
    await worker.sio.disconnect()


async def test_cli_requeue_and_remove(start_host, capsys):
    running = await start_host()
    api = running.api()
    worker = await BareWorker(api).start(running.url)
    await submit(api)
    task = await worker.claim()
    assert task is not None
    url = ["--url", running.url, "--token", "tok-alice"]

    assert await cli("requeue", task["id"], "--reason", "wrong node", *url) == 0
    assert await cli("remove", worker.worker_id, "--reason", "retired", "--json", *url) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"task {task['id']}: pending again (queue position 1)"
    removed = json.loads(out[1])
    assert (removed["status"], removed["end_reason"]) == ("left", "left (by alice): retired")
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert history["attempts"][0]["reason"] == "requeued by alice: wrong node"


async def test_cli_refusals_are_one_line_and_exit_2(start_host, capsys):
    running = await start_host()
    unknown = "00000000-0000-4000-8000-000000000000"
    url = ["--url", running.url, "--token", "tok-alice"]

    codes = [
        await cli("drain", unknown, "--reason", "x", *url),
        await cli("drain", "zz", "--reason", "x", *url),
        await cli("requeue", "abc", "--reason", "x", *url),
        await cli("remove", unknown, "--reason", "x", "--url", running.url, "--token", "nope"),
    ]

    assert codes == [2, 2, 2, 2]
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 4 and all(line.startswith("workerledger: error: ") for line in errors)
    assert errors[0].endswith(f"answered 404: worker {unknown} not found")
    assert "no live worker with that id prefix" in errors[1]
    assert "give the full id" in errors[2]
    assert "refused the token (401)" in errors[3]
