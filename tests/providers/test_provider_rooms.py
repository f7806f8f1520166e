"""Provider rooms over Socket.IO on a real host (uvicorn on 127.0.0.1, python-socketio
clients): `join_provider_room` / `leave_provider_room` under the job rooms' ownership
rules, the disconnect path and grace window for a provider-only worker, and the host's
`RoomPolicy.may_watch` on `join_room`.

Providers are registered with the core's `RegisterProvider` through the host's ledger
(the REST route is tested with the provider routes); everything else is the wire."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import socketio
from host.conftest import WAIT, RunningHost, Watcher, serve, settings
from workerledger.adapters.room_policy import OpenRooms
from workerledger.core import (
    Actor,
    Emission,
    LeaveRoom,
    RegisterProvider,
    WorkerStatus,
    room_of_provider,
)
from workerledger.host_fastapi.app import build_host

ROOM = "r1"
PROVIDER = f"{ROOM}:filesystem:local"
ALICE = Actor(user="alice")


class LeftRooms:
    """An emitter that queues every LeaveRoom the host delivers (a disconnect recorded)."""

    def __init__(self) -> None:
        self.left: asyncio.Queue[LeaveRoom] = asyncio.Queue()

    async def deliver(self, emissions: list[Emission]) -> None:
        for emission in emissions:
            if isinstance(emission, LeaveRoom):
                await self.left.put(emission)


class PrivateRooms(OpenRooms):
    """Only alice may watch room `secret`; every other room is open."""

    async def may_watch(self, room_id: str, actor: Actor) -> bool:
        return room_id != "secret" or actor.user == "alice"


StartHost = Callable[..., Awaitable[RunningHost]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[StartHost]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            *, emitters: tuple[Any, ...] = (), room_policy: Any = None, **overrides: Any
        ) -> RunningHost:
            config = settings(tmp_path, **overrides)
            host = build_host(config, emitters=emitters, room_policy=room_policy)
            url = await stack.enter_async_context(serve(host.asgi))
            return RunningHost(host, url)

        yield start


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[socketio.AsyncClient]]]:
    made: list[socketio.AsyncClient] = []

    async def connect(running: RunningHost, token: str = "tok-alice") -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(running.url, auth={"token": token}, transports=["websocket"])
        made.append(client)
        return client

    yield connect
    for client in made:
        if client.connected:
            await client.disconnect()


async def register(running: RunningHost, name: str = "local", user: str = "alice") -> str:
    """A provider `r1:filesystem:<name>` served by a new worker of `user`; its worker id."""
    worker_id = f"w-{uuid.uuid4().hex[:12]}"
    command = RegisterProvider(
        provider_id=str(uuid.uuid4()),
        room_id=ROOM,
        category="filesystem",
        name=name,
        worker_id=worker_id,
        create_worker=True,
        actor=Actor(user=user),
        now=running.host.runtime.clock(),
    )
    await running.host.ledger.execute(command)
    return worker_id


def events_recorded(running: RunningHost) -> int:
    return len(running.host.runtime.store.read(0, 100_000))


async def worker(running: RunningHost, worker_id: str) -> Any:
    return await running.host.ledger.read(lambda view: view.worker(worker_id))


async def live_provider(running: RunningHost, full_name: str = PROVIDER) -> Any:
    return await running.host.ledger.read(lambda view: view.provider(full_name))


def join(worker_id: str, provider: str = PROVIDER) -> dict[str, str]:
    return {"provider_name": provider, "worker_id": worker_id}


def problem_type(ack: Any) -> str:
    assert isinstance(ack, dict) and "error" in ack, ack
    return str(ack["error"]["type"]).rsplit("/", 1)[-1]


async def test_join_and_leave_the_provider_room(start, connect):
    # Given alice's provider worker and her socket
    running = await start()
    worker_id = await register(running)
    client = await connect(running)
    sid = client.get_sid()

    # When the socket joins the provider room for that worker
    ack = await client.call("join_provider_room", join(worker_id), timeout=WAIT)

    # Then it is acknowledged, the sid is in providers:<name>, the worker speaks on it
    assert ack == {"ok": True}
    assert room_of_provider(PROVIDER) == f"providers:{PROVIDER}"
    assert f"providers:{PROVIDER}" in running.rooms_of(sid)
    state = await worker(running, worker_id)
    assert (state.sid, state.provider_rooms) == (sid, frozenset({PROVIDER}))

    # and leaving takes it out of the room again
    assert await client.call("leave_provider_room", join(worker_id), timeout=WAIT) == {"ok": True}
    assert f"providers:{PROVIDER}" not in running.rooms_of(sid)
    assert (await worker(running, worker_id)).provider_rooms == frozenset()


async def test_forged_foreign_and_unknown_joins_are_refused_and_record_nothing(start, connect):
    # Given alice's provider worker, another worker of alice's serving another provider,
    # and sockets of alice and bob
    running = await start()
    worker_id = await register(running)
    other_worker = await register(running, name="other")
    alice, bob = await connect(running), await connect(running, "tok-bob")
    before = events_recorded(running)

    # When they join with a forged id, another user's worker, an unknown provider, a
    # worker that does not serve the provider, or a payload with an unknown field
    refusals = [
        await alice.call("join_provider_room", join("w-forged"), timeout=WAIT),
        await bob.call("join_provider_room", join(worker_id), timeout=WAIT),
        await alice.call("join_provider_room", join(worker_id, "r1:fs:nope"), timeout=WAIT),
        await alice.call("join_provider_room", join(other_worker), timeout=WAIT),
        await alice.call("join_provider_room", join(worker_id) | {"room": "r1"}, timeout=WAIT),
        await alice.call("leave_provider_room", join(worker_id), timeout=WAIT),
    ]

    # Then each is an error ack naming the reason, and nothing is recorded or joined
    assert [problem_type(ack) for ack in refusals] == [
        "worker-not-found",
        "forbidden",
        "provider-not-found",
        "forbidden",
        "invalid-payload",
        "stale-session",
    ]
    assert "room: unknown field" in refusals[4]["error"]["detail"]
    assert events_recorded(running) == before
    assert running.rooms_of(alice.get_sid()) == [alice.get_sid()]
    assert running.rooms_of(bob.get_sid()) == [bob.get_sid()]
    # and the refused sockets do not speak for the workers: their drop changes nothing
    await alice.disconnect()
    await bob.disconnect()
    await running.host.sockets.idle()
    assert events_recorded(running) == before
    assert (await worker(running, worker_id)).status == WorkerStatus.ONLINE


async def test_provider_only_worker_rides_out_a_blip_within_grace(start, connect):
    # Given a provider-only worker whose socket joined its provider room, grace 1 s
    recorder = LeftRooms()
    running = await start(disconnect_grace_seconds=1, emitters=(recorder,))
    worker_id = await register(running)
    first = await connect(running)
    old_sid = first.get_sid()
    assert await first.call("join_provider_room", join(worker_id), timeout=WAIT) == {"ok": True}

    # When the socket drops
    await first.disconnect()
    left = await asyncio.wait_for(recorder.left.get(), WAIT)

    # Then the worker waits DISCONNECTED (the disconnect path covered it), provider kept
    assert (left.sid, left.room) == (old_sid, f"providers:{PROVIDER}")
    state = await worker(running, worker_id)
    assert (state.status, state.sid) == (WorkerStatus.DISCONNECTED, None)
    assert await live_provider(running) is not None

    # When a new socket re-joins the provider room within the grace window
    second = await connect(running)
    ack = await second.call("join_provider_room", join(worker_id), timeout=WAIT)
    await running.host.sockets.idle()  # the grace timer fired and found the worker back

    # Then the worker is online on the new sid, in the room, and still serves the provider
    assert ack == {"ok": True}
    state = await worker(running, worker_id)
    assert (state.status, state.sid) == (WorkerStatus.ONLINE, second.get_sid())
    assert f"providers:{PROVIDER}" in running.rooms_of(second.get_sid())
    provider = await live_provider(running)
    assert provider is not None and provider.worker_id == worker_id


@pytest.mark.parametrize("grace", [0, 0.3], ids=["grace-0", "past-grace"])
async def test_provider_only_worker_lost_removes_its_provider(start, connect, grace):
    # Given a provider-only worker in its provider room, and then a watcher of r1
    running = await start(disconnect_grace_seconds=grace)
    worker_id = await register(running)
    client = await connect(running)
    assert await client.call("join_provider_room", join(worker_id), timeout=WAIT) == {"ok": True}
    watcher = await Watcher().start(running.url, ROOM)

    # When its socket drops and does not come back (grace 0, or past the grace window)
    await client.disconnect()

    # Then the watcher is told the providers changed, the provider is gone with the worker
    await watcher.next("providers_invalidate")
    await running.host.sockets.idle()
    assert await live_provider(running) is None
    state = await worker(running, worker_id)
    assert (state.status, state.providers) == (WorkerStatus.LOST, frozenset())
    await watcher.client.disconnect()


async def test_join_room_asks_the_room_policy(start, connect):
    # Given a host whose room policy lets only alice watch room `secret`
    running = await start(room_policy=PrivateRooms())
    alice, bob = await connect(running), await connect(running, "tok-bob")

    # When bob and alice join it, and bob joins an open room
    refused = await bob.call("join_room", {"room_id": "secret"}, timeout=WAIT)
    allowed = await alice.call("join_room", {"room_id": "secret"}, timeout=WAIT)
    open_room = await bob.call("join_room", {"room_id": ROOM}, timeout=WAIT)

    # Then bob is refused with `forbidden` and stays out; the others are in
    assert problem_type(refused) == "forbidden"
    assert refused["error"]["status"] == 403
    assert "room:secret" not in running.rooms_of(bob.get_sid())
    assert allowed == {"ok": True} and "room:secret" in running.rooms_of(alice.get_sid())
    assert (open_room, "room:r1" in running.rooms_of(bob.get_sid())) == ({"ok": True}, True)
    # and leaving a room is never refused
    assert await bob.call("leave_room", {"room_id": "secret"}, timeout=WAIT) == {"ok": True}
