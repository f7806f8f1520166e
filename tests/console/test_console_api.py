"""The console's HTTP side: the page and its files need no token, its data does; the
overview filters and paginates on the server, answers `changed: false` while nothing
changed, is mountable by an embedding host, and shows another host's workers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from host.conftest import PREFIX, RunningHost, serve
from support.services import fresh_postgres_database
from workerledger.adapters.console import overview as overview_module
from workerledger.adapters.store.url import migrate

from workerledger import Actor, LedgerRuntime, StaticTokens, create_console_router, create_router

OVERVIEW = "/console/api/overview"


def console(running: RunningHost, token: str | None = "tok-alice") -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.AsyncClient(base_url=running.url, headers=headers, timeout=15, verify=False)
    running.clients.append(client)
    return client


async def register(api: httpx.AsyncClient, room: str, name: str) -> str:
    body = {"category": "modifiers", "name": name}
    response = await api.put(f"/rooms/{room}/jobs", json=body)
    assert response.status_code in (200, 201), response.text  # 200: the job existed
    worker_id: str = response.json()["worker_id"]
    return worker_id


async def submit(api: httpx.AsyncClient, room: str, job: str) -> str:
    response = await api.post(f"/rooms/{room}/tasks/{job}", json={"payload": {}})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def overview(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get(OVERVIEW, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def test_page_and_files_need_no_token_but_the_data_does(start_host):
    running = await start_host()
    anonymous = console(running, token=None)
    page = await anonymous.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'data-base="/console"' in page.text and f'data-rest="{PREFIX}"' in page.text
    for path in ("/console/workers/some-id", "/console/tasks/some-id"):
        assert (await anonymous.get(path)).text == page.text
    scripts = re.findall(r'src="(/console/static/[^"?]+)', page.text)
    assert scripts == ["/console/static/console.js"]
    script = await anonymous.get(scripts[0])
    assert script.headers["content-type"].startswith("text/javascript")
    again = await anonymous.get(scripts[0], headers={"If-None-Match": script.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    for name in ("util.js", "overview.js", "timeline.js", "console.css"):
        assert (await anonymous.get(f"/console/static/{name}")).status_code == 200
    for name in ("shell.html", "nothing.js", "..%2Froutes.py"):
        assert (await anonymous.get(f"/console/static/{name}")).status_code == 404

    assert (await anonymous.get(OVERVIEW)).status_code == 401
    assert (await console(running, token="wrong").get(OVERVIEW)).status_code == 401
    assert (await overview(console(running)))["changed"] is True
    openapi = (await anonymous.get("/openapi.json")).json()
    assert not [path for path in openapi["paths"] if path.startswith("/console")]


async def test_overview_shows_workers_jobs_and_tasks_filtered_and_paginated(start_host):
    running = await start_host()
    alice, bob = running.api("tok-alice"), running.api("tok-bob")
    a1 = await register(alice, "r1", "Rotate")
    a2 = await register(alice, "r1", "Rotate")
    b1 = await register(bob, "r2", "Smooth")
    tasks = [await submit(alice, "r1", "r1:modifiers:Rotate") for _ in range(3)]
    bob_task = await submit(bob, "r2", "r2:modifiers:Smooth")
    claimed = (await alice.post("/tasks/claim", json={"worker_id": a1})).json()["task"]
    assert claimed["id"] == tasks[0]
    assert (await alice.delete(f"/workers/{a2}")).status_code == 204

    client = console(running)
    body = await overview(client)
    assert body["counts"] == {"online": 2, "disconnected": 0, "lost": 0, "left": 1, "deleted": 0}
    assert (body["held"], body["queued"]) == (1, 3)
    workers = {w["id"]: w for w in body["workers"]["items"]}
    assert [w["id"] for w in body["workers"]["items"]] == [b1, a2, a1]  # newest first
    assert workers[a1]["state"] == "online" and workers[a1]["connected"] is False
    assert workers[a1]["held"] == [
        {"id": tasks[0], "status": "claimed", "job_name": "r1:modifiers:Rotate"}
    ]
    assert (workers[a1]["rooms"], workers[a1]["jobs"]) == (["r1"], ["r1:modifiers:Rotate"])
    assert workers[a2]["state"] == "left" and workers[a2]["end_reason"] == "left (by alice)"
    assert workers[b1]["user"] == "bob"
    jobs = {j["full_name"]: j for j in body["jobs"]["items"]}
    rotate = jobs["r1:modifiers:Rotate"]
    assert (rotate["room_id"], rotate["queue_depth"], rotate["workers"]) == ("r1", 2, 1)
    assert jobs["r2:modifiers:Smooth"]["queue_depth"] == 1
    listed = body["tasks"]["items"]
    assert [t["id"] for t in listed] == [bob_task, *reversed(tasks)]
    first = next(t for t in listed if t["id"] == tasks[0])
    assert (first["status"], first["attempt"], first["worker_id"]) == ("claimed", 1, a1)
    assert [t["queue_position"] for t in listed[1:3]] == [2, 1]

    by_room = await overview(client, room="r2")
    assert [w["id"] for w in by_room["workers"]["items"]] == [b1]
    assert [t["id"] for t in by_room["tasks"]["items"]] == [bob_task]
    assert [j["full_name"] for j in by_room["jobs"]["items"]] == ["r2:modifiers:Smooth"]
    by_user = await overview(client, user="alice", state="live")
    assert [w["id"] for w in by_user["workers"]["items"]] == [a1]
    assert by_user["counts"]["left"] == 1 and by_user["workers"]["total"] == 1
    ended = await overview(client, state="ended")
    assert [w["id"] for w in ended["workers"]["items"]] == [a2]
    pending = await overview(client, status="pending", task_limit=1, task_offset=1)
    assert [t["id"] for t in pending["tasks"]["items"]] == [tasks[2]]
    assert pending["tasks"]["has_more"] is True
    last = await overview(client, status="pending", task_limit=2, task_offset=2)
    assert [t["id"] for t in last["tasks"]["items"]] == [tasks[1]]
    assert last["tasks"]["has_more"] is False
    paged = await overview(client, limit=1, offset=1)
    assert [w["id"] for w in paged["workers"]["items"]] == [a2]
    assert paged["workers"]["total"] == 3
    refused = await client.get(OVERVIEW, params={"state": "sleeping"})
    assert refused.status_code == 422
    assert (await client.get(OVERVIEW, params={"limit": 501})).status_code == 422


async def test_overview_is_unchanged_until_the_log_or_a_heartbeat_moves(start_host):
    running = await start_host()
    alice = running.api()
    client = console(running)
    worker_id = await register(alice, "r1", "Rotate")
    first = await overview(client)
    same = await overview(client, since=first["token"])
    assert same["changed"] is False and same["token"] == first["token"]
    assert same.get("workers") is None
    other_filter = await overview(client, since=first["token"], room="r1")
    assert other_filter["changed"] is True
    await submit(alice, "r1", "r1:modifiers:Rotate")
    moved = await overview(client, since=first["token"])
    assert moved["changed"] is True and moved["queued"] == 1
    beat = await alice.patch(f"/workers/{worker_id}")
    assert beat.status_code == 200
    after_beat = await overview(client, since=moved["token"])
    assert after_beat["changed"] is True
    assert after_beat["workers"]["items"][0]["last_heartbeat"] == beat.json()["last_heartbeat"]


async def test_a_filtered_task_list_walks_a_bounded_number_of_tasks(start_host, monkeypatch):
    monkeypatch.setattr(overview_module, "TASK_SCAN_LIMIT", 3)
    running = await start_host()
    alice = running.api()
    await register(alice, "r1", "Rotate")
    oldest = await submit(alice, "r1", "r1:modifiers:Rotate")
    for _ in range(3):
        await submit(alice, "r1", "r1:modifiers:Rotate")
    client = console(running)
    whole = (await overview(client))["tasks"]
    assert (len(whole["items"]), whole["truncated"], whole["has_more"]) == (4, False, False)
    bounded = (await overview(client, status="pending"))["tasks"]
    assert oldest not in [t["id"] for t in bounded["items"]]  # past the walk's bound
    assert (len(bounded["items"]), bounded["searched"]) == (3, 3)
    assert (bounded["truncated"], bounded["has_more"]) == (True, True)
    first, again = await overview(client), await overview(client)  # the second is cached
    assert first["token"] == again["token"] and first["now"] < again["now"]
    assert first["tasks"] == again["tasks"]


async def test_an_embedding_host_mounts_the_console_where_it_likes(tmp_path):
    runtime = LedgerRuntime(
        f"sqlite:///{tmp_path / 'embedded.db'}",
        authenticate=StaticTokens({"secret": Actor(user="carol")}),
    )
    api = FastAPI()
    api.include_router(create_router(runtime), prefix="/jobs")
    api.include_router(
        create_console_router(runtime, prefix="/ops", rest_prefix="/jobs/v1/joblib"),
        prefix="/admin",
    )
    await runtime.start()
    try:
        async with serve(api) as url, httpx.AsyncClient(base_url=url, timeout=15) as client:
            page = await client.get("/admin/ops/workers/abc")
            assert 'data-base="/admin/ops"' in page.text
            assert 'data-rest="/jobs/v1/joblib"' in page.text
            assert 'src="/admin/ops/static/console.js' in page.text
            auth = {"Authorization": "Bearer secret"}
            made = await client.post("/jobs/v1/joblib/workers", headers=auth)
            body = (await client.get("/admin/ops/api/overview", headers=auth)).json()
            assert [w["id"] for w in body["workers"]["items"]] == [made.json()["id"]]
            history = await client.get(f"/jobs/v1/joblib/workers/{made.json()['id']}/history")
            assert history.status_code == 401
    finally:
        await runtime.stop()


@pytest.fixture
def shared_database() -> Iterator[str]:
    """A migrated PostgreSQL database; requested before `start_host`, so that it is
    dropped only after the hosts stopped."""
    with fresh_postgres_database() as database_url:
        migrate(database_url)
        yield database_url


@pytest.mark.services
async def test_every_host_of_a_deployment_shows_the_workers_of_the_others(
    shared_database, start_host
):
    first = await start_host(database_url=shared_database)
    second = await start_host(database_url=shared_database)
    worker_id = await register(first.api(), "r1", "Rotate")
    seen = await overview(console(second))
    assert [(w["id"], w["state"]) for w in seen["workers"]["items"]] == [(worker_id, "online")]
    assert (await first.api().delete(f"/workers/{worker_id}")).status_code == 204
    later = await overview(console(second), since=seen["token"])
    assert later["changed"] is True
    assert later["workers"]["items"][0]["state"] == "left"
    assert later["counts"]["left"] == 1
