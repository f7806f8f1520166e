"""The room directory (adapters/realtime/room_directory.py): an emit to a watcher, job or
provider room is published to Redis only when another live host has a member in it,
and no event a client is entitled to is lost.

Most tests run small python-socketio servers in this process (uvicorn on 127.0.0.1,
each with its own `ResyncingRedisManager`, so its counters and keys can be read), with
real python-socketio clients and the machine's Redis on a channel of the test's own
(every key is under it and deleted afterwards); the last ones run `workerledger serve`
processes on PostgreSQL. A subscriber of our own on the channel sees what is published.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from multihost_support import WAIT, HostProcess, RedisServer, Watcher
from room_cluster import Cluster, Published, new_room
from workerledger.adapters.realtime import room_directory

pytestmark = [pytest.mark.slow, pytest.mark.services]

StartHost = Callable[..., Awaitable[HostProcess]]
Watch = Callable[[str, str], Awaitable[Watcher]]


# --- the race the directory closes -----------------------------------------------------------


async def test_an_emit_right_after_a_join_ack_on_another_host_arrives(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    client = await cluster.client(b)
    for index in range(30):
        room = new_room(("room", "jobs", "providers")[index % 3])
        await client.join(room)
        await a.sio.emit("ev", {"index": index}, to=room)  # at once: no wait for Redis
        assert await client.next("ev") == {"index": index}
    assert a.manager.room_emits_published == 30
    assert a.manager.room_emits_skipped == 0


async def test_a_join_is_acked_only_once_the_room_is_registered(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory write is held: the sid is not in the room and the join is not acked
    (a later event on the same connection is answered meanwhile) until it is done."""
    a, b = await cluster.node(), await cluster.node()
    client = await cluster.client(b)
    held, release = asyncio.Event(), asyncio.Event()
    assert_rooms = b.manager.directory.assert_rooms

    async def held_write(redis: Any, keys: Any, **options: Any) -> Any:
        if not options.get("reap"):
            held.set()
            await release.wait()
        return await assert_rooms(redis, keys, **options)

    monkeypatch.setattr(b.manager.directory, "assert_rooms", held_write)
    room = new_room("jobs")
    joining = asyncio.create_task(client.join(room))
    await asyncio.wait_for(held.wait(), WAIT)
    assert await client.sio.call("ping", timeout=WAIT) == "pong"
    assert not joining.done()
    assert not b.manager.rooms.get("/", {}).get(room)
    assert await cluster.fields(room) == set()
    release.set()
    await joining
    assert await cluster.fields(room) == {b.manager.host_id}
    await a.sio.emit("ev", "now", to=room)
    assert await client.next("ev") == "now"


async def test_an_enter_request_from_another_host_registers_before_the_sid_enters(
    cluster: Cluster,
) -> None:
    a, b = await cluster.node(), await cluster.node()
    client = await cluster.client(b)
    sid, room = client.sio.get_sid(), new_room()
    await a.sio.enter_room(sid, room)  # the sid is on B: published as a request
    deadline = time.monotonic() + WAIT
    while sid not in b.manager.rooms.get("/", {}).get(room, {}):
        assert time.monotonic() < deadline, "B did not handle the enter_room request"
        await asyncio.sleep(0.005)
    assert b.manager.host_id in await cluster.fields(room)  # already there
    await a.sio.emit("ev", "hello", to=room)
    assert await client.next("ev") == "hello"


# --- nobody in the room: nothing published ---------------------------------------------------


async def test_emits_no_other_host_listens_to_are_not_published(
    cluster: Cluster, published: Published
) -> None:
    a, b = await cluster.node(), await cluster.node()
    on_a, on_b = await cluster.client(a), await cluster.client(b)
    empty, local, remote = new_room(), new_room("jobs"), new_room("providers")
    await on_a.join(local)
    await on_b.join(remote)

    await a.sio.emit("ev", "to nobody", to=empty)
    await a.sio.emit("ev", "to A's own client", to=local)
    assert await on_a.next("ev") == "to A's own client"  # delivered locally
    await a.sio.emit("direct", "to a sid on B", to=on_b.sio.get_sid())  # untracked: published
    assert await on_b.next("direct") == "to a sid on B"
    await a.sio.emit("ev", "to B's client", to=remote)
    assert await on_b.next("ev") == "to B's client"

    messages = await published.until("ev", remote)  # the channel keeps publishing order
    assert [m.get("room") for m in messages if m.get("method") == "emit"] == [
        on_b.sio.get_sid(),
        remote,
    ]
    assert (a.manager.room_emits_skipped, a.manager.room_emits_published) == (2, 1)


async def test_skip_empty_rooms_off_publishes_every_emit_and_still_registers(
    cluster: Cluster, published: Published
) -> None:
    a = await cluster.node(skip_empty_rooms=False)
    b = await cluster.node(skip_empty_rooms=False)
    on_b = await cluster.client(b)
    empty, remote = new_room(), new_room()
    await on_b.join(remote)
    assert await cluster.fields(remote) == {b.manager.host_id}  # for hosts that do skip
    await a.sio.emit("ev", "to nobody", to=empty)
    await a.sio.emit("ev", "to B's client", to=remote)
    assert await on_b.next("ev") == "to B's client"
    messages = await published.until("ev", remote)
    assert [m["room"] for m in messages if m.get("method") == "emit"] == [empty, remote]
    assert (a.manager.room_emits_skipped, a.manager.room_emits_published) == (0, 0)


