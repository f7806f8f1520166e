"""A host app of its own (README "Host App Integration") handles a SIGKILLed worker."""

from __future__ import annotations

import httpx

from .conftest import PREFIX, WAIT, Watcher, serve
from .embedded_host import build_app

JOB = "r1:modifiers:Rotate"


async def test_embedded_host_cleans_up_a_killed_worker(spawn_worker):
    async with serve(build_app("memory://")) as url:
        api = httpx.AsyncClient(
            base_url=url + PREFIX, headers={"Authorization": "Bearer secret-token"}, timeout=WAIT
        )
        watcher = await Watcher().start(url, "r1", token="secret-token")
        worker = await spawn_worker(url, "r1", "Rotate", token="secret-token")
        task = (await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {}})).json()
        await worker.send("claim")
        assert (await worker.expect("claimed"))["task"]["id"] == task["id"]

        await worker.kill()

        requeued = await watcher.next(
            "task_status_event", id=task["id"], status="pending", attempt=1
        )
        assert requeued["worker_id"] is None
        assert (await api.get("/workers")).json()["items"] == []
        await watcher.client.disconnect()
        await api.aclose()
