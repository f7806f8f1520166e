"""The room directory's Redis scripts (Lua): each runs atomically in Redis.

Key and argument layouts are documented per script; `RoomDirectory` (room_directory.py)
builds them. `EPOCH` is prepended to the scripts that need the directory's epoch: the
epoch key holds `<token>:<created ms>`, written (from Redis' own clock) by the first
script that finds it missing, i.e. when Redis lost its data or the deployment is new.
The sequence number and the epoch expire after `keep` ms without a lease renewal.
"""

from __future__ import annotations

EPOCH = """
local function epoch(key, seq_key, keep)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local e = redis.call('GET', key)
  if not e then
    e = t[1] .. t[2] .. ':' .. now
    redis.call('SET', key, e)
  end
  redis.call('PEXPIRE', key, keep)
  redis.call('PEXPIRE', seq_key, keep)
  return e, now - tonumber(string.match(e, ':(%d+)$'))
end
"""

# KEYS: this host's liveness key, its room set, the hosts set, the sequence key, the
# epoch key, then room keys to assert.
# ARGV: host id, liveness TTL (ms), liveness key prefix, "1" to reap dead hosts, the
# expiry (ms) of the other keys, the directory channel, the lease key suffix.
# Reaping removes the fields of hosts with neither a liveness key nor a lease key.
# Writes this host's field in every room key; when any field was added, increments the
# sequence number and publishes one announcement {e, s, h, k} of the added keys.
# Returns {1 if the liveness key existed else 0, {1-based indexes of room keys whose
# field was missing}, the announcement's sequence number (0: none), the epoch, its age
# (ms), {hosts (not this one) holding a lease key when it was announced}}.
ASSERT = (
    EPOCH
    + """
local was = redis.call('SET', KEYS[1], '1', 'PX', ARGV[2], 'GET')
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
local added, keys = {}, {}
for i = 6, #KEYS do
  if redis.call('HSET', KEYS[i], ARGV[1], '1') == 1 then
    added[#added + 1] = i - 5
    keys[#keys + 1] = KEYS[i]
  end
  redis.call('PEXPIRE', KEYS[i], ARGV[5])
  redis.call('SADD', KEYS[2], KEYS[i])
end
if #KEYS > 5 then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
if ARGV[4] == '1' then
  for _, h in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if h ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. h) == 0
        and redis.call('EXISTS', ARGV[3] .. h .. ARGV[7]) == 0 then
      local rooms = ARGV[3] .. h .. ':rooms'
      for _, k in ipairs(redis.call('SMEMBERS', rooms)) do redis.call('HDEL', k, h) end
      redis.call('DEL', rooms)
      redis.call('SREM', KEYS[3], h)
    end
  end
end
local e, age = epoch(KEYS[5], KEYS[4], ARGV[5])
local seq, holders = 0, {}
if #keys > 0 then
  seq = redis.call('INCR', KEYS[4])
  redis.call('PUBLISH', ARGV[6], cjson.encode({e = e, s = seq, h = ARGV[1], k = keys}))
  for _, h in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if h ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. h .. ARGV[7]) == 1 then
      holders[#holders + 1] = h
    end
  end
end
return {was and 1 or 0, added, seq, e, age, holders}
"""
)

# KEYS: the room key, the sequence key. ARGV: channel, message, this host's id, liveness
# key prefix. Returns {PUBLISH's receiver count, or -1 when no other live host is in
# the room; the sequence number when it looked}.
PUBLISH = """
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
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if other then return {redis.call('PUBLISH', ARGV[1], ARGV[2]), seq} end
return {-1, seq}
"""

# KEYS: this host's lease key, the sequence key, the epoch key, the hosts set.
# ARGV: host id, lease key TTL (ms), expiry (ms) of the others, liveness key prefix,
# "1" to also return the room keys other live hosts have a field in.
# Returns {epoch, sequence number, {room keys}}.
LEASE = (
    EPOCH
    + """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('PEXPIRE', KEYS[4], ARGV[3])
local e = epoch(KEYS[3], KEYS[2], ARGV[3])
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local rooms = {}
if ARGV[5] == '1' then
  local seen = {}
  for _, h in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    if h ~= ARGV[1] and redis.call('EXISTS', ARGV[4] .. h) == 1 then
      for _, k in ipairs(redis.call('SMEMBERS', ARGV[4] .. h .. ':rooms')) do
        if not seen[k] then
          seen[k] = true
          rooms[#rooms + 1] = k
        end
      end
    end
  end
end
return {e, seq, rooms}
"""
)

# KEYS: this host's liveness key, its room set, the hosts set, its lease key.
# ARGV: host id.
RELEASE = """
for _, k in ipairs(redis.call('SMEMBERS', KEYS[2])) do redis.call('HDEL', k, ARGV[1]) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
"""