# --- a crashed host's leftovers --------------------------------------------------------------


async def test_a_dead_hosts_fields_cause_no_publish_and_are_removed(
    cluster: Cluster, published: Published
) -> None:
    # fields written behind the directory's back are never announced: A checks every
    # emit with the script (no mirror lease), which is what this test is about
    a, b = await cluster.node(mirror_lease_seconds=0), await cluster.node()
    on_b = await cluster.client(b)
    room, other, shared = new_room(), new_room("jobs"), new_room()
    await on_b.join(shared)
    dead = uuid.uuid4().hex  # a host that registered and has no liveness key any more
    for key in (room, other, shared):
        await cluster.redis.hset(cluster.room_key(key), dead, "1")
        await cluster.redis.sadd(f"{cluster.channel}:host:{dead}:rooms", cluster.room_key(key))
    await cluster.redis.sadd(f"{cluster.channel}:hosts", dead)

    await a.sio.emit("ev", "to the dead", to=room)
    assert a.manager.room_emits_skipped == 1
    assert await cluster.redis.exists(cluster.room_key(room)) == 0  # its field went with it
    await a.sio.emit("ev", "to B", to=shared)  # B is alive: published, the dead one dropped
    assert await on_b.next("ev") == "to B"
    assert await cluster.fields(shared) == {b.manager.host_id}
    assert [m.get("room") for m in await published.until("ev", shared)] == [shared]

    # a refresh reaps what no emit touched, and forgets the host
    assert await cluster.fields(other) == {dead}
    await a.manager.refresh()
    assert await cluster.redis.exists(cluster.room_key(other)) == 0
    assert await cluster.redis.exists(f"{cluster.channel}:host:{dead}:rooms") == 0
    hosts = {h.decode() for h in await cluster.redis.smembers(f"{cluster.channel}:hosts")}
    assert hosts == {a.manager.host_id, b.manager.host_id}


# --- leaving ---------------------------------------------------------------------------------


async def test_the_last_local_member_leaving_or_disconnecting_removes_the_field(
    cluster: Cluster,
) -> None:
    a, b = await cluster.node(), await cluster.node()
    first, second = await cluster.client(b), await cluster.client(b)
    room = new_room()
    await first.join(room)
    await second.join(room)
    await a.sio.emit("ev", 1, to=room)
    assert await first.next("ev") == await second.next("ev") == 1

    await first.leave(room)
    await b.manager.settled()
    assert await cluster.fields(room) == {b.manager.host_id}  # the second is still in it
    await second.sio.disconnect()
    deadline = time.monotonic() + WAIT
    while b.manager.rooms.get("/", {}).get(room):  # B handles the disconnect
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    await b.manager.settled()
    assert await cluster.redis.exists(cluster.room_key(room)) == 0
    rooms_of_b = f"{cluster.channel}:host:{b.manager.host_id}:rooms"
    assert not await cluster.redis.sismember(rooms_of_b, cluster.room_key(room))
    await a.sio.emit("ev", 2, to=room)
    assert (a.manager.room_emits_published, a.manager.room_emits_skipped) == (1, 1)

    await first.join(room)  # and back in
    await a.sio.emit("ev", 3, to=room)
    assert await first.next("ev") == 3


# --- lost entries: re-registered, then clients resynchronise ----------------------------------


@pytest.mark.parametrize("lost", ["every key", "the room's hash", "the liveness key"])
async def test_lost_entries_are_re_registered_then_clients_resynchronise(
    cluster: Cluster, lost: str
) -> None:
    a = await cluster.node()
    b = await cluster.node(refresh_seconds=0.1)
    client = await cluster.client(b)
    room = new_room()
    await client.join(room)
    seen = b.manager.resubscriptions
    if lost == "every key":
        keys = [k async for k in cluster.redis.scan_iter(f"{cluster.channel}:*")]
        await cluster.redis.delete(*keys)
    elif lost == "the room's hash":
        await cluster.redis.delete(cluster.room_key(room))
    else:
        await cluster.redis.delete(f"{cluster.channel}:host:{b.manager.host_id}")
        await a.sio.emit("ev", "maybe lost", to=room)  # if B looks dead: its field dropped
    await asyncio.wait_for(b.manager.resubscribed(seen), WAIT)  # clients resynchronise
    assert await cluster.fields(room) == {b.manager.host_id}
    assert await cluster.redis.exists(f"{cluster.channel}:host:{b.manager.host_id}")
    await a.sio.emit("ev", "after", to=room)
    while (received := await client.next("ev")) != "after":
        assert received == "maybe lost"


