"""The room mirror (adapters/realtime/room_mirror.py, mirror_link.py): a host skips the
directory's script for rooms no other host is in, and still loses no event a client
is entitled to.

The first tests hold the mirror's rules (no I/O); the others run in-process
python-socketio hosts with the Redis manager on the machine's Redis (room_cluster.py).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from multihost_support import WAIT
from room_cluster import Cluster, Published, new_room
from workerledger.adapters.realtime.emitter import SocketIOEmitter
from workerledger.adapters.realtime.room_mirror import RoomMirror
from workerledger.core import Emit

# --- the rules -------------------------------------------------------------------------------


def test_the_mirror_answers_only_under_a_lease_and_with_every_confirmed_announcement() -> None:
    mirror = RoomMirror(lease_seconds=3.0)
    assert not mirror.nobody_else_in("quiet", 0.0)  # not loaded
    mirror.loaded("e1", 5, ["busy"], issued=100.0)
    assert mirror.nobody_else_in("quiet", 102.9)
    assert not mirror.nobody_else_in("busy", 102.9)
    assert not mirror.nobody_else_in("quiet", 103.0)  # the lease lapsed
    assert mirror.renewed("e1", 7, issued=102.0)  # two announcements not applied yet
    assert not mirror.valid(103.0)
    assert mirror.announced("e1", 6, ["new"])
    assert not mirror.valid(103.0)
    assert mirror.own("e1", 7)
    assert mirror.valid(104.9) and not mirror.valid(105.0)
    assert not mirror.nobody_else_in("new", 104.0)


def test_a_missed_announcement_another_epoch_or_a_sequence_gone_back_invalidates() -> None:
    mirror = RoomMirror(lease_seconds=3.0)
    mirror.loaded("e1", 7, ["busy"], issued=0.0)
    assert not mirror.announced("e1", 9, ["skipped-one"])
    assert (mirror.epoch, mirror.remote, mirror.gaps, mirror.ready.is_set()) == (None, {}, 1, False)
    mirror.loaded("e1", 9, ["busy"], issued=0.0)
    assert not mirror.renewed("e2", 9, issued=1.0)  # Redis lost the directory
    assert not mirror.valid(1.0)
    mirror.loaded("e2", 4, [], issued=1.0)
    assert not mirror.renewed("e2", 3, issued=2.0)
    assert not mirror.valid(2.0)


def test_announcements_that_arrive_while_loading_are_applied_on_top_of_the_load() -> None:
    mirror = RoomMirror(lease_seconds=3.0)
    for seq, room in ((5, "left-before-the-load"), (6, "in-the-load"), (7, "after-the-load")):
        assert mirror.announced("e1", seq, [room])  # not loaded yet: kept
    mirror.loaded("e1", 6, ["in-the-load"], issued=0.0)
    assert (mirror.seq, set(mirror.remote)) == (7, {"in-the-load", "after-the-load"})
    assert mirror.valid(1.0)


def test_a_room_is_forgotten_only_by_a_look_at_or_after_its_announcement() -> None:
    mirror = RoomMirror(lease_seconds=3.0)
    mirror.loaded("e1", 7, [], issued=0.0)
    assert mirror.announced("e1", 8, ["room"])
    mirror.found_empty("room", 7)  # the script looked before the announcement
    assert "room" in mirror.remote
    mirror.found_empty("room", 8)
    assert mirror.nobody_else_in("room", 1.0)


async def test_a_join_waits_for_the_acknowledgements_of_its_epoch() -> None:
    mirror = RoomMirror(lease_seconds=3.0)
    waiting = asyncio.create_task(mirror.all_acked({"a", "b"}, "e2", 4))
    mirror.acked("a", "e2", 4)
    mirror.acked("b", "e1", 9)  # an earlier epoch's numbers count for nothing
    assert mirror.missing_acks({"a", "b"}, "e2", 4) == {"b"}
    assert not waiting.done()
    mirror.acked("b", "e2", 5)
    await asyncio.wait_for(waiting, WAIT)


# --- on Redis --------------------------------------------------------------------------------

services = pytest.mark.services


@services
async def test_emits_to_rooms_nobody_else_is_in_cost_no_redis_call(
    cluster: Cluster, published: Published
) -> None:
    a, b = await cluster.established_nodes(2)
    on_a, on_b = await cluster.client(a), await cluster.client(b)
    empty, local, remote = new_room(), new_room("jobs"), new_room("providers")
    await on_a.join(local)
    await on_b.join(remote)

    await a.sio.emit("ev", "to nobody", to=empty)
    await SocketIOEmitter(a.sio).deliver([Emit(event="ev", data={"n": 1}, to=empty)])
    await a.sio.emit("ev", "to A's own client", to=local)
    assert await on_a.next("ev") == "to A's own client"
    assert (a.manager.room_emits_skipped, a.manager.room_emits_checked) == (3, 0)
    await a.sio.emit("ev", "to B's client", to=remote)  # B announced it: the script publishes
    assert await on_b.next("ev") == "to B's client"
    assert (a.manager.room_emits_published, a.manager.room_emits_checked) == (1, 1)
    rooms = [m.get("room") for m in await published.mark() if m.get("method") == "emit"]
    assert rooms == [remote]


@services
async def test_a_join_is_acked_once_every_other_host_has_the_room_in_its_mirror(
    cluster: Cluster,
) -> None:
    a, b, c = await cluster.established_nodes(3)
    client = await cluster.client(b)
    for _ in range(10):
        room = new_room()
        await client.join(room)
        for other in (a, c):
            assert not other.manager.mirror.nobody_else_in(cluster.room_key(room), time.monotonic())
            assert cluster.room_key(room) in other.manager.mirror.remote
        await a.sio.emit("ev", room, to=room)
        assert await client.next("ev") == room
    assert b.manager.join_waits == 0  # every host acknowledged; nobody waited out a lease


@services
async def test_a_host_that_does_not_acknowledge_makes_a_join_wait_out_its_lease(
    cluster: Cluster,
) -> None:
    a, b = await cluster.established_nodes(2)
    silent = "silent-host"  # holds a lease and never answers (hung, or an older version)
    await cluster.redis.sadd(f"{cluster.channel}:hosts", silent)
    await cluster.redis.set(f"{cluster.channel}:host:{silent}:lease", "1", px=60_000)
    client = await cluster.client(b)
    room = new_room()
    await client.join(room)
    assert b.manager.join_waits == 1
    assert cluster.room_key(room) in a.manager.mirror.remote
    await a.sio.emit("ev", "after the wait", to=room)
    assert await client.next("ev") == "after the wait"


@services
async def test_a_missed_announcement_sends_emits_through_redis_until_the_mirror_is_reloaded(
    cluster: Cluster,
) -> None:
    a, b = await cluster.established_nodes(2)
    client = await cluster.client(b)
    room = new_room()
    await client.join(room)
    mirror = a.manager.mirror
    seq = int(await cluster.redis.get(f"{cluster.channel}:dir:seq") or 0)
    lost = {"e": mirror.epoch, "s": seq + 2, "h": "another", "k": [cluster.room_key(new_room())]}
    await cluster.redis.publish(f"{cluster.channel}:dir", json.dumps(lost))  # seq + 1 lost
    deadline = time.monotonic() + WAIT
    while mirror.gaps == 0:  # the link has no event to await for a message it reads
        assert time.monotonic() < deadline, "the gap was not seen"
        await asyncio.sleep(0.005)
    await a.sio.emit("ev", "through the script", to=room)
    assert await client.next("ev") == "through the script"
    await cluster.mirrored(a)
    assert mirror.loads == 2 and cluster.room_key(room) in mirror.remote


@services
async def test_when_redis_loses_the_directory_a_join_waits_out_the_leases_of_before(
    cluster: Cluster,
) -> None:
    a, b = await cluster.established_nodes(2)
    before = a.manager.mirror.epoch
    await cluster.redis.delete(f"{cluster.channel}:dir:epoch", f"{cluster.channel}:dir:seq")
    client = await cluster.client(b)
    room = new_room()
    await client.join(room)  # a new epoch: A may still hold a lease of the old one
    assert b.manager.join_waits == 1
    await a.sio.emit("ev", "after", to=room)
    assert await client.next("ev") == "after"
    await cluster.mirrored(a)
    deadline = time.monotonic() + WAIT
    while a.manager.mirror.epoch in (None, before):  # its renewal saw the new epoch
        assert time.monotonic() < deadline, "A did not load the new epoch"
        await asyncio.sleep(0.005)


@services
async def test_a_re_registered_room_is_in_every_mirror_before_clients_resynchronise(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a long lease: B must still be waiting for A when the test looks
    a, b = await cluster.established_nodes(2, mirror_lease_seconds=5, refresh_seconds=0.1)
    client = await cluster.client(b)
    room = new_room()
    await client.join(room)
    gate, arrived = asyncio.Event(), asyncio.Event()
    handle = a.manager.mirror_link._handle

    async def slow(data: bytes | str) -> None:  # A is slow to apply announcements
        if '"k"' in (data.decode() if isinstance(data, bytes) else data):
            arrived.set()
            await gate.wait()
        await handle(data)

    monkeypatch.setattr(a.manager.mirror_link, "_handle", slow)
    seen = b.manager.resubscriptions
    await cluster.redis.delete(cluster.room_key(room))  # B's next refresh re-registers it
    await asyncio.wait_for(arrived.wait(), WAIT)
    assert b.manager.resubscriptions == seen  # B's clients wait until A knows the room
    gate.set()
    await asyncio.wait_for(b.manager.resubscribed(seen), WAIT)
    assert cluster.room_key(room) in a.manager.mirror.remote
    assert b.manager.join_waits == 0
