"""The six provider routes of zndraw-joblib 0.1.7 on a real host (uvicorn on 127.0.0.1,
httpx and python-socketio clients): registration, listing, info, deletion, and reads
answered by a provider's worker through the result cache, on one host and on two hosts
sharing a Redis cache and a PostgreSQL log.

`Dispatches` records what the host emits (the `provider_request`s it dispatched) as the
ledger delivers it, so a count is exact once the read that would dispatch returned."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from fastapi import FastAPI
from host.conftest import PREFIX, TOKENS, WAIT, RunningHost, serve
from support.services import fresh_postgres_database, redis_prefix
from workerledger.adapters.auth import StaticTokens
from workerledger.adapters.providers.redis_results import RedisResultCache
from workerledger.adapters.providers.results import ResultCache
from workerledger.adapters.realtime.handlers import register_socketio_handlers
from workerledger.adapters.rest.router import create_router
from workerledger.adapters.room_policy import OpenRooms
from workerledger.adapters.runtime import LedgerPolicies, LedgerRuntime
from workerledger.adapters.store.url import migrate
from workerledger.core import Actor, Emission, Emit, RoomLockedError

ROOM = "r1"
FILES = {"category": "filesystem", "name": "local", "schema": {"path": {"type": "string"}}}
FULL_NAME = f"{ROOM}:filesystem:local"
PROVIDER_FIELDS = {
    "id", "room_id", "category", "name", "full_name", "schema", "worker_id", "created_at",
    "content_type",
}  # fmt: skip


def zndraw_hash(params: dict[str, str]) -> str:
    """zndraw-joblib 0.1.7's `request_hash`, written out: what its workers send back."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def client_of(running: RunningHost, token: str = "tok-alice") -> httpx.AsyncClient:
    """`running.api(token)` without loading CA certificates (plain http): instant to make."""
    headers = {"Authorization": f"Bearer {token}"}
    client = httpx.AsyncClient(
        base_url=running.url + PREFIX, headers=headers, timeout=WAIT, verify=False
    )
    running.clients.append(client)
    return client


