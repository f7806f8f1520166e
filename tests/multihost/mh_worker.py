"""A worker process for the multi-host tests: httpx + python-socketio, no SDK.

    python mh_worker.py URL TOKEN ROOM NAME

Registers job ROOM:modifiers:NAME over REST on URL (creating its worker), connects
over Socket.IO (websocket, no reconnection) to URL and joins the job room, prints
{"event": "ready", "worker_id", "sid", "ack"} and then one JSON line per step, and
obeys stdin lines:

- `claim` / `run TASK ATTEMPT` / `complete TASK ATTEMPT`: REST calls to the current
  REST host (URL at first);
- `attach URL2`: open a second Socket.IO connection to URL2 and join the job room
  from it (what a worker behind a load balancer does when it reconnects elsewhere);
  REST goes to URL2 from then on; prints {"event": "attached", "sid", "ack"};
- `drop-old`: close the first connection (a late disconnect of the old sid);
- `serve`: claim, run and complete until no task is left.

Every `task_available` a connection receives is printed with the connection's label.
A connection lost (its host killed) is printed as {"event": "disconnected", ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import httpx
import socketio

PREFIX = "/v1/joblib"


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.http = self._http(args.url)
        self.connections: list[socketio.AsyncClient] = []
        self.worker_id = ""
        self.job_name = ""

    def _http(self, url: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.args.token}"}
        return httpx.AsyncClient(base_url=url + PREFIX, headers=headers, timeout=10)

    async def start(self) -> None:
        body = {"category": "modifiers", "name": self.args.name, "schema": {}}
        response = await self.http.put(f"/rooms/{self.args.room}/jobs", json=body)
        response.raise_for_status()
        job = response.json()
        self.worker_id, self.job_name = job["worker_id"], job["full_name"]
        sid, ack = await self.connect(self.args.url, "first")
        say("ready", worker_id=self.worker_id, sid=sid, ack=ack)

    async def connect(self, url: str, label: str) -> tuple[str, Any]:
        sio = socketio.AsyncClient(reconnection=False)

        async def on_available(data: Any = None) -> None:
            say("task_available", via=label, data=data)

        async def on_disconnect(reason: Any = None) -> None:
            say("disconnected", via=label, reason=str(reason))

        sio.on("task_available", on_available)
        sio.on("disconnect", on_disconnect)
        await sio.connect(url, auth={"token": self.args.token}, transports=["websocket"])
        ack = await sio.call(
            "join_job_room", {"job_name": self.job_name, "worker_id": self.worker_id}, timeout=10
        )
        self.connections.append(sio)
        return str(sio.get_sid()), ack

    async def claim(self) -> dict[str, Any] | None:
        response = await self.http.post("/tasks/claim", json={"worker_id": self.worker_id})
        task: dict[str, Any] | None = response.json().get("task")
        say("claimed", task=task, status=response.status_code)
        return task

    async def report(self, task_id: str, attempt: int, status: str) -> None:
        body = {"status": status, "worker_id": self.worker_id, "attempt": attempt}
        response = await self.http.patch(f"/tasks/{task_id}", json=body)
        say(status, task_id=task_id, status=response.status_code, body=response.json())

    async def obey(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            match line:
                case ["claim"]:
                    await self.claim()
                case ["run", task_id, attempt]:
                    await self.report(task_id, int(attempt), "running")
                case ["complete", task_id, attempt]:
                    await self.report(task_id, int(attempt), "completed")
                case ["attach", url]:
                    await self.http.aclose()
                    self.http = self._http(url)
                    sid, ack = await self.connect(url, "second")
                    say("attached", sid=sid, ack=ack)
                case ["drop-old"]:
                    await self.connections[0].disconnect()
                    say("dropped")
                case ["serve"]:
                    while (task := await self.claim()) is not None:
                        await self.report(task["id"], task["attempt"], "running")
                        await self.report(task["id"], task["attempt"], "completed")
                    say("served")
        for sio in self.connections:
            await sio.disconnect()


async def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "token", "room", "name"):
        parser.add_argument(name)
    worker = Worker(parser.parse_args())
    await worker.start()
    await worker.obey()


if __name__ == "__main__":
    asyncio.run(main())
