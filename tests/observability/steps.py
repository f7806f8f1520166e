"""The steps the observability tests take on a real host: REST calls and Socket.IO
connections, and an emitter that tells when a disconnect was committed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import socketio
from host.conftest import WAIT, RunningHost
from workerledger.core import Emission, LeaveRoom

JOB = "r1:modifiers:Rotate"


class LeftRooms:
    """An emitter queueing the sids whose rooms a committed decision left (disconnects)."""

    def __init__(self) -> None:
        self.sids: asyncio.Queue[str] = asyncio.Queue()

    async def deliver(self, emissions: list[Emission]) -> None:
        for emission in emissions:
            if isinstance(emission, LeaveRoom):
                await self.sids.put(emission.sid)

    async def wait_for(self, sid: str) -> None:
        while await asyncio.wait_for(self.sids.get(), WAIT) != sid:
            pass


async def new_worker(api: httpx.AsyncClient) -> str:
    response = await api.put("/rooms/r1/jobs", json={"category": "modifiers", "name": "Rotate"})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["worker_id"])


async def submit(api: httpx.AsyncClient) -> str:
    response = await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {"n": 1}})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def claim(api: httpx.AsyncClient, worker_id: str) -> dict[str, Any]:
    response = await api.post("/tasks/claim", json={"worker_id": worker_id})
    assert response.status_code == 200, response.text
    return dict(response.json()["task"])


async def report(
    api: httpx.AsyncClient, task_id: str, status: str, worker_id: str, attempt: int
) -> httpx.Response:
    body = {"status": status, "worker_id": worker_id, "attempt": attempt}
    return await api.patch(f"/tasks/{task_id}", json=body)


async def connect(running: RunningHost, worker_id: str) -> socketio.AsyncClient:
    """A Socket.IO connection that joined the job room for `worker_id`."""
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(running.url, auth={"token": "tok-alice"}, transports=["websocket"])
    join = {"job_name": JOB, "worker_id": worker_id}
    assert await client.call("join_job_room", join, timeout=WAIT) == {"ok": True}
    return client


async def drop(running: RunningHost, worker_id: str, left_rooms: LeftRooms) -> str:
    """Connect for `worker_id`, then drop the connection; returns once the disconnect
    was committed. The connection's sid."""
    client = await connect(running, worker_id)
    sid = str(client.get_sid())
    await client.disconnect()
    await left_rooms.wait_for(sid)
    return sid
