"""`RoomMirror`: a host's local copy of which tracked rooms OTHER hosts are in, under a lease.

The room directory (room_directory.py) answers "does another live host have a member in
this room?" with one Redis script per emit. The mirror answers it without a call for
the rooms no other host is in, and stays exact enough that no event a client is
entitled to is lost. This module holds only the state and its rules (no I/O, no clock:
times are passed in, loop time in seconds); `ResyncingRedisManager` (redis_manager.py)
feeds it from Redis.

How it stays safe (the directory's scripts and `MirrorLink` do the Redis side):

- **Announcements.** Every time a host's field is ADDED to a room's hash (its first
  local member), the same script increments the directory's sequence number and
  publishes an announcement `(seq, host, room keys)` on the directory channel. Every
  host applies announcements in order: the room joins `remote`. A sequence number
  that skips one means announcements were lost (the subscription dropped): the mirror
  is invalid until it is loaded again.
- **Load.** One script returns the current sequence number and every room key another
  live host has a field in; announcements numbered above it are applied on top.
- **Lease.** The mirror may say "nobody else is in this room" only while it holds a
  lease: a renewal script, sent at loop time `issued`, sets the host's lease key in
  Redis (TTL a bit over the lease) and returns the sequence number `confirmed`; the
  lease lasts until `issued + lease_seconds` and counts only once every announcement
  up to `confirmed` was applied.
- **Joining.** A host whose field was added waits, before its sid enters the room
  (before the join is acked), until every host that held a lease key when the field
  was added has acknowledged the announcement (`acked`), or until a lease could have
  lapsed. So after the ack, every other host either has the room in `remote` (and
  publishes through the script) or no valid lease (and publishes through the script).
- **Forgetting.** A room leaves `remote` only when a publish script found no other
  live host in it at a sequence number at least that of the room's last announcement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class RoomMirror:
    """The rooms other hosts are in, as this host knows them, and the lease on that."""

    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        self.epoch: str | None = None  # None: not loaded (or invalidated)
        self.seq = 0  # the last announcement applied (contiguous from the load)
        self.remote: dict[str, int] = {}  # room key -> seq of its last announcement
        self.confirmed = 0  # the sequence number the last renewal returned
        self.lease_until = float("-inf")  # loop time
        self.loads = 0
        self.gaps = 0
        self._early: list[tuple[str, int, tuple[str, ...]]] = []  # announced while loading
        self._acks: dict[tuple[str, str], int] = {}  # (host, epoch) -> highest seq acked
        self._acked = asyncio.Event()
        self.ready = asyncio.Event()  # set while loaded (a lease may still have lapsed)

    # --- what an emit asks ----------------------------------------------------------------

    def valid(self, now: float) -> bool:
        """Whether the mirror may answer "no other host is in this room" at `now`."""
        return self.epoch is not None and self.seq >= self.confirmed and now < self.lease_until

    def nobody_else_in(self, room_key: str, now: float) -> bool:
        """True only when, under a valid lease, no other host has announced `room_key`."""
        return room_key not in self.remote and self.valid(now)

    # --- what Redis tells it --------------------------------------------------------------

    def loaded(self, epoch: str, seq: int, room_keys: Iterable[str], issued: float) -> None:
        """A load script's answer (sent at `issued`): replaces what the mirror knew, then
        applies the announcements numbered above `seq` that arrived meanwhile."""
        self.epoch, self.seq, self.confirmed = epoch, seq, seq
        self.remote = dict.fromkeys(room_keys, seq)
        self.lease_until = issued + self.lease_seconds
        self.loads += 1
        self.ready.set()
        early, self._early = self._early, []
        for era, number, keys in sorted(early, key=lambda item: item[1]):
            if era == epoch and number > self.seq and not self.announced(era, number, keys):
                return

    def renewed(self, epoch: str, seq: int, issued: float) -> bool:
        """A renewal's answer (sent at `issued`); False when the mirror must be loaded
        again (another epoch: Redis lost the directory, or a sequence gone backwards)."""
        if epoch != self.epoch or seq < self.seq:
            self.invalidate()
            return False
        self.confirmed = max(self.confirmed, seq)
        self.lease_until = max(self.lease_until, issued + self.lease_seconds)
        return True

    def announced(self, epoch: str, seq: int, room_keys: Iterable[str]) -> bool:
        """Apply an announcement of another host (in the order published); False when
        one was missed (the mirror is invalid until loaded again)."""
        keys = tuple(room_keys)
        if self.epoch is None:  # loading: kept until the load's answer
            self._early.append((epoch, seq, keys))
            return True
        if epoch != self.epoch or seq > self.seq + 1:
            self.gaps += 1
            self.invalidate()
            return False
        if seq <= self.seq:  # the load included it
            return True
        self.seq = seq
        for key in keys:
            self.remote[key] = seq
        return True

    def own(self, epoch: str, seq: int) -> bool:
        """This host's own announcement: it only advances the sequence."""
        return self.announced(epoch, seq, ())

    def found_empty(self, room_key: str, seq: int) -> None:
        """A publish script found no other live host in `room_key` at sequence `seq`."""
        if self.remote.get(room_key, seq + 1) <= seq:
            del self.remote[room_key]

    def invalidate(self) -> None:
        """Forget everything: every emit goes through the script until the next load."""
        self.epoch = None
        self.ready.clear()
        self.remote.clear()
        self._early.clear()
        self.confirmed = 0
        self.lease_until = float("-inf")

    # --- a join waiting for the others ----------------------------------------------------

    def acked(self, host: str, epoch: str, seq: int) -> None:
        """`host` applied every announcement of `epoch` up to `seq`."""
        if seq > self._acks.get((host, epoch), 0):
            self._acks[(host, epoch)] = seq
            acked, self._acked = self._acked, asyncio.Event()
            acked.set()

    def missing_acks(self, hosts: Iterable[str], epoch: str, seq: int) -> set[str]:
        return {host for host in hosts if self._acks.get((host, epoch), 0) < seq}

    async def all_acked(self, hosts: Iterable[str], epoch: str, seq: int) -> None:
        """Until every one of `hosts` acknowledged `seq` of `epoch` (the caller bounds
        the wait)."""
        waiting = set(hosts)
        while waiting := self.missing_acks(waiting, epoch, seq):
            await self._acked.wait()
