"""Socket.IO handlers: authenticated connections, job rooms, watchers, disconnect cleanup.

`register_socketio_handlers(sio, runtime)` installs the handlers a `LedgerRuntime`
built for its `socketio.AsyncServer` (or, the older form, builds them for
`(sio, ledger, authenticate)`):

- `connect`: bearer token from `auth={"token": ...}` or an `Authorization` header;
  refused with `ConnectionRefusedError` otherwise.
- `join_job_room {job_name, worker_id}` / `leave_job_room {...}`: the `JoinJobRoom` /
  `LeaveJobRoom` commands; worker ids are recorded in the connection's session (one
  connection may speak for several workers and jobs). Ack `{"ok": true}` or
  `{"error": {type, title, status, detail}}`; an error changes nothing.
- `join_provider_room` / `leave_provider_room {provider_name, worker_id}`: the
  `JoinProviderRoom` / `LeaveProviderRoom` commands (`providers:{provider_name}`, where
  `provider_request` is dispatched), under the same ownership, forged-id and session
  rules as job rooms; a provider-only worker's connection is released on disconnect
  and covered by the grace window like any other.
- `join_room {room_id}` / `leave_room {room_id}`: watchers enter `room:{room_id}`
  when the host's `RoomPolicy.may_watch(room_id, actor)` allows it (default: any
  authenticated user); refused -> error ack 403 `forbidden`. Leaving is always allowed.
- every event first passes the boundary: the connection's token bucket (`event_burst`
  events at once, `events_per_second` after that; beyond it the ack is 429
  `rate-limited` and nothing is recorded), then the payload's limits (depth, Unicode,
  finite numbers, lengths of job names, worker ids and room ids; input_limits.py).
  A message over `max_http_buffer_size` (the host sets it to the body limit) never
  reaches a handler: engine.io closes the connection.
- `disconnect(sid, reason)`: never raises (python-socketio would strand the sid in its
  rooms); releases the session's workers with `cleanup_worker` in a background task,
  so the sid leaves its rooms at once, and expires the grace window on a timer.

Several hosts share rooms and emits through Redis (`ResyncingRedisManager`, in
realtime/redis_manager.py and importable from here). Redis
pub/sub is fire-and-forget: while a host cannot reach Redis, what other hosts emit
to its clients is lost (the state is not: it is in the event store). When the host's
subscription comes back, `WorkerSockets.resync_local` tells its own clients to
resynchronise: `jobs_invalidate` and `providers_invalidate` to every watcher room
(watchers re-read the REST listings) and `task_available` to every job room with
pending tasks (workers claim).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

import socketio
from workerledger.core import (
    Actor,
    Command,
    ForbiddenError,
    InvalidRoomIdError,
    JoinJobRoom,
    LeaveJobRoom,
    is_valid_room_id,
    room_of_job,
    room_of_watchers,
)

from ..auth import Authenticator, Clock, socketio_token, utc_now
from ..cleanup import cleanup_worker, expire_grace, grace_deadline
from ..input_limits import DEFAULT_LIMITS, InputLimits, check_length, check_value
from ..ledger import Ledger
from ..projection import Projection
from ..room_policy import OpenRooms, RoomPolicy
from .acks import (
    EVENT_BURST,
    EVENTS_PER_SECOND,
    Ack,
    JobRoomPayload,
    TokenBucket,
    WatchPayload,
    WorkerSession,
    answer,
    rate_limited,
)
from .emitter import SocketIOServer
from .provider_rooms import ProviderRoomPayload
from .redis_manager import ResyncingRedisManager as ResyncingRedisManager

if TYPE_CHECKING:  # the runtime builds these handlers: a real import would be a cycle
    from ..runtime import LedgerRuntime

logger = logging.getLogger(__name__)
SpeakFor = Callable[[str, Actor, datetime], Command]  # (sid, actor, now) -> the command
SESSION_KEY = "workerledger"
WATCHERS_PREFIX = room_of_watchers("")
JOB_ROOM_PREFIX = room_of_job("")


class WorkerSockets:
    """The handlers of one Socket.IO server, plus the timers and sids of this host."""

    def __init__(
        self,
        sio: SocketIOServer,
        ledger: Ledger,
        authenticate: Authenticator,
        *,
        grace_seconds: float,
        heartbeat_timeout_seconds: float,
        clock: Clock = utc_now,
        namespace: str = "/",
        limits: InputLimits = DEFAULT_LIMITS,
        events_per_second: float = EVENTS_PER_SECOND,
        event_burst: int = EVENT_BURST,
        room_policy: RoomPolicy | None = None,
    ) -> None:
        self.sio, self.ledger, self.authenticate = sio, ledger, authenticate
        self.room_policy: RoomPolicy = room_policy if room_policy is not None else OpenRooms()
        self.limits, self.events_per_second, self.event_burst = (
            limits,
            events_per_second,
            event_burst,
        )
        self.grace_seconds = grace_seconds
        self.heartbeat_timeout_seconds = heartbeat_timeout_seconds
        self.clock, self.namespace = clock, namespace
        self.local_sids: set[str] = set()  # connections attached to this process
        self._releases: set[asyncio.Task[object]] = set()
        self._timers: set[asyncio.Task[object]] = set()  # grace expiries

    def install(self, *, handle_disconnect: bool = True) -> None:
        handlers: dict[str, Callable[..., Any]] = {
            "connect": self.on_connect,
            "join_job_room": self.on_join_job_room,
            "leave_job_room": self.on_leave_job_room,
            "join_provider_room": self.on_join_provider_room,
            "leave_provider_room": self.on_leave_provider_room,
            "join_room": self.on_join_room,
            "leave_room": self.on_leave_room,
        }
        if handle_disconnect:
            handlers["disconnect"] = self.on_disconnect
        for event, handler in handlers.items():
            self.sio.on(event, handler, namespace=self.namespace)

    # --- connection lifecycle ---------------------------------------------------------

    async def on_connect(self, sid: str, environ: Mapping[str, Any], auth: object = None) -> None:
        try:
            token = socketio_token(environ, auth)
            actor = self.authenticate(token) if token else None
            if actor is not None:
                now = asyncio.get_running_loop().time()
                bucket = TokenBucket(
                    self.events_per_second, self.event_burst, self.event_burst, now
                )
                session = {SESSION_KEY: WorkerSession(actor=actor, bucket=bucket)}
                await self.sio.save_session(sid, session, namespace=self.namespace)
                self.local_sids.add(sid)
                return
        except Exception:
            logger.exception("connect handler failed for %s", sid)
        raise socketio.exceptions.ConnectionRefusedError("unauthorized")

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        try:
            worker_ids = await self.detach(sid)
            if worker_ids:
                self._spawn(self._release(sid, worker_ids, str(reason)), self._releases)
        except Exception:
            logger.exception("disconnect handler failed for %s", sid)

    async def detach(self, sid: str) -> list[str]:
        """Forget a closed connection; the worker ids it spoke for (for `cleanup_worker`)."""
        self.local_sids.discard(sid)
        try:
            session = await self._session(sid)
        except KeyError:
            return []
        return sorted(session.worker_ids)

    async def _release(self, sid: str, worker_ids: list[str], reason: str) -> None:
        """Disconnect each worker; time the expiry of the grace window the core recorded."""
        for worker_id in worker_ids:
            try:
                decision = await cleanup_worker(
                    self.ledger,
                    worker_id,
                    sid,
                    reason=reason,
                    grace_seconds=self.grace_seconds,
                    now=self.clock(),
                )
                deadline = grace_deadline(decision, worker_id) if decision else None
                if deadline is not None:
                    timeout = self.heartbeat_timeout_seconds
                    work = expire_grace(self.ledger, worker_id, deadline, timeout, self.clock)
                    self._spawn(work, self._timers)
            except Exception:
                logger.exception("cleanup of worker %s failed", worker_id)

    # --- events -----------------------------------------------------------------------

    async def on_join_job_room(self, sid: str, data: object = None) -> Ack:
        return await answer(self._admitted(sid, data, self._join))

    async def on_leave_job_room(self, sid: str, data: object = None) -> Ack:
        return await answer(self._admitted(sid, data, self._leave))

    async def on_join_provider_room(self, sid: str, data: object = None) -> Ack:
        return await answer(self._admitted(sid, data, self._join_provider))

    async def on_leave_provider_room(self, sid: str, data: object = None) -> Ack:
        return await answer(self._admitted(sid, data, self._leave_provider))

    async def on_join_room(self, sid: str, data: object = None) -> Ack:
        return await answer(self._admitted(sid, data, self._enter))

    async def on_leave_room(self, sid: str, data: object = None) -> Ack:
        return await answer(self._admitted(sid, data, self._exit))

    async def _admitted(
        self, sid: str, data: object, handle: Callable[[str, object], Coroutine[Any, Any, Ack]]
    ) -> Ack:
        """The boundary of every event: the connection's rate, then the payload's limits."""
        session = await self._session(sid)
        if not session.bucket.take(asyncio.get_running_loop().time()):
            raise rate_limited(session.bucket)
        check_value(data, self.limits)
        return await handle(sid, data)

    def _job_room_payload(self, data: object) -> JobRoomPayload:
        payload = JobRoomPayload.model_validate(data)
        check_length("job_name", payload.job_name, self.limits.max_full_job_name_length)
        check_length("worker_id", payload.worker_id, self.limits.max_key_length)
        return payload

    async def _join(self, sid: str, data: object) -> Ack:
        payload = self._job_room_payload(data)

        def command(sid: str, actor: Actor, now: datetime) -> Command:
            return JoinJobRoom(
                worker_id=payload.worker_id, sid=sid, job_name=payload.job_name,
                actor=actor, now=now,
            )  # fmt: skip

        return await self._speak_for(sid, payload.worker_id, command)

    async def _speak_for(self, sid: str, worker_id: str, command: SpeakFor) -> Ack:
        """Run a join that makes `sid` speak for `worker_id`. The id enters the session
        before the command (a racing disconnect sees it) and leaves it again when the
        join was refused and `sid` does not speak for the worker (a forged or foreign id
        is never released by this connection's disconnect)."""
        session = await self._session(sid)
        added = worker_id not in session.worker_ids
        session.worker_ids.add(worker_id)
        try:
            await self.ledger.execute(command(sid, session.actor, self.clock()))
        except BaseException:
            if added and not await self._speaks_for(sid, worker_id):
                session.worker_ids.discard(worker_id)
            raise
        return {"ok": True}

    def _provider_room_payload(self, data: object) -> ProviderRoomPayload:
        payload = ProviderRoomPayload.model_validate(data)
        check_length("provider_name", payload.provider_name, self.limits.max_full_job_name_length)
        check_length("worker_id", payload.worker_id, self.limits.max_key_length)
        return payload

    async def _join_provider(self, sid: str, data: object) -> Ack:
        payload = self._provider_room_payload(data)
        return await self._speak_for(sid, payload.worker_id, payload.join)

    async def _leave_provider(self, sid: str, data: object) -> Ack:
        payload = self._provider_room_payload(data)
        session = await self._session(sid)
        await self.ledger.execute(payload.leave(sid, session.actor, self.clock()))
        return {"ok": True}

    async def _leave(self, sid: str, data: object) -> Ack:
        payload = self._job_room_payload(data)
        session = await self._session(sid)
        command = LeaveJobRoom(
            worker_id=payload.worker_id,
            sid=sid,
            job_name=payload.job_name,
            actor=session.actor,
            now=self.clock(),
        )
        await self.ledger.execute(command)
        return {"ok": True}

    async def _enter(self, sid: str, data: object) -> Ack:
        return await self._watch(sid, data, enter=True)

    async def _exit(self, sid: str, data: object) -> Ack:
        return await self._watch(sid, data, enter=False)

    async def _watch(self, sid: str, data: object, *, enter: bool) -> Ack:
        payload = WatchPayload.model_validate(data)
        check_length("room_id", payload.room_id, self.limits.max_room_id_length)
        if not is_valid_room_id(payload.room_id):
            raise InvalidRoomIdError(f"invalid room id {payload.room_id!r}")
        room = room_of_watchers(payload.room_id)
        if enter:
            actor = (await self._session(sid)).actor
            if not await self.room_policy.may_watch(payload.room_id, actor):
                raise ForbiddenError(f"{actor.user} may not watch room {payload.room_id!r}")
            await self.sio.enter_room(sid, room, namespace=self.namespace)
        else:
            await self.sio.leave_room(sid, room, namespace=self.namespace)
        return {"ok": True}

    # --- resynchronisation after a Redis outage ---------------------------------------

    async def resync_local(self) -> int:
        """Tell this host's own clients to resynchronise (local delivery, not via Redis):
        `jobs_invalidate` and `providers_invalidate` to each watcher room, `task_available`
        (the oldest pending task) to each job room with pending tasks. Returns the number
        of emits."""
        sio: Any = self.sio
        try:
            rooms = [
                room
                for room, members in sio.manager.rooms.get(self.namespace, {}).items()
                if isinstance(room, str) and members
            ]

            def heads(view: Projection) -> dict[str, dict[str, str]]:
                out: dict[str, dict[str, str]] = {}
                for room in rooms:
                    if not room.startswith(JOB_ROOM_PREFIX):
                        continue
                    job = room.removeprefix(JOB_ROOM_PREFIX)
                    if (task := view.oldest_pending(job)) is not None:
                        out[room] = {"job_name": job, "room_id": task.room_id, "task_id": task.id}
                return out

            available = await self.ledger.read(heads)
            sent = 0
            for room in rooms:
                if room.startswith(WATCHERS_PREFIX):
                    for event in ("jobs_invalidate", "providers_invalidate"):
                        await sio.emit(event, {}, to=room, namespace=self.namespace,
                                       ignore_queue=True)  # fmt: skip
                        sent += 1
                elif room in available:
                    await sio.emit("task_available", available[room], to=room,
                                   namespace=self.namespace, ignore_queue=True)  # fmt: skip
                    sent += 1
            return sent
        except Exception:
            logger.exception("resynchronising this host's clients failed")
            return 0

    # --- helpers ----------------------------------------------------------------------

    async def _session(self, sid: str) -> WorkerSession:
        session = await self.sio.get_session(sid, namespace=self.namespace)
        value = session.get(SESSION_KEY)
        if not isinstance(value, WorkerSession):
            raise KeyError(f"no workerledger session for {sid}")
        return value

    async def _speaks_for(self, sid: str, worker_id: str) -> bool:
        def query(view: Projection) -> bool:
            worker = view.worker(worker_id)
            return worker is not None and worker.sid == sid

        return await self.ledger.read(query)

    @staticmethod
    def _spawn(work: Coroutine[Any, Any, object], into: set[asyncio.Task[object]]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        into.add(task)
        task.add_done_callback(into.discard)

    async def idle(self) -> None:
        """Wait until every release and grace timer started so far has finished."""
        while pending := self._releases | self._timers:
            await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self) -> None:
        """Finish releases in flight; cancel grace timers (their deadlines are in the log,
        so any host's sweeper ends those workers if they do not come back)."""
        while self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        for task in list(self._timers):
            task.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)


