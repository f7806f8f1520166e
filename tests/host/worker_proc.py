"""A bare worker process for the host tests: httpx + python-socketio, no SDK.

    python worker_proc.py URL TOKEN ROOM NAME [--serve]

Registers job ROOM:modifiers:NAME over REST (creating its worker), connects over
Socket.IO (websocket, no reconnection), joins the job room with an ack, prints one
JSON line per step on stdout ({"event": "ready", "worker_id", "sid"} first) and then
obeys stdin lines: `claim`, `run TASK ATTEMPT`, `complete TASK ATTEMPT`, `leave`.
With --serve it claims, runs and completes every task announced by `task_available`.
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
        self.http = httpx.AsyncClient(
            base_url=args.url, headers={"Authorization": f"Bearer {args.token}"}, timeout=10
        )
        self.sio = socketio.AsyncClient(reconnection=False)
        self.worker_id = ""
        self.job_name = ""
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        body = {"category": "modifiers", "name": self.args.name, "schema": {}}
        response = await self.http.put(f"{PREFIX}/rooms/{self.args.room}/jobs", json=body)
        response.raise_for_status()
        job = response.json()
        self.worker_id, self.job_name = job["worker_id"], job["full_name"]
        if self.args.serve:
            self.sio.on("task_available", self.on_task_available)
        await self.sio.connect(
            self.args.url, auth={"token": self.args.token}, transports=["websocket"]
        )
        ack = await self.sio.call(
            "join_job_room", {"job_name": self.job_name, "worker_id": self.worker_id}
        )
        say("ready", worker_id=self.worker_id, sid=self.sio.get_sid(), ack=ack)
        if self.args.serve:
            await self.serve_all()

    async def claim(self) -> dict[str, Any] | None:
        response = await self.http.post(f"{PREFIX}/tasks/claim", json={"worker_id": self.worker_id})
        task: dict[str, Any] | None = response.json()["task"]
        say("claimed", task=task, status=response.status_code)
        return task

    async def report(self, task_id: str, attempt: int, status: str) -> None:
        body = {"status": status, "worker_id": self.worker_id, "attempt": attempt}
        response = await self.http.patch(f"{PREFIX}/tasks/{task_id}", json=body)
        say(status, task_id=task_id, status=response.status_code, body=response.json())

    async def serve_all(self) -> None:
        async with self.lock:
            while (task := await self.claim()) is not None:
                await self.report(task["id"], task["attempt"], "running")
                await self.report(task["id"], task["attempt"], "completed")

    async def on_task_available(self, data: dict[str, Any]) -> None:
        await self.serve_all()

    async def leave(self) -> None:
        ack = await self.sio.call(
            "leave_job_room", {"job_name": self.job_name, "worker_id": self.worker_id}
        )
        response = await self.http.delete(f"{PREFIX}/workers/{self.worker_id}")
        say("left", ack=ack, status=response.status_code)

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
                case ["leave"]:
                    await self.leave()
        await self.sio.disconnect()


async def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "token", "room", "name"):
        parser.add_argument(name)
    parser.add_argument("--serve", action="store_true")
    worker = Worker(parser.parse_args())
    await worker.start()
    await worker.obey()


if __name__ == "__main__":
    asyncio.run(main())
