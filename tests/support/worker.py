"""The one scripted worker process of the test suite.

    python tests/support/worker.py protocol URL TOKEN ROOM NAME [--serve]
    python tests/support/worker.py chaos URL TOKEN ROOM --log PATH
    python tests/support/worker.py hold URL TOKEN ROOM

`protocol` is a bare worker (httpx + python-socketio, no SDK), so that the host tests
see the wire protocol itself. It registers job ROOM:modifiers:NAME over REST (creating
its worker), connects over Socket.IO (websocket, no reconnection), joins the job room,
prints {"event": "ready", "worker_id", "sid", "ack"} and then one JSON line per step,
and obeys stdin lines:

- `claim` / `run TASK ATTEMPT` / `complete TASK ATTEMPT`: REST calls to the current
  host (URL at first);
- `serve`: claim, run and complete until no task is left, then print "served";
- `leave`: leave the job room and DELETE the worker;
- `attach URL2`: open a second Socket.IO connection to URL2 and join the job room
  from it (a worker behind a load balancer reconnecting elsewhere); REST goes to URL2
  from then on; prints {"event": "attached", "sid", "ack"};
- `drop-old`: close the first connection (a late disconnect of the old sid).

Every `task_available` a connection receives is printed with the connection's label
("first", "second"); a lost connection is printed as {"event": "disconnected"}. With
--serve it also serves at start and on every `task_available`.

`chaos` and `hold` run the real SDK instead (tests/support/sdk_worker.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import socketio

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/: the `support` package

PREFIX = "/v1/joblib"


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class ProtocolWorker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.http = self._http(args.url)
        self.connections: list[socketio.AsyncClient] = []
        self.worker_id = ""
        self.job_name = ""
        self.lock = asyncio.Lock()  # one serving loop at a time

    def _http(self, url: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.args.token}"}
        return httpx.AsyncClient(base_url=url + PREFIX, headers=headers, timeout=10, verify=False)

    async def start(self) -> None:
        body = {"category": "modifiers", "name": self.args.name, "schema": {}}
        response = await self.http.put(f"/rooms/{self.args.room}/jobs", json=body)
        response.raise_for_status()
        job = response.json()
        self.worker_id, self.job_name = job["worker_id"], job["full_name"]
        sid, ack = await self.connect(self.args.url, "first")
        say("ready", worker_id=self.worker_id, sid=sid, ack=ack)
        if self.args.serve:
            await self.serve()

    async def connect(self, url: str, label: str) -> tuple[str, Any]:
        sio = socketio.AsyncClient(reconnection=False)

        async def on_available(data: Any = None) -> None:
            say("task_available", via=label, data=data)
            if self.args.serve:
                await self.serve()

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

    async def serve(self) -> None:
        async with self.lock:
            while (task := await self.claim()) is not None:
                await self.report(task["id"], task["attempt"], "running")
                await self.report(task["id"], task["attempt"], "completed")

    async def leave(self) -> None:
        ack = await self.connections[-1].call(
            "leave_job_room", {"job_name": self.job_name, "worker_id": self.worker_id}
        )
        response = await self.http.delete(f"/workers/{self.worker_id}")
        say("left", ack=ack, status=response.status_code)

    async def attach(self, url: str) -> None:
        await self.http.aclose()
        self.http = self._http(url)
        sid, ack = await self.connect(url, "second")
        say("attached", sid=sid, ack=ack)

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
                case ["serve"]:
                    await self.serve()
                    say("served")
                case ["leave"]:
                    await self.leave()
                case ["attach", url]:
                    await self.attach(url)
                case ["drop-old"]:
                    await self.connections[0].disconnect()
                    say("dropped")
        for sio in self.connections:
            await sio.disconnect()


async def run_protocol(args: argparse.Namespace) -> int:
    worker = ProtocolWorker(args)
    await worker.start()
    await worker.obey()
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="worker.py")
    modes = parser.add_subparsers(dest="mode", required=True)
    for mode in ("protocol", "chaos", "hold"):
        sub = modes.add_parser(mode)
        for name in ("url", "token", "room"):
            sub.add_argument(name)
        if mode == "protocol":
            sub.add_argument("name")
            sub.add_argument("--serve", action="store_true")
        if mode == "chaos":
            sub.add_argument("--log", required=True)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.mode == "protocol":
        return asyncio.run(run_protocol(args))
    from support import sdk_worker  # the SDK only where it runs

    if args.mode == "chaos":
        return sdk_worker.run_chaos(args.url, args.token, args.room, args.log)
    return sdk_worker.run_hold(args.url, args.token, args.room)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