async def until(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (checked every 10 ms; a failure after WAIT s)."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


class Dispatches:
    """An emitter keeping every `Emit` the host delivers."""

    def __init__(self) -> None:
        self.emitted: list[Emit] = []

    async def deliver(self, emissions: Sequence[Emission]) -> None:
        self.emitted.extend(e for e in emissions if isinstance(e, Emit))

    def requests(self) -> list[Emit]:
        return [e for e in self.emitted if e.event == "provider_request"]


class FakeProviderWorker:
    """A provider's worker over Socket.IO: joins `providers:<full name>` and answers each
    `provider_request` by POSTing `answer(params)` with the request's hash."""

    def __init__(self, api: httpx.AsyncClient, provider: dict[str, Any]) -> None:
        self.api, self.provider = api, provider
        self.client = socketio.AsyncClient(reconnection=False)
        self.received: list[dict[str, Any]] = []
        self.client.on("provider_request", self._on_request)

    async def start(self, url: str, token: str = "tok-alice") -> FakeProviderWorker:
        await self.client.connect(url, auth={"token": token}, transports=["websocket"])
        join = {
            "provider_name": self.provider["full_name"],
            "worker_id": self.provider["worker_id"],
        }
        ack = await self.client.call("join_provider_room", join, timeout=WAIT)
        assert ack == {"ok": True}, ack
        return self

    async def _on_request(self, data: dict[str, Any]) -> None:
        self.received.append(data)
        params = json.loads(data["params"])
        body = json.dumps({"listing": params["path"], "files": ["a.xyz"]}).encode()
        headers = {"X-Request-Hash": data["request_id"]}
        answered = await self.api.post(
            f"/providers/{self.provider['id']}/results", content=body, headers=headers
        )
        assert answered.status_code == 204, answered.text


@pytest.fixture
async def provider_workers() -> AsyncIterator[list[FakeProviderWorker]]:
    made: list[FakeProviderWorker] = []
    yield made
    for worker in made:
        await worker.client.disconnect()


class LockedRooms(OpenRooms):
    async def check_writable(self, room_id: str, actor: Actor) -> None:
        if room_id == "locked":
            raise RoomLockedError(f"room {room_id} is locked")


def runtime(
    database_url: str,
    sio: Any,
    *,
    policies: LedgerPolicies | None = None,
    results: ResultCache | None = None,
    emitters: Sequence[Any] = (),
) -> LedgerRuntime:
    tokens = {
        token: Actor(user=info["user"], superuser=bool(info.get("superuser")))
        for token, info in TOKENS.items()
    }
    return LedgerRuntime(
        database_url,
        authenticate=StaticTokens(tokens),
        sio=sio,
        policies=policies,
        room_policy=LockedRooms(),
        provider_results=results,
        emitters=emitters,
    )


@contextlib.asynccontextmanager
async def serve_runtime(make: Callable[[Any], LedgerRuntime]) -> AsyncIterator[RunningHost]:
    """An embedding host around `make(sio)`'s runtime, served by uvicorn."""
    sio = socketio.AsyncServer(async_mode="asgi")
    built = make(sio)
    register_socketio_handlers(sio, built)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await built.start()
        try:
            yield
        finally:
            await built.stop()

    api = FastAPI(lifespan=lifespan)
    api.include_router(create_router(built))
    async with serve(socketio.ASGIApp(sio, other_asgi_app=api)) as url:
        running = RunningHost(host=None, url=url)  # type: ignore[arg-type]
        try:
            yield running
        finally:
            for client in running.clients:
                await client.aclose()


async def register(api: httpx.AsyncClient, room: str = ROOM, **body: Any) -> dict[str, Any]:
    answered = await api.put(f"/rooms/{room}/providers", json=FILES | body)
    assert answered.status_code == 201, answered.text
    provider: dict[str, Any] = answered.json()
    return provider


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    kind: str = response.json()["type"]
    return kind


# --- registration, listing, info, deletion ---------------------------------------------


async def test_register_creates_then_updates_and_tells_the_room(start_host, watchers):
    running = await start_host()
    api = client_of(running)
    watcher = await watchers(running.url, ROOM)

    created = await api.put(f"/rooms/{ROOM}/providers", json=FILES)
    assert created.status_code == 201
    provider = created.json()
    assert set(provider) == PROVIDER_FIELDS
    assert (provider["full_name"], provider["room_id"]) == (FULL_NAME, ROOM)
    assert (provider["schema"], provider["content_type"]) == (FILES["schema"], "application/json")
    assert provider["created_at"].endswith("+00:00")
    await watcher.next("providers_invalidate")
    workers = (await api.get("/workers")).json()["items"]
    assert provider["worker_id"] in [w["id"] for w in workers]  # created for it

    same = await api.put(
        f"/rooms/{ROOM}/providers", json=FILES | {"worker_id": provider["worker_id"]}
    )
    assert same.status_code == 200 and same.json() == provider
    changed = await api.put(
        f"/rooms/{ROOM}/providers",
        json=FILES
        | {"worker_id": provider["worker_id"], "schema": {"v": 2}, "content_type": "text/csv"},
    )
    assert changed.status_code == 200
    assert changed.json() == provider | {"schema": {"v": 2}, "content_type": "text/csv"}
    info = await api.get(f"/rooms/{ROOM}/providers/{FULL_NAME}/info")
    assert info.status_code == 200 and info.json() == changed.json()

    other = await api.put(f"/rooms/{ROOM}/providers", json=FILES | {"name": "s3"})
    assert other.status_code == 201 and other.json()["id"] != provider["id"]


async def test_a_keyed_registration_resent_makes_one_worker_and_one_provider(start_host):
    running = await start_host()
    api = client_of(running)
    key = {"Idempotency-Key": "provider-boot-1"}
    first = await api.put(f"/rooms/{ROOM}/providers", json=FILES, headers=key)
    again = await api.put(f"/rooms/{ROOM}/providers", json=FILES, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    workers = (await api.get("/workers")).json()["items"]
    assert [w["id"] for w in workers] == [first.json()["worker_id"]]


async def test_listing_shows_the_room_and_global_newest_first(start_host):
    running = await start_host()
    alice, admin = client_of(running), client_of(running, "tok-admin")
    refused = await alice.put("/rooms/@global/providers", json=FILES)
    assert refused.status_code == 403 and problem_type(refused) == "/v1/problems/forbidden"
    shared = await register(admin, "@global", name="shared")
    own = await register(alice, ROOM)
    elsewhere = await register(alice, "r2")

    def listed(response: httpx.Response) -> list[str]:
        assert response.status_code == 200
        return [item["full_name"] for item in response.json()["items"]]

    own_room = listed(await alice.get(f"/rooms/{ROOM}/providers"))
    assert own_room == [own["full_name"], shared["full_name"]]
    other_room = listed(await alice.get("/rooms/r2/providers"))
    assert other_room == [elsewhere["full_name"], shared["full_name"]]
    assert listed(await alice.get("/rooms/@global/providers")) == [shared["full_name"]]
    assert listed(await alice.get("/rooms/empty/providers")) == [shared["full_name"]]
    paged = (await alice.get(f"/rooms/{ROOM}/providers", params={"limit": 1, "offset": 1})).json()
    assert (paged["total"], paged["limit"], paged["offset"]) == (2, 1, 1)
    assert [item["id"] for item in paged["items"]] == [shared["id"]]
    bad = await alice.get("/rooms/a:b/providers")
    assert bad.status_code == 400 and problem_type(bad) == "/v1/problems/invalid-room-id"


async def test_info_is_404_for_unknown_malformed_and_invisible_names(start_host):
    running = await start_host()
    alice, admin = client_of(running), client_of(running, "tok-admin")
    await register(alice)
    shared = await register(admin, "@global", name="shared")

    visible = await alice.get(f"/rooms/other/providers/{shared['full_name']}/info")
    assert visible.status_code == 200 and visible.json() == shared
    for room, name, detail in [
        (ROOM, f"{ROOM}:filesystem:nothing", "not found"),
        (ROOM, "no-colons", "Invalid provider name format"),
        ("r2", FULL_NAME, "not accessible from room 'r2'"),
    ]:
        answered = await alice.get(f"/rooms/{room}/providers/{name}/info")
        assert answered.status_code == 404
        assert problem_type(answered) == "/v1/problems/provider-not-found"
        assert detail in answered.json()["detail"]
        read = await alice.get(f"/rooms/{room}/providers/{name}", headers={"Prefer": "wait=0"})
        assert read.status_code == 404


async def test_registration_refuses_other_users_and_unknown_workers(start_host):
    running = await start_host()
    alice, bob, admin = (
        client_of(running),
        client_of(running, "tok-bob"),
        client_of(running, "tok-admin"),
    )
    provider = await register(alice)

    taken = await bob.put(f"/rooms/{ROOM}/providers", json=FILES)
    assert taken.status_code == 403 and problem_type(taken) == "/v1/problems/forbidden"
    url = f"/rooms/{ROOM}/providers"
    unknown = await alice.put(url, json=FILES | {"worker_id": str(uuid.uuid4())})
    assert unknown.status_code == 404 and problem_type(unknown) == "/v1/problems/worker-not-found"
    foreign = await bob.put(
        f"/rooms/{ROOM}/providers", json=FILES | {"name": "b", "worker_id": provider["worker_id"]}
    )
    assert foreign.status_code == 404 and problem_type(foreign) == "/v1/problems/worker-not-found"
    too_long = await alice.put(url, json=FILES | {"content_type": "x/" + "y" * 300})
    assert too_long.status_code == 422 and problem_type(too_long) == "/v1/problems/value-too-long"
    colon = await alice.put(f"/rooms/{ROOM}/providers", json=FILES | {"category": "a:b"})
    assert colon.status_code == 422

    overwritten = await admin.put(f"/rooms/{ROOM}/providers", json=FILES)
    assert overwritten.status_code == 200 and overwritten.json()["id"] == provider["id"]
    assert overwritten.json()["worker_id"] != provider["worker_id"]  # the admin's new worker
    gone = await alice.delete(f"/providers/{provider['id']}")
    assert gone.status_code == 403  # it is the admin's now


async def test_host_policies_restrict_categories_and_lock_rooms(tmp_path: Path):
    policies = LedgerPolicies(allowed_provider_categories=("frames",))
    url = f"sqlite:///{tmp_path / 'policies.db'}"
    async with serve_runtime(lambda sio: runtime(url, sio, policies=policies)) as running:
        api = client_of(running)
        refused = await api.put(f"/rooms/{ROOM}/providers", json=FILES)
        assert refused.status_code == 400
        assert problem_type(refused) == "/v1/problems/invalid-category"
        assert "filesystem" in refused.json()["detail"]
        accepted = await api.put(f"/rooms/{ROOM}/providers", json=FILES | {"category": "frames"})
        assert accepted.status_code == 201
        locked = await api.put("/rooms/locked/providers", json=FILES | {"category": "frames"})
        assert locked.status_code == 423 and problem_type(locked) == "/v1/problems/room-locked"
        assert (await api.get("/rooms/locked/providers")).json()["total"] == 0


async def test_delete_by_owner_or_superuser(start_host, watchers):
    running = await start_host()
    alice, bob, admin = (
        client_of(running),
        client_of(running, "tok-bob"),
        client_of(running, "tok-admin"),
    )
    first = await register(alice)
    second = await register(alice, name="second")
    watcher = await watchers(running.url, ROOM)

    refused = await bob.delete(f"/providers/{first['id']}")
    assert refused.status_code == 403 and problem_type(refused) == "/v1/problems/forbidden"
    assert (await admin.delete(f"/providers/{first['id']}")).status_code == 204
    await watcher.next("providers_invalidate")
    again = await alice.delete(f"/providers/{first['id']}")
    assert again.status_code == 404 and problem_type(again) == "/v1/problems/provider-not-found"
    assert (await alice.delete(f"/providers/{uuid.uuid4()}")).status_code == 404
    assert (await alice.delete(f"/providers/{second['id']}")).status_code == 204
    assert (await alice.get(f"/rooms/{ROOM}/providers")).json()["total"] == 0
    info = await alice.get(f"/rooms/{ROOM}/providers/{FULL_NAME}/info")
    assert info.status_code == 404
    anew = await alice.put(f"/rooms/{ROOM}/providers", json=FILES)
    assert anew.status_code == 201 and anew.json()["id"] != first["id"]


# --- reads -------------------------------------------------------------------------------


async def test_a_read_is_answered_by_the_provider_worker_then_from_the_cache(
    start_host, watchers, provider_workers
):
    dispatches = Dispatches()
    running = await start_host(emitters=[dispatches])
    api = client_of(running)
    provider = await register(api)
    worker = await FakeProviderWorker(client_of(running), provider).start(running.url)
    provider_workers.append(worker)
    watcher = await watchers(running.url, ROOM)
    params = {"path": "/dätä", "glob": "*.xyz"}
    expected = {"listing": "/dätä", "files": ["a.xyz"]}

    read = await api.get(
        f"/rooms/{ROOM}/providers/{FULL_NAME}", params=params, headers={"Prefer": "wait=999"}
    )
    assert read.status_code == 200, read.text
    assert read.json() == expected
    assert read.headers["content-type"] == "application/json"
    assert read.headers["Preference-Applied"] == "wait=30"  # capped
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    request = {"request_id": zndraw_hash(params), "provider_name": FULL_NAME, "params": canonical}
    assert worker.received == [request]
    ready = await watcher.next("provider_result_ready")
    assert ready == {"provider_name": FULL_NAME, "request_hash": zndraw_hash(params)}

    cached = await api.get(
        f"/rooms/{ROOM}/providers/{FULL_NAME}", params=params, headers={"Prefer": "wait=5"}
    )
    assert cached.status_code == 200 and cached.json() == expected
    assert "Preference-Applied" not in cached.headers
    assert len(dispatches.requests()) == 1  # the cache answered: nothing dispatched


async def test_concurrent_reads_of_one_request_dispatch_once(start_host):
    dispatches = Dispatches()
    running = await start_host(emitters=[dispatches])
    api = client_of(running)
    provider = await register(api)
    cache = running.host.runtime.provider_results
    url = f"/rooms/{ROOM}/providers/{FULL_NAME}"
    wait = {"Prefer": "wait=10"}

    reads = [asyncio.create_task(api.get(url, params={"n": "1"}, headers=wait)) for _ in range(2)]
    await until(lambda: cache.blocked_waiters == 2)  # type: ignore[attr-defined]
    [request] = dispatches.requests()
    assert request.to == f"providers:{FULL_NAME}"
    posted = await api.post(
        f"/providers/{provider['id']}/results",
        content=b"[1, 2]",
        headers={"X-Request-Hash": request.data["request_id"]},
    )
    assert posted.status_code == 204
    for answered in await asyncio.gather(*reads):
        assert (answered.status_code, answered.json()) == (200, [1, 2])
        assert answered.headers["Preference-Applied"] == "wait=10"
    assert len(dispatches.requests()) == 1


async def test_a_read_nobody_answers_times_out_with_retry_after(start_host):
    dispatches = Dispatches()
    running = await start_host(emitters=[dispatches])
    api = client_of(running)
    await register(api)
    url = f"/rooms/{ROOM}/providers/{FULL_NAME}"

    for _ in range(2):
        answered = await api.get(url, params={"path": "/"}, headers={"Prefer": "wait=0"})
        assert answered.status_code == 504
        assert problem_type(answered) == "/v1/problems/provider-timeout"
        assert answered.headers["Retry-After"] == "2"
        assert FULL_NAME in answered.json()["detail"]
    assert len(dispatches.requests()) == 1  # the second read found the request in flight


async def test_binary_results_round_trip_and_are_bounded(start_host):
    running = await start_host(max_body_bytes=4096)
    api = client_of(running)
    provider = await register(api, content_type="application/octet-stream")
    blob = bytes(range(256)) * 8  # 2048 bytes, every byte value
    params = {"frame": "7"}

    async def chunked(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    headers = {"X-Request-Hash": zndraw_hash(params), "Content-Type": "application/json"}
    results = f"/providers/{provider['id']}/results"
    stored = await api.post(results, content=chunked(blob), headers=headers)
    assert stored.status_code == 204  # raw bytes, whatever the request's content type says
    read = await api.get(f"/rooms/{ROOM}/providers/{FULL_NAME}", params=params)
    assert read.status_code == 200
    assert (read.headers["content-type"], read.content) == ("application/octet-stream", blob)

    over = await api.post(
        f"/providers/{provider['id']}/results", content=chunked(blob * 3), headers=headers
    )
    assert over.status_code == 413 and problem_type(over) == "/v1/problems/body-too-large"
    again = await api.get(f"/rooms/{ROOM}/providers/{FULL_NAME}", params=params)
    assert again.content == blob  # the refused upload changed nothing


async def test_result_uploads_are_refused_for_others_and_removed_providers(start_host):
    running = await start_host()
    alice, bob, admin = (
        client_of(running),
        client_of(running, "tok-bob"),
        client_of(running, "tok-admin"),
    )
    provider = await register(alice)
    results = f"/providers/{provider['id']}/results"
    hashed = {"X-Request-Hash": zndraw_hash({})}

    forbidden = await bob.post(results, content=b"{}", headers=hashed)
    assert forbidden.status_code == 403 and problem_type(forbidden) == "/v1/problems/forbidden"
    assert (await alice.post(results, content=b"{}")).status_code == 422  # no X-Request-Hash
    unknown = await alice.post(f"/providers/{uuid.uuid4()}/results", content=b"{}", headers=hashed)
    assert unknown.status_code == 404
    assert (await admin.post(results, content=b'"by admin"', headers=hashed)).status_code == 204
    read = await alice.get(f"/rooms/{ROOM}/providers/{FULL_NAME}")
    assert read.json() == "by admin"

    assert (await alice.delete(f"/providers/{provider['id']}")).status_code == 204
    removed = await alice.post(results, content=b"{}", headers=hashed)
    assert removed.status_code == 404
    assert problem_type(removed) == "/v1/problems/provider-not-found"


# --- two hosts -----------------------------------------------------------------------------


@pytest.mark.services
async def test_a_result_posted_to_one_host_answers_a_read_waiting_on_another(watchers):
    with fresh_postgres_database() as database_url, redis_prefix() as (redis_url, prefix):
        await asyncio.to_thread(migrate, database_url)  # what hosts sharing a log expect
        dispatches = Dispatches()
        caches = [RedisResultCache(redis_url, prefix=f"{prefix}:providers:") for _ in range(2)]

        def host(index: int, emitters: Sequence[Any] = ()) -> Callable[[Any], LedgerRuntime]:
            return lambda sio: runtime(database_url, sio, results=caches[index], emitters=emitters)

        async with (
            serve_runtime(host(0, [dispatches])) as first,
            serve_runtime(host(1)) as second,
        ):
            provider = await register(client_of(first))
            watcher = await watchers(second.url, ROOM)
            params = {"path": "/shared"}
            reading = asyncio.create_task(
                client_of(first).get(
                    f"/rooms/{ROOM}/providers/{FULL_NAME}",
                    params=params,
                    headers={"Prefer": "wait=10"},
                )
            )
            await until(lambda: caches[0].blocked_waiters == 1)
            [request] = dispatches.requests()
            assert request.data["request_id"] == zndraw_hash(params)

            posted = await client_of(second).post(
                f"/providers/{provider['id']}/results",
                content=b'{"from": "second"}',
                headers={"X-Request-Hash": request.data["request_id"]},
            )
            assert posted.status_code == 204
            answered = await reading
            assert (answered.status_code, answered.json()) == (200, {"from": "second"})
            await watcher.next("provider_result_ready", provider_name=FULL_NAME)
            cached = await client_of(second).get(
                f"/rooms/{ROOM}/providers/{FULL_NAME}", params=params
            )
            assert cached.json() == {"from": "second"}