@overload
def register_socketio_handlers(
    sio: SocketIOServer, ledger: LedgerRuntime, *, handle_disconnect: bool = True
) -> WorkerSockets: ...


@overload
def register_socketio_handlers(
    sio: SocketIOServer,
    ledger: Ledger,
    authenticate: Authenticator,
    *,
    grace_seconds: float = 10.0,
    heartbeat_timeout_seconds: float = 60.0,
    clock: Clock = utc_now,
    namespace: str = "/",
    handle_disconnect: bool = True,
    limits: InputLimits = DEFAULT_LIMITS,
    events_per_second: float = EVENTS_PER_SECOND,
    event_burst: int = EVENT_BURST,
    room_policy: RoomPolicy | None = None,
) -> WorkerSockets: ...


def register_socketio_handlers(
    sio: SocketIOServer,
    ledger: Ledger | LedgerRuntime,
    authenticate: Authenticator | None = None,
    *,
    handle_disconnect: bool = True,
    **options: Any,
) -> WorkerSockets:
    """Install the workerledger handlers on `sio` and return them.

    `register_socketio_handlers(sio, runtime)` installs the handlers the `LedgerRuntime`
    built for this server (its policies, limits, clock and authenticator; its sweeper,
    Redis resync and `stop()` already use them). The older form
    `register_socketio_handlers(sio, ledger, authenticate, grace_seconds=..., ...)`
    builds them here from those options; such a host runs its own sweeper.

    With `handle_disconnect=False` the host keeps its own `disconnect` handler and calls
    `cleanup_worker(ledger, worker_id, sid, ...)` for each id of `await sockets.detach(sid)`.
    Give the AsyncServer `max_http_buffer_size=limits.max_body_bytes` as well.
    """
    if isinstance(ledger, Ledger):
        if authenticate is None:
            raise TypeError("with a Ledger, pass authenticate: (sio, ledger, authenticate)")
        options = {"grace_seconds": 10.0, "heartbeat_timeout_seconds": 60.0} | options
        sockets = WorkerSockets(sio, ledger, authenticate, **options)
    else:
        if authenticate is not None or options:
            raise TypeError("a LedgerRuntime holds the authenticator, policies and limits")
        if ledger.sockets is None or ledger.sio is not sio:
            raise ValueError("this runtime was built without this server: LedgerRuntime(sio=...)")
        sockets = ledger.sockets
    sockets.install(handle_disconnect=handle_disconnect)
    return sockets
