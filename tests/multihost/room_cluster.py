"""In-process Socket.IO hosts sharing the machine's Redis, for the room directory's tests.

Each `Node` is a python-socketio server with its own `ResyncingRedisManager` on uvicorn
(127.0.0.1), so its counters, mirror and keys can be read; `Client`s are real
python-socketio clients; `Published` subscribes to the channel and sees what is
published. Everything is under the test's own channel and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import socketio
from host.conftest import serve
from multihost_support import WAIT
from workerledger.adapters.realtime.redis_manager import ResyncingRedisManager

LEASE = 0.5  # the mirror's lease: a test's channel is a new epoch, whose first joins wait it


@dataclass
class Node:
    """One python-socketio server with the Redis manager; `join`/`leave` events enter and
    leave a room (acked once done), as workerledger's handlers do."""

    sio: Any
    manager: ResyncingRedisManager
    url: str


@dataclass
class Client:
    sio: socketio.AsyncClient
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)

    async def join(self, room: str) -> None:
        assert await self.sio.call("join", room, timeout=WAIT) is True

    async def leave(self, room: str) -> None:
        assert await self.sio.call("leave", room, timeout=WAIT) is True

    async def next(self, event: str) -> Any:
        while True:
            name, data = await asyncio.wait_for(self.events.get(), WAIT)
            if name == event:
                return data


class Cluster:
    def __init__(self, url: str, channel: str, stack: contextlib.AsyncExitStack) -> None:
        self.url, self.channel, self.stack = url, channel, stack
        self.redis = aioredis.Redis.from_url(url)
        stack.push_async_callback(self.redis.aclose)

    async def node(self, url: str | None = None, **options: Any) -> Node:
        options.setdefault("mirror_lease_seconds", LEASE)
        manager = ResyncingRedisManager(url or self.url, channel=self.channel, **options)
        sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)

        async def join(sid: str, room: str) -> bool:
            await sio.enter_room(sid, room)
            return True

        async def leave(sid: str, room: str) -> bool:
            await sio.leave_room(sid, room)
            return True

        async def ping(sid: str) -> str:
            return "pong"

        sio.on("join", join)
        sio.on("leave", leave)
        sio.on("ping", ping)
        base = await self.stack.enter_async_context(serve(socketio.ASGIApp(sio)))
        sio.manager_initialized = True
        manager.initialize()  # subscribe now, as the host's runtime does
        self.stack.push_async_callback(self._stop, manager)
        node = Node(sio, manager, base)
        await self.subscribed(node)
        return node

    async def subscribed(self, node: Node) -> None:
        """Until `node`'s listener is subscribed (Redis has no event to await for it)."""
        deadline = time.monotonic() + WAIT
        while not (node.manager.pubsub and node.manager.pubsub.subscribed):
            assert time.monotonic() < deadline, "the manager did not subscribe"
            await asyncio.sleep(0.01)

    @staticmethod
    async def _stop(manager: ResyncingRedisManager) -> None:
        await manager.aclose()
        while not manager.thread.done():  # again if redis-py swallowed the cancel
            manager.thread.cancel()
            await asyncio.wait({manager.thread}, timeout=0.1)
        with contextlib.suppress(Exception):
            await manager.redis.aclose()

    async def client(self, node: Node) -> Client:
        client = Client(socketio.AsyncClient(reconnection=False))

        async def on_any(event: str, data: Any = None) -> None:
            await client.events.put((event, data))

        client.sio.on("*", on_any)
        await client.sio.connect(node.url, transports=["websocket"])
        self.stack.push_async_callback(client.sio.disconnect)
        return client

    async def established(self) -> None:
        """Give the channel's directory an epoch created long ago (a deployment that has
        run for a while): first joins do not wait out the leases of an earlier epoch."""
        await self.redis.set(f"{self.channel}:dir:epoch", "established:0")

    async def established_nodes(self, count: int, **options: Any) -> list[Node]:
        """`count` nodes of an established deployment, their mirrors loaded."""
        await self.established()
        nodes = [await self.node(**options) for _ in range(count)]
        await self.mirrored(*nodes)
        return nodes

    @staticmethod
    async def mirrored(*nodes: Node) -> None:
        """Until every node's mirror is loaded."""
        for node in nodes:
            await asyncio.wait_for(node.manager.mirror.ready.wait(), WAIT)

    def room_key(self, room: str) -> str:
        return f"{self.channel}:rooms:/:{room}"

    async def fields(self, room: str) -> set[str]:
        return {f.decode() for f in await self.redis.hkeys(self.room_key(room))}


class Published:
    """Every message published on the channel, decoded, in order."""

    def __init__(self, redis: aioredis.Redis, channel: str) -> None:
        self.redis = redis
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.channel = channel
        self.seen: list[dict[str, Any]] = []

    async def start(self) -> Published:
        await self.pubsub.subscribe(self.channel)
        return self

    async def until(self, event: str, room: str) -> list[dict[str, Any]]:
        """Messages up to and including the first emit of `event` to `room`."""
        deadline = time.monotonic() + WAIT
        while not any(m.get("event") == event and m.get("room") == room for m in self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"no {event} to {room} was published"
            message = await self.pubsub.get_message(timeout=left)
            if message is not None:
                self.seen.append(json.loads(message["data"]))
        return self.seen

    async def mark(self) -> list[dict[str, Any]]:
        """Messages up to a marker this test publishes now (hosts ignore its method)."""
        marker = uuid.uuid4().hex
        await self.redis.publish(self.channel, json.dumps({"method": "mark", "id": marker}))
        deadline = time.monotonic() + WAIT
        while not any(m.get("id") == marker for m in self.seen):
            left = deadline - time.monotonic()
            assert left > 0, "the marker did not come back"
            message = await self.pubsub.get_message(timeout=left)
            if message is not None:
                self.seen.append(json.loads(message["data"]))
        return self.seen

    async def close(self) -> None:
        await self.pubsub.aclose()


def new_room(kind: str = "room") -> str:
    return f"{kind}:rd{uuid.uuid4().hex[:10]}"
