"""`RoomDirectory`: which hosts have a local member in which tracked room, in Redis.

python-socketio's Redis manager publishes every emit and every host decodes every
message, even for rooms nobody in the cluster is in. The directory lets a host publish
an emit to one of workerledger's rooms only when some OTHER live host has a local
member in it (`ResyncingRedisManager` in redis_manager.py uses it).

Tracked rooms are the kinds workerledger names: `room:` (watchers), `jobs:` (a job's
workers) and `providers:` (a provider's workers), in a namespace without `:`. Anything
else (sid rooms, broadcasts, emits with a callback) is published as python-socketio
does. Keys, all under the manager's channel:

- `{channel}:rooms:{namespace}:{room}`: a hash, one field per host with a local member
  (field = the manager's `host_id`);
- `{channel}:host:{host_id}`: the host's liveness key, with a TTL the host refreshes;
- `{channel}:host:{host_id}:rooms`: the set of room keys holding the host's field (so a
  dead host's fields can be removed by the others);
- `{channel}:hosts`: the set of host ids that registered;
- `{channel}:host:{host_id}:lease`: the host's mirror lease key (room_mirror.py);
- `{channel}:dir:seq` and `{channel}:dir:epoch`: the announcements' sequence number and
  the directory's epoch; announcements and their acknowledgements are published on the
  channel `{channel}:dir`.

Room hashes, sets, the sequence number and the epoch expire after three liveness TTLs
without a refresh (a deployment that is gone leaves nothing behind); a live host
re-asserts its rooms every refresh.

The rule (never lose an event a client is entitled to): a host writes its field, and
refreshes its liveness key in the same atomic script, BEFORE a local member enters the
room; it removes the field only while the room has no local member (under the same
per-room lock, redis_manager.py). An emit (`publish_if_occupied`, one script) publishes
only if the room's hash holds another host whose liveness key exists, and removes the
fields of hosts whose liveness key is gone. Over-approximation (a stale field) only
costs a publish; what could under-approximate (Redis losing its data, a host's liveness
key lapsing so others dropped its fields) is seen by that host, which re-registers and
makes its clients resynchronise. The scripts read keys they compute (other hosts'
liveness keys), so they need a single Redis (or Sentinel), not Redis Cluster - as
python-socketio's manager does.

Adding a field is announced (directory_scripts.ASSERT), so that hosts can keep a mirror
of the rooms others are in and skip the script for the rooms nobody else is in
(room_mirror.py has that protocol).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workerledger.core import room_of_job, room_of_provider, room_of_watchers

from . import directory_scripts

# the core names these rooms: `room:` (watchers), `jobs:` and `providers:`
TRACKED_PREFIXES = (room_of_watchers(""), room_of_job(""), room_of_provider(""))
ASSERT_CHUNK = 500  # room keys per script call of a refresh
KEEP_TTLS = 3  # room hashes and sets expire after this many liveness TTLs unrefreshed
LEASE_SUFFIX = ":lease"


@dataclass(frozen=True)
class Asserted:
    """What `RoomDirectory.assert_rooms` did: whether the liveness key existed, the room
    keys whose field was missing (added now), and, when fields were added, the
    announcement's sequence number and epoch, the epoch's age and the other hosts that
    held a mirror lease then (they must acknowledge it, room_mirror.py)."""

    existed: bool
    missing: list[str]
    seq: int = 0
    epoch: str = ""
    epoch_age_seconds: float = 0.0
    lease_holders: tuple[str, ...] = ()


@dataclass(frozen=True)
class Leased:
    """A lease renewal's answer: the epoch, the sequence number, and (on a load) the
    room keys other live hosts have a field in."""

    epoch: str
    seq: int
    rooms: tuple[str, ...]


class RoomDirectory:
    """Key names and the Redis operations of one host's entries in the directory.

    Every operation takes the Redis client to use (the manager's, which it reconnects);
    the scripts are registered on the first client and run with EVALSHA, loaded again
    after NOSCRIPT (a restarted Redis) by redis-py.
    """

    def __init__(self, channel: str, host_id: str, *, ttl_seconds: float = 30.0) -> None:
        self.channel = channel
        self.host_id = host_id
        self.ttl_ms = max(1, round(ttl_seconds * 1000))
        self.host_prefix = f"{channel}:host:"
        self.liveness_key = self.host_prefix + host_id
        self.host_rooms_key = f"{self.liveness_key}:rooms"
        self.hosts_key = f"{channel}:hosts"
        self.lease_key = self.liveness_key + LEASE_SUFFIX
        self.seq_key = f"{channel}:dir:seq"
        self.epoch_key = f"{channel}:dir:epoch"
        self.announcements = f"{channel}:dir"  # the channel of announcements and acks
        self._room_prefix = f"{channel}:rooms:"
        self._scripts: dict[str, Any] = {}

    @staticmethod
    def tracks(room: object) -> bool:
        """Whether `room` is one of the rooms the directory records."""
        return isinstance(room, str) and room.startswith(TRACKED_PREFIXES)

    def room_key(self, namespace: str | None, room: object) -> str | None:
        """The hash of a tracked room, or None when `room` is not tracked."""
        namespace = namespace or "/"
        if ":" in namespace or not self.tracks(room):
            return None
        return f"{self._room_prefix}{namespace}:{room}"

    def _script(self, redis: Any, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = redis.register_script(source)
        return script

    async def assert_rooms(
        self, redis: Any, room_keys: Sequence[str], *, reap: bool = False
    ) -> Asserted:
        """Refresh the liveness key and write this host's field in `room_keys` (an
        announcement per script call that added any); with `reap`, remove every dead
        host's fields."""
        script = self._script(redis, directory_scripts.ASSERT)
        head = [self.liveness_key, self.host_rooms_key, self.hosts_key]
        head += [self.seq_key, self.epoch_key]
        existed, missing, keep = None, [], KEEP_TTLS * self.ttl_ms
        announced: dict[str, Any] = {}
        for start in range(0, max(len(room_keys), 1), ASSERT_CHUNK):  # Redis stays responsive
            chunk = room_keys[start : start + ASSERT_CHUNK]
            args = [self.host_id, self.ttl_ms, self.host_prefix, "1" if reap else "0", keep]
            args += [self.announcements, LEASE_SUFFIX]
            had, added, seq, epoch, age, holders = await script(
                keys=[*head, *chunk], args=args, client=redis
            )
            existed = bool(had) if existed is None else existed
            missing += [chunk[int(i) - 1] for i in added]
            if int(seq):  # the last announcement is the one to wait for
                announced = {
                    "seq": int(seq),
                    "epoch": _text(epoch),
                    "epoch_age_seconds": int(age) / 1000,
                    "lease_holders": tuple(map(_text, holders)),
                }
            reap = False
        return Asserted(bool(existed), missing, **announced)

    async def lease(self, redis: Any, lease_seconds: float, *, load: bool = False) -> Leased:
        """Renew this host's mirror lease key (TTL a tenth over `lease_seconds`); with
        `load`, also the room keys other live hosts have a field in."""
        script = self._script(redis, directory_scripts.LEASE)
        ttl = max(1, round(lease_seconds * 1100) + 100)
        keys = [self.lease_key, self.seq_key, self.epoch_key, self.hosts_key]
        args = [self.host_id, ttl, KEEP_TTLS * self.ttl_ms, self.host_prefix, "1" if load else "0"]
        epoch, seq, rooms = await script(keys=keys, args=args, client=redis)
        return Leased(_text(epoch), int(seq), tuple(map(_text, rooms)))

    async def acknowledge(self, redis: Any, epoch: str, seq: int) -> None:
        """Tell the announcing hosts this host applied every announcement up to `seq`."""
        message = json.dumps({"a": self.host_id, "e": epoch, "s": seq})
        await redis.publish(self.announcements, message)

    async def remove(self, redis: Any, room_key: str) -> None:
        """Remove this host's field from `room_key` (its last local member left)."""
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hdel(room_key, self.host_id)
            pipe.srem(self.host_rooms_key, room_key)
            await pipe.execute()

    async def publish_if_occupied(
        self, redis: Any, room_key: str, message: str | bytes
    ) -> tuple[int, int]:
        """PUBLISH `message` on the channel if another live host is in the room: (the
        receiver count, or -1 when none is; the sequence number when it looked); fields
        of hosts without a liveness key are removed."""
        args = [self.channel, message, self.host_id, self.host_prefix]
        script = self._script(redis, directory_scripts.PUBLISH)
        receivers, seq = await script(keys=[room_key, self.seq_key], args=args, client=redis)
        return int(receivers), int(seq)

    async def release(self, redis: Any) -> None:
        """Remove every entry of this host (a clean shutdown)."""
        keys = [self.liveness_key, self.host_rooms_key, self.hosts_key, self.lease_key]
        release = self._script(redis, directory_scripts.RELEASE)
        await release(keys=keys, args=[self.host_id], client=redis)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
