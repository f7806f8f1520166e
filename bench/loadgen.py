"""Protocol-level load generator, used identically against both hosts.

Everything here speaks only the zndraw-joblib 0.1.7 wire protocol (REST under
`/v1/joblib`, bearer auth on every request, Socket.IO for workerledger's disconnect
path) through httpx and python-socketio: no host code is imported.

Workloads:
- `run_throughput`: W workers (POST /workers + PUT /rooms/{room}/jobs with the worker)
  drain N pre-submitted no-op tasks, each loop claim -> PATCH running -> PATCH
  completed; per-claim latency; every task completed exactly once (client counts, the
  job's task listing and per-task GETs).
- `run_delete`: one worker claims K tasks, then DELETE /workers/{id} is timed; the
  tasks' status afterwards is reported (zndraw-joblib fails them, workerledger
  requeues them).
- `run_death`: a worker subprocess (`python -m bench.loadgen hold ...`) claims a task
  and is SIGKILLed; the time until the task is no longer claimed is measured by
  polling GET /tasks/{id} and, when the host has Socket.IO, a watcher in room:{room}.

`python -m bench.loadgen hold ...` is that worker subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

PREFIX = "/v1/joblib"
CATEGORY = "modifiers"
TERMINAL = {"completed", "failed", "cancelled"}
HELD = {"claimed", "running"}


# --------------------------------------------------------------------------- hosts


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A host subprocess; entering waits until it answers HTTP, leaving stops it."""

    def __init__(
        self,
        *,
        name: str,
        command: list[str],
        env: dict[str, str],
        base_url: str,
        log_path: Path | None = None,
        cwd: Path | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.base_url = base_url
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.log_path = log_path or Path(os.devnull)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def __enter__(self) -> ServerProcess:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        url = f"{self.base_url}{PREFIX}/workers?limit=0"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before serving; "
                    f"log: {self.log_tail()}"
                )
            try:
                httpx.get(url, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer within {self.ready_timeout} s")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass(frozen=True)
class Target:
    """One host as the load generator sees it."""

    name: str
    base_url: str
    token: str
    socketio: bool = False
    pid: int | None = None  # the host process, when started here (its CPU time is read)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


# --------------------------------------------------------------------------- REST


class ProtocolError(RuntimeError):
    pass


class Api:
    """The wire protocol's routes, one method each."""

    def __init__(self, target: Target, client: httpx.AsyncClient) -> None:
        self.target = target
        self.client = client

    @classmethod
    def client_for(
        cls, target: Target, on_request: Callable[[], None] | None = None
    ) -> httpx.AsyncClient:
        """`on_request` is called for every request sent (the pinned bench counts them)."""
        hooks: dict[str, list[Callable[..., Any]]] = {}
        if on_request is not None:

            async def sent(request: httpx.Request) -> None:
                on_request()

            hooks["request"] = [sent]
        return httpx.AsyncClient(
            base_url=target.base_url + PREFIX,
            headers=target.headers,
            timeout=httpx.Timeout(120.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            event_hooks=hooks,
        )

    @staticmethod
    def _check(response: httpx.Response, *expected: int) -> httpx.Response:
        if response.status_code not in expected:
            raise ProtocolError(
                f"{response.request.method} {response.request.url.path} -> "
                f"{response.status_code}: {response.text[:300]}"
            )
        return response

    async def create_worker(self) -> str:
        response = self._check(await self.client.post("/workers"), 201)
        return str(response.json()["id"])

    async def register_job(self, room: str, name: str, worker_id: str) -> str:
        body = {"category": CATEGORY, "name": name, "schema": {}, "worker_id": worker_id}
        response = self._check(await self.client.put(f"/rooms/{room}/jobs", json=body), 200, 201)
        return str(response.json()["full_name"])

    async def submit(self, room: str, job: str, payload: dict[str, Any] | None = None) -> str:
        response = self._check(
            await self.client.post(f"/rooms/{room}/tasks/{job}", json={"payload": payload or {}}),
            202,
        )
        return str(response.json()["id"])

    async def claim(self, worker_id: str) -> dict[str, Any] | None:
        response = self._check(
            await self.client.post("/tasks/claim", json={"worker_id": worker_id}), 200
        )
        task: dict[str, Any] | None = response.json()["task"]
        return task

    async def patch(
        self, task_id: str, status: str, worker_id: str, attempt: int | None
    ) -> httpx.Response:
        body: dict[str, Any] = {"status": status}
        if attempt is not None:  # workerledger's fencing extension; zndraw never sends it
            body["worker_id"] = worker_id
            body["attempt"] = attempt
        return await self.client.patch(f"/tasks/{task_id}", json=body)

    async def heartbeat(self, worker_id: str) -> None:
        self._check(await self.client.patch(f"/workers/{worker_id}"), 200)

    async def delete_worker(self, worker_id: str) -> None:
        self._check(await self.client.delete(f"/workers/{worker_id}"), 204)

    async def get_task(self, task_id: str) -> dict[str, Any]:
        response = self._check(await self.client.get(f"/tasks/{task_id}"), 200)
        task: dict[str, Any] = response.json()
        return task

    async def count_tasks(self, room: str, job: str | None, status: str | None = None) -> int:
        """Total of the job's tasks in the room (or of all the room's tasks)."""
        params: dict[str, Any] = {"limit": 0}
        if status is not None:
            params["status"] = status
        path = f"/rooms/{room}/tasks" if job is None else f"/rooms/{room}/jobs/{job}/tasks"
        response = self._check(await self.client.get(path, params=params), 200)
        return int(response.json()["total"])

    async def list_tasks(self, room: str, job: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = self._check(
                await self.client.get(
                    f"/rooms/{room}/jobs/{job}/tasks", params={"limit": 500, "offset": offset}
                ),
                200,
            )
            page = response.json()
            items.extend(page["items"])
            offset += len(page["items"])
            if not page["items"] or offset >= int(page["total"]):
                return items


HEARTBEAT_SECONDS = 10.0


@contextlib.asynccontextmanager
async def heartbeating(
    api: Api, worker_ids: list[str], interval: float = HEARTBEAT_SECONDS
) -> AsyncIterator[None]:
    """Keep the workers alive (PATCH /workers/{id}) as a real SDK does: both hosts reap
    a worker 60 s after its last beat, and setting up 2,000 tasks can take longer."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            for worker_id in worker_ids:
                with contextlib.suppress(ProtocolError, httpx.HTTPError):
                    await api.heartbeat(worker_id)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def submit_many(api: Api, room: str, job: str, count: int, concurrency: int = 8) -> list[str]:
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> str:
        async with gate:
            return await api.submit(room, job, {"n": index})

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- (a)


@dataclass
class ThroughputResult:
    system: str
    workers: int
    tasks: int
    seconds: float
    submit_seconds: float
    claim_latencies: list[float]
    empty_claims: int
    errors: list[str]
    exactly_once: bool
    check_detail: str

    @property
    def tasks_per_second(self) -> float:
        return self.tasks / self.seconds if self.seconds > 0 else float("nan")

    @property
    def claim_p50_ms(self) -> float:
        return 1000 * percentile(self.claim_latencies, 50)

    @property
    def claim_p99_ms(self) -> float:
        return 1000 * percentile(self.claim_latencies, 99)


@dataclass
class _DrainState:
    total: int
    claimed: int = 0
    empty_claims: int = 0
    latencies: list[float] = field(default_factory=list)
    claims: collections.Counter[str] = field(default_factory=collections.Counter)
    completions: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)


async def _worker_loop(api: Api, worker_id: str, state: _DrainState, deadline: float) -> None:
    while True:
        if time.monotonic() > deadline:
            state.errors.append(f"worker {worker_id}: deadline passed")
            return
        started = time.perf_counter()
        task = await api.claim(worker_id)
        elapsed = time.perf_counter() - started
        if task is None:
            state.empty_claims += 1
            if state.claimed >= state.total:
                return
            await asyncio.sleep(0.005)  # zndraw: "null" can also mean "gave up on contention"
            continue
        state.claimed += 1
        state.latencies.append(elapsed)
        task_id = str(task["id"])
        state.claims[task_id] += 1
        attempt = task.get("attempt")
        for status in ("running", "completed"):
            response = await api.patch(task_id, status, worker_id, attempt)
            if response.status_code != 200:
                state.errors.append(
                    f"PATCH {task_id} {status} -> {response.status_code}: {response.text[:200]}"
                )
                break
        else:
            state.completions[task_id] += 1


async def _touch(api: Api, worker_id: str) -> None:
    """A heartbeat on the worker's connection before the drain: it idled while the tasks
    were submitted, and a server may close a keep-alive connection idle for 5 s just as
    the first claim goes out on it (a claim must not be retried; a heartbeat may)."""
    try:
        await api.heartbeat(worker_id)
    except httpx.TransportError:
        await api.heartbeat(worker_id)


async def run_throughput(
    target: Target,
    *,
    workers: int,
    tasks: int,
    timeout: float = 1800.0,
    mark: Callable[[str], None] | None = None,
    on_request: Callable[[], None] | None = None,
) -> ThroughputResult:
    """`mark` (when given) is called with "submit" before the tasks are submitted, "drain"
    before the workers start and "done" when the last task is completed: the pinned
    bench reads the host's CPU time there. `on_request` counts every request sent."""
    job_name = "drain"
    room = new_room()
    clients = [Api.client_for(target, on_request) for _ in range(workers + 1)]
    marked = mark or (lambda phase: None)
    try:
        apis = [Api(target, client) for client in clients[:workers]]
        worker_ids = [await api.create_worker() for api in apis]
        async with heartbeating(Api(target, clients[-1]), worker_ids):
            job = ""
            for api, worker_id in zip(apis, worker_ids, strict=True):
                job = await api.register_job(room, job_name, worker_id)
            marked("submit")
            submit_started = time.perf_counter()
            submitted = await submit_many(apis[0], room, job, tasks)
            submit_seconds = time.perf_counter() - submit_started

            state = _DrainState(total=tasks)
            deadline = time.monotonic() + timeout
            await asyncio.gather(*(_touch(a, w) for a, w in zip(apis, worker_ids, strict=True)))
            marked("drain")
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    _worker_loop(api, worker_id, state, deadline)
                    for api, worker_id in zip(apis, worker_ids, strict=True)
                )
            )
            seconds = time.perf_counter() - started
            marked("done")
            ok, detail = await _check_exactly_once(apis[0], room, job, submitted, state)
        for api, worker_id in zip(apis, worker_ids, strict=True):
            with contextlib.suppress(ProtocolError, httpx.HTTPError):
                await api.delete_worker(worker_id)
        return ThroughputResult(
            system=target.name,
            workers=workers,
            tasks=tasks,
            seconds=seconds,
            submit_seconds=submit_seconds,
            claim_latencies=state.latencies,
            empty_claims=state.empty_claims,
            errors=state.errors,
            exactly_once=ok and not state.errors,
            check_detail=detail,
        )
    finally:
        for client in clients:
            await client.aclose()


async def _check_exactly_once(
    api: Api, room: str, job: str, submitted: list[str], state: _DrainState
) -> tuple[bool, str]:
    problems: list[str] = []
    wanted = set(submitted)
    if len(wanted) != len(submitted):
        problems.append("duplicate task ids on submit")
    twice = [t for t, n in state.claims.items() if n != 1]
    if twice:
        problems.append(f"{len(twice)} tasks claimed more than once")
    if set(state.claims) != wanted:
        problems.append(f"{len(wanted - set(state.claims))} tasks never claimed")
    done = {t for t, n in state.completions.items() if n == 1}
    if done != wanted:
        problems.append(f"{len(wanted - done)} tasks not completed once by the client")
    listing = await api.list_tasks(room, job)
    ids = [str(item["id"]) for item in listing]
    if len(ids) != len(set(ids)) or set(ids) != wanted:
        problems.append(f"listing holds {len(ids)} ids, {len(set(ids) & wanted)} of ours")
    not_completed = [item for item in listing if item["status"] != "completed"]
    if not_completed:
        problems.append(f"{len(not_completed)} tasks not completed in the listing")
    completed_total = await api.count_tasks(room, job, "completed")
    if completed_total != len(wanted):
        problems.append(f"completed total {completed_total} != {len(wanted)}")
    for task_id in random.sample(submitted, min(20, len(submitted))):
        task = await api.get_task(task_id)
        if task["status"] != "completed":
            problems.append(f"GET {task_id}: {task['status']}")
    if problems:
        return False, "; ".join(problems)
    return True, (
        f"{len(wanted)} submitted, claimed once each, PATCHed completed once each; "
        f"listing and completed total = {completed_total}; 20 GETs agree"
    )


# --------------------------------------------------------------------------- (b)


@dataclass
class DeleteResult:
    system: str
    holding: int
    seconds: float
    statuses_after: dict[str, int]


def new_room() -> str:
    """A room of its own for every workload run, so that listings count only it."""
    return f"bench{uuid.uuid4().hex[:10]}"


async def run_delete(target: Target, *, holding: int) -> DeleteResult:
    job_name = "delete"
    room = new_room()
    async with Api.client_for(target) as client, Api.client_for(target) as beats:
        api = Api(target, client)
        worker_id = await api.create_worker()
        async with heartbeating(Api(target, beats), [worker_id]):
            job = await api.register_job(room, job_name, worker_id)
            await submit_many(api, room, job, holding)
            for _ in range(holding):
                if await api.claim(worker_id) is None:
                    raise ProtocolError("claim returned no task while setting up the DELETE")
            if await api.count_tasks(room, job, "claimed") != holding:
                raise ProtocolError("the worker does not hold all its tasks before DELETE")
            await api.heartbeat(worker_id)
        started = time.perf_counter()
        await api.delete_worker(worker_id)
        seconds = time.perf_counter() - started
        statuses = {  # the room's listing: zndraw soft-deletes the job once it is orphaned
            status: await api.count_tasks(room, None, status)
            for status in ("pending", "claimed", "running", "failed")
        }
        return DeleteResult(target.name, holding, seconds, statuses)


# --------------------------------------------------------------------------- (c)


@dataclass
class DeathResult:
    system: str
    seconds: float
    since_last_heartbeat: float | None
    observed_by: str
    status_after: str


class _Holder:
    """The `hold` subprocess, with its stdout read on a thread."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.ready: dict[str, Any] | None = None
        self.beats: list[float] = []
        self.ready_event = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            kind, _, rest = line.strip().partition(" ")
            if kind == "READY":
                self.ready = json.loads(rest)
                self.ready_event.set()
            elif kind == "BEAT":
                self.beats.append(float(rest))
        self.ready_event.set()

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        self.ready_event.wait(timeout)
        if self.ready is None:
            self.kill()
            error = self.process.stderr.read() if self.process.stderr else ""
            raise ProtocolError(f"holder did not get ready: {error[-800:]}")
        return self.ready

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


async def run_death(
    target: Target, *, heartbeat_interval: float | None, deadline_seconds: float
) -> DeathResult:
    """SIGKILL a worker holding a claimed task; time until the task is released."""
    job_name = "death"
    room = new_room()
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "hold",
        "--base-url",
        target.base_url,
        "--token",
        target.token,
        "--room",
        room,
        "--job-name",
        job_name,
    ]
    if target.socketio:
        command.append("--socketio")
    if heartbeat_interval is not None:
        command += ["--heartbeat-interval", str(heartbeat_interval)]
    holder = _Holder(command)
    watcher: Any = None
    released = asyncio.Event()
    seen: dict[str, Any] = {}
    try:
        ready = await asyncio.to_thread(holder.wait_ready, 60.0)
        task_id = str(ready["task_id"])
        if target.socketio:
            watcher = await _room_watcher(target, room, task_id, released, seen)
        await asyncio.sleep(random.uniform(0.2, 0.5))  # a random point of the beat cycle
        killed_wall = time.time()
        killed = time.perf_counter()
        os.kill(holder.process.pid, signal.SIGKILL)
        async with Api.client_for(target) as client:
            api = Api(target, client)
            poller = asyncio.create_task(_poll_released(api, task_id, released, seen))
            try:
                await asyncio.wait_for(released.wait(), deadline_seconds)
            except TimeoutError as error:
                raise ProtocolError(
                    f"{target.name}: task {task_id} still held {deadline_seconds} s after SIGKILL"
                ) from error
            finally:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
        seconds = float(seen["at"]) - killed
        last_beat = max((b for b in holder.beats if b <= killed_wall), default=None)
        since_beat = None if last_beat is None else seconds + (killed_wall - last_beat)
        return DeathResult(
            system=target.name,
            seconds=seconds,
            since_last_heartbeat=since_beat,
            observed_by=str(seen["by"]),
            status_after=str(seen["status"]),
        )
    finally:
        holder.kill()
        if watcher is not None:
            await watcher.disconnect()


async def _poll_released(
    api: Api, task_id: str, released: asyncio.Event, seen: dict[str, Any]
) -> None:
    while not released.is_set():
        task = await api.get_task(task_id)
        if task["status"] not in HELD and not released.is_set():
            seen.update(at=time.perf_counter(), by="GET poll", status=task["status"])
            released.set()
            return
        await asyncio.sleep(0.01)


async def _room_watcher(
    target: Target, room: str, task_id: str, released: asyncio.Event, seen: dict[str, Any]
) -> Any:
    import socketio  # python-socketio, a workerledger dependency

    client = socketio.AsyncClient(reconnection=False)

    async def on_status(data: dict[str, Any]) -> None:
        status = data.get("status")
        if str(data.get("id")) == task_id and status not in HELD and not released.is_set():
            seen.update(at=time.perf_counter(), by="Socket.IO watcher", status=data["status"])
            released.set()

    client.on("task_status_event", on_status)
    await client.connect(target.base_url, auth={"token": target.token}, transports=["websocket"])
    await client.call("join_room", {"room_id": room}, timeout=10)
    return client


# --------------------------------------------------------------------------- holder


async def hold(
    base_url: str,
    token: str,
    room: str,
    job_name: str,
    *,
    use_socketio: bool,
    heartbeat_interval: float | None,
) -> None:
    """Register, (join the job room), submit one task, claim it, report, then idle."""
    target = Target("holder", base_url, token, socketio=use_socketio)
    async with Api.client_for(target) as client:
        api = Api(target, client)
        worker_id = await api.create_worker()
        job = await api.register_job(room, job_name, worker_id)
        sio: Any = None
        if use_socketio:
            import socketio

            sio = socketio.AsyncClient(reconnection=False)
            await sio.connect(base_url, auth={"token": token}, transports=["websocket"])
            ack = await sio.call(
                "join_job_room", {"job_name": job, "worker_id": worker_id}, timeout=10
            )
            if isinstance(ack, dict) and ack.get("error"):
                raise ProtocolError(f"join_job_room refused: {ack}")
        await api.submit(room, job)
        task = await api.claim(worker_id)
        if task is None:
            raise ProtocolError("holder could not claim its task")
        print("READY " + json.dumps({"worker_id": worker_id, "task_id": task["id"]}), flush=True)
        while True:
            if heartbeat_interval is None:
                await asyncio.sleep(3600)
                continue
            await api.heartbeat(worker_id)
            print(f"BEAT {time.time()}", flush=True)
            await asyncio.sleep(heartbeat_interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    sub = parser.add_subparsers(dest="command", required=True)
    holder = sub.add_parser("hold", help="worker that claims one task and idles until killed")
    holder.add_argument("--base-url", required=True)
    holder.add_argument("--token", required=True)
    holder.add_argument("--room", required=True)
    holder.add_argument("--job-name", required=True)
    holder.add_argument("--socketio", action="store_true")
    holder.add_argument("--heartbeat-interval", type=float, default=None)
    args = parser.parse_args(argv)
    asyncio.run(
        hold(
            args.base_url,
            args.token,
            args.room,
            args.job_name,
            use_socketio=args.socketio,
            heartbeat_interval=args.heartbeat_interval,
        )
    )
    return 0


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