async def test_a_refresh_re_asserts_every_occupied_room_in_chunks(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(room_directory, "ASSERT_CHUNK", 2)
    b = await cluster.node()
    client = await cluster.client(b)
    rooms = [new_room(kind) for kind in ("room", "jobs", "providers", "room", "jobs")]
    for room in rooms:
        await client.join(room)
    assert await b.manager.refresh() is False  # nothing was missing
    await cluster.redis.delete(*(cluster.room_key(room) for room in rooms))
    assert await b.manager.refresh() is True  # missing: its clients must resynchronise
    for room in rooms:
        assert await cluster.fields(room) == {b.manager.host_id}


async def test_after_a_redis_restart_rooms_are_registered_before_clients_resynchronise(
    cluster: Cluster,
) -> None:
    redis = await RedisServer().start()
    try:
        checked: asyncio.Queue[set[bytes]] = asyncio.Queue()
        probe = aioredis.Redis.from_url(redis.url)
        room = new_room()

        async def on_resubscribe() -> None:  # where the host resynchronises its clients
            await checked.put(set(await probe.hkeys(cluster.room_key(room))))

        a = await cluster.node(redis.url)
        b = await cluster.node(redis.url, on_resubscribe=on_resubscribe)
        client = await cluster.client(b)
        await client.join(room)
        seen_a, seen_b = a.manager.resubscriptions, b.manager.resubscriptions
        await redis.stop()
        await redis.start()  # empty: no persistence
        await asyncio.wait_for(a.manager.resubscribed(seen_a), WAIT)
        await asyncio.wait_for(b.manager.resubscribed(seen_b), WAIT)
        fields = await asyncio.wait_for(checked.get(), WAIT)
        assert fields == {b.manager.host_id.encode()}
        await a.sio.emit("ev", "after", to=room)
        assert await client.next("ev") == "after"
        deadline = time.monotonic() + WAIT
        while a.manager.mirror.loads < 2:  # the mirror was dropped, then loaded again
            assert time.monotonic() < deadline, "A's mirror was not loaded again"
            await asyncio.sleep(0.005)
        await probe.aclose()
    finally:
        await redis.stop()


# --- real hosts ------------------------------------------------------------------------------


async def _job(api: httpx.AsyncClient, room: str) -> tuple[str, str]:
    """(worker id, job name) of a REST worker registered in `room`."""
    worker_id = str((await api.post("/workers")).json()["id"])
    body = {"category": "modifiers", "name": "Dir", "schema": {}, "worker_id": worker_id}
    response = await api.put(f"/rooms/{room}/jobs", json=body)
    assert response.status_code in (200, 201), response.text
    return worker_id, str(response.json()["full_name"])


async def _submit(api: httpx.AsyncClient, room: str, job: str) -> str:
    response = await api.post(f"/rooms/{room}/tasks/{job}", json={"payload": {}})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _published_rooms(
    start_host: StartHost, watch: Watch, redis_channel: tuple[str, str], **settings: Any
) -> tuple[str, str, list[str]]:
    """Two hosts; a task's life through A in a room nobody watches, then in one watched
    on B, each step reaching the watcher that joined just before the submit. Returns
    (the quiet room id, the watched one, the rooms of every emit published meanwhile)."""
    url, channel = redis_channel
    client = aioredis.Redis.from_url(url)
    listener = await Published(client, channel).start()
    try:
        a, b = await asyncio.gather(start_host("A", **settings), start_host("B", **settings))
        quiet, watched = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
        async with a.api() as api_a:
            for room in (quiet, watched):
                worker_id, job = await _job(api_a, room)
                watcher = await watch(b.url, room) if room == watched else None
                task_id = await _submit(api_a, room, job)  # right after the join ack
                claim = await api_a.post("/tasks/claim", json={"worker_id": worker_id})
                attempt = claim.json()["task"]["attempt"]
                if watcher is not None:
                    await watcher.next("task_status_event", id=task_id, status="pending")
                for status in ("running", "completed"):
                    body = {"status": status, "worker_id": worker_id, "attempt": attempt}
                    response = await api_a.patch(f"/tasks/{task_id}", json=body)
                    assert response.status_code == 200, response.text
                if watcher is not None:
                    for status in ("claimed", "running", "completed"):
                        await watcher.next("task_status_event", id=task_id, status=status)
        messages = await listener.mark()  # after everything A published
        return quiet, watched, [str(m["room"]) for m in messages if m.get("method") == "emit"]
    finally:
        await listener.close()
        await client.aclose()


async def test_two_hosts_publish_only_what_a_watcher_on_the_other_host_hears(
    start_host: StartHost, watch: Watch, redis_channel: tuple[str, str]
) -> None:
    quiet, watched, rooms = await _published_rooms(start_host, watch, redis_channel)
    tracked = [r for r in rooms if r.startswith(("room:", "jobs:", "providers:"))]
    assert tracked and set(tracked) == {f"room:{watched}"}, rooms
    assert not any(quiet in room for room in rooms), rooms


async def test_two_hosts_publish_every_emit_with_skip_empty_rooms_off(
    start_host: StartHost, watch: Watch, redis_channel: tuple[str, str]
) -> None:
    quiet, watched, rooms = await _published_rooms(
        start_host, watch, redis_channel, socketio_skip_empty_rooms="false"
    )
    assert f"room:{quiet}" in rooms and f"room:{watched}" in rooms, rooms
