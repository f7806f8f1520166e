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
- `{channel}:hosts`: the set of host ids that registered.

Room hashes and sets expire after three liveness TTLs without a refresh (a deployment
that is gone leaves nothing behind); a live host re-asserts its rooms every refresh.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workerledger.core import room_of_job, room_of_provider, room_of_watchers

# the core names these rooms: `room:` (watchers), `jobs:` and `providers:`
TRACKED_PREFIXES = (room_of_watchers(""), room_of_job(""), room_of_provider(""))
ASSERT_CHUNK = 500  # room keys per script call of a refresh
KEEP_TTLS = 3  # room hashes and sets expire after this many liveness TTLs unrefreshed

# KEYS: this host's liveness key, its room set, the hosts set, then room keys to assert.
# ARGV: host id, liveness TTL (ms), liveness key prefix, "1" to reap dead hosts, the
# expiry (ms) of the other keys (longer: others reap a dead host's fields from its room
# set; whatever nobody refreshes, a deployment that is gone, expires).
# Returns {1 if the liveness key existed else 0, {1-based indexes of room keys whose
# field was missing}}.
_ASSERT = """
local was = redis.call('SET', KEYS[1], '1', 'PX', ARGV[2], 'GET')
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
local added = {}
for i = 4, #KEYS do
  if redis.call('HSET', KEYS[i], ARGV[1], '1') == 1 then added[#added + 1] = i - 3 end
  redis.call('PEXPIRE', KEYS[i], ARGV[5])
  redis.call('SADD', KEYS[2], KEYS[i])
end
if #KEYS > 3 then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
if ARGV[4] == '1' then
  for _, h in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if h ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. h) == 0 then
      local rooms = ARGV[3] .. h .. ':rooms'
      for _, k in ipairs(redis.call('SMEMBERS', rooms)) do redis.call('HDEL', k, h) end
      redis.call('DEL', rooms)
      redis.call('SREM', KEYS[3], h)
    end
  end
end
if was then return {1, added} end
return {0, added}
"""

# KEYS: the room key. ARGV: channel, message, this host's id, liveness key prefix.
# Returns PUBLISH's receiver count, or -1 when no other live host is in the room.
_PUBLISH = """
local other = false
for _, h in ipairs(redis.call('HKEYS', KEYS[1])) do
  if h ~= ARGV[3] then
    if redis.call('EXISTS', ARGV[4] .. h) == 1 then
      other = true
    else
      redis.call('HDEL', KEYS[1], h)
    end
  end
end
if other then return redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return -1
"""

# KEYS: this host's liveness key, its room set, the hosts set. ARGV: host id.
_RELEASE = """
for _, k in ipairs(redis.call('SMEMBERS', KEYS[2])) do redis.call('HDEL', k, ARGV[1]) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
"""


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
    ) -> tuple[bool, list[str]]:
        """Refresh the liveness key and write this host's field in `room_keys`; with
        `reap`, remove every dead host's fields. Returns (whether the liveness key
        existed before, the room keys whose field was missing)."""
        script = self._script(redis, _ASSERT)
        head = [self.liveness_key, self.host_rooms_key, self.hosts_key]
        existed, missing, keep = None, [], KEEP_TTLS * self.ttl_ms
        for start in range(0, max(len(room_keys), 1), ASSERT_CHUNK):  # Redis stays responsive
            chunk = room_keys[start : start + ASSERT_CHUNK]
            args = [self.host_id, self.ttl_ms, self.host_prefix, "1" if reap else "0", keep]
            had, added = await script(keys=[*head, *chunk], args=args, client=redis)
            existed = bool(had) if existed is None else existed
            missing += [chunk[int(i) - 1] for i in added]
            reap = False
        return bool(existed), missing

    async def remove(self, redis: Any, room_key: str) -> None:
        """Remove this host's field from `room_key` (its last local member left)."""
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hdel(room_key, self.host_id)
            pipe.srem(self.host_rooms_key, room_key)
            await pipe.execute()

    async def publish_if_occupied(self, redis: Any, room_key: str, message: str | bytes) -> int:
        """PUBLISH `message` on the channel if another live host is in the room (the
        receiver count), else -1; fields of hosts without a liveness key are removed."""
        args = [self.channel, message, self.host_id, self.host_prefix]
        script = self._script(redis, _PUBLISH)
        return int(await script(keys=[room_key], args=args, client=redis))

    async def release(self, redis: Any) -> None:
        """Remove every entry of this host (a clean shutdown)."""
        keys = [self.liveness_key, self.host_rooms_key, self.hosts_key]
        await self._script(redis, _RELEASE)(keys=keys, args=[self.host_id], client=redis)
