"""Domain events: what happened, past tense, one subject stream each.

Every event belongs to exactly one stream (`subject`, a `Stream`; its stored name
`stream` is `worker:<id>`, `job:<full name>`, `task:<id>` or `provider:<full name>`),
which is the aggregate the store appends it to. A decision that touches several
entities returns one event per stream, saved in one transaction.

The `type` field is the stable event name used in storage and JSON; never rename it.
Evolving an event's schema means a new optional field, or an upcaster in the store.
`HeartbeatRecorded` is the one non-durable event: the store keeps only the latest
beat per worker (a liveness table) instead of appending each one to the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, Field, TypeAdapter

from .model import Frozen, RunningTaskPolicy, TaskStatus
from .streams import Stream, StreamKind, stream_name


class _Event(Frozen):
    # The stream's name, kept on first use: a slot, not a field, so it is never
    # validated, compared, hashed, copied or serialised (a copy computes it anew).
    __slots__ = ("_stream",)
    if TYPE_CHECKING:
        _stream: str
    durable: ClassVar[bool] = True
    stream_kind: ClassVar[StreamKind]
    at: AwareDatetime

    @property
    def stream_key(self) -> str:
        """The id of the entity whose stream this event belongs to."""
        raise NotImplementedError

    @property
    def subject(self) -> Stream:
        """The stream this event belongs to, as a value."""
        return Stream(self.stream_kind, self.stream_key)

    @property
    def stream(self) -> str:
        """The stream's stored name (`worker:<id>`, ...): the store's key, never changes.

        Computed once per event (the decision path asks for it a dozen times)."""
        try:
            return _cached_stream(self)
        except AttributeError:
            name = stream_name(self.stream_kind, self.stream_key)
            object.__setattr__(self, "_stream", name)
            return name


# the slot's own getter: an empty slot raises AttributeError here, without going through
# pydantic's `__getattr__` (which `self._stream` would)
_cached_stream: Callable[[_Event], str] = _Event.__dict__["_stream"].__get__


class _WorkerEvent(_Event):
    stream_kind: ClassVar[StreamKind] = StreamKind.WORKER
    worker_id: str

    @property
    def stream_key(self) -> str:
        return self.worker_id


class _JobEvent(_Event):
    stream_kind: ClassVar[StreamKind] = StreamKind.JOB
    job_name: str

    @property
    def stream_key(self) -> str:
        return self.job_name


class _ProviderEvent(_Event):
    stream_kind: ClassVar[StreamKind] = StreamKind.PROVIDER
    provider_name: str  # the provider's full name, `room:category:name`

    @property
    def stream_key(self) -> str:
        return self.provider_name


class _TaskEvent(_Event):
    stream_kind: ClassVar[StreamKind] = StreamKind.TASK
    task_id: str

    @property
    def stream_key(self) -> str:
        return self.task_id


# --- worker stream --------------------------------------------------------------


class WorkerRegistered(_WorkerEvent):
    type: Literal["WorkerRegistered"] = "WorkerRegistered"
    user: str
    request_hash: str | None = None  # the keyed registration request that created it


class WorkerJobLinked(_WorkerEvent):
    type: Literal["WorkerJobLinked"] = "WorkerJobLinked"
    job_name: str


class HeartbeatRecorded(_WorkerEvent):
    durable: ClassVar[bool] = False
    type: Literal["HeartbeatRecorded"] = "HeartbeatRecorded"


class ConnectionAttached(_WorkerEvent):
    """A Socket.IO connection now speaks for the worker (replacing `previous_sid`)."""

    type: Literal["ConnectionAttached"] = "ConnectionAttached"
    sid: str
    previous_sid: str | None = None


class RoomJoined(_WorkerEvent):
    type: Literal["RoomJoined"] = "RoomJoined"
    sid: str
    job_name: str


class RoomLeft(_WorkerEvent):
    type: Literal["RoomLeft"] = "RoomLeft"
    sid: str
    job_name: str


class WorkerDisconnected(_WorkerEvent):
    """The worker's current connection dropped; its claims wait until the deadline."""

    type: Literal["WorkerDisconnected"] = "WorkerDisconnected"
    sid: str
    reason: str
    grace_deadline: AwareDatetime


class WorkerResumed(_WorkerEvent):
    type: Literal["WorkerResumed"] = "WorkerResumed"
    sid: str


class WorkerDrainRequested(_WorkerEvent):
    """An operator (`by`: the owner or a superuser) drained the worker: it claims nothing
    from now on, finishes what it holds, then ends (`WorkerLeft`); past `deadline` a
    sweep ends it (`WorkerLost`) and releases what it still holds per the job's policy."""

    type: Literal["WorkerDrainRequested"] = "WorkerDrainRequested"
    by: str
    reason: str
    deadline: AwareDatetime | None = None


class WorkerLost(_WorkerEvent):
    """Involuntary end: grace expired, heartbeat timed out, dropped with no grace, or a
    drain deadline passed."""

    type: Literal["WorkerLost"] = "WorkerLost"
    reason: str


class WorkerLeft(_WorkerEvent):
    """Voluntary end, by the owner (client `disconnect()` / `DELETE /workers/{id}`), or
    the end of a drain once the worker held nothing (`by` the drainer, `reason`
    "drained: ...")."""

    type: Literal["WorkerLeft"] = "WorkerLeft"
    by: str
    reason: str | None = None  # why, when an operator said so


class WorkerDeleted(_WorkerEvent):
    """A superuser removed another user's worker."""

    type: Literal["WorkerDeleted"] = "WorkerDeleted"
    by: str
    reason: str | None = None  # why, when the operator said so


class WorkerTaskAssigned(_WorkerEvent):
    type: Literal["WorkerTaskAssigned"] = "WorkerTaskAssigned"
    task_id: str
    attempt: int
    request_key: str | None = None  # the claim's Idempotency-Key, if it sent one


class WorkerTaskReleased(_WorkerEvent):
    """A held task left a live worker: its report or a cancel ended it, or its claim
    lease expired (`status` pending). A worker's end releases its tasks itself."""

    type: Literal["WorkerTaskReleased"] = "WorkerTaskReleased"
    task_id: str
    status: TaskStatus


class WorkerProviderLinked(_WorkerEvent):
    """The worker serves this provider (registered, or moved to it from another worker)."""

    type: Literal["WorkerProviderLinked"] = "WorkerProviderLinked"
    provider_name: str


class WorkerProviderUnlinked(_WorkerEvent):
    """The provider was deleted or moved to another worker (a worker's end removes its
    providers itself)."""

    type: Literal["WorkerProviderUnlinked"] = "WorkerProviderUnlinked"
    provider_name: str
    reason: str


class ProviderRoomJoined(_WorkerEvent):
    type: Literal["ProviderRoomJoined"] = "ProviderRoomJoined"
    sid: str
    provider_name: str


class ProviderRoomLeft(_WorkerEvent):
    type: Literal["ProviderRoomLeft"] = "ProviderRoomLeft"
    sid: str
    provider_name: str


# --- job stream -----------------------------------------------------------------


class JobRegistered(_JobEvent):
    """A job was created, or a job with no workers got a new schema."""

    type: Literal["JobRegistered"] = "JobRegistered"
    room_id: str
    category: str
    name: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    on_worker_lost: RunningTaskPolicy = RunningTaskPolicy.FAIL
    max_worker_losses: int = 3
    by: str

    model_config = _JobEvent.model_config | {"populate_by_name": True}


class JobWorkerLinked(_JobEvent):
    type: Literal["JobWorkerLinked"] = "JobWorkerLinked"
    worker_id: str


class JobWorkerUnlinked(_JobEvent):
    type: Literal["JobWorkerUnlinked"] = "JobWorkerUnlinked"
    worker_id: str
    reason: str


# --- provider stream ------------------------------------------------------------


class ProviderRegistered(_ProviderEvent):
    """A provider was registered, or re-registered with a new schema, content type,
    worker or owner (the id stays while it lives)."""

    type: Literal["ProviderRegistered"] = "ProviderRegistered"
    provider_id: str
    room_id: str
    category: str
    name: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    content_type: str = "application/json"
    worker_id: str
    user: str
    by: str

    model_config = _ProviderEvent.model_config | {"populate_by_name": True}


class ProviderRemoved(_ProviderEvent):
    """Deleted by its owner or a superuser, or removed by its worker's end."""

    type: Literal["ProviderRemoved"] = "ProviderRemoved"
    provider_id: str
    worker_id: str
    reason: str
    by: str


# --- task stream ----------------------------------------------------------------


class TaskSubmitted(_TaskEvent):
    type: Literal["TaskSubmitted"] = "TaskSubmitted"
    job_name: str
    room_id: str
    payload: dict[str, Any] = Field(default_factory=dict)
    by: str
    request_hash: str | None = None  # the keyed submit request that created it


class TaskClaimed(_TaskEvent):
    type: Literal["TaskClaimed"] = "TaskClaimed"
    worker_id: str
    attempt: int


class TaskDispatched(_TaskEvent):
    """A task of an `@internal` job was claimed by the server for its internal executor
    (no worker holds it; the executor reports its status as the system)."""

    type: Literal["TaskDispatched"] = "TaskDispatched"
    attempt: int
    executor: str = "internal"


class TaskStarted(_TaskEvent):
    type: Literal["TaskStarted"] = "TaskStarted"
    worker_id: str | None  # None: run by the internal executor
    attempt: int


class TaskCompleted(_TaskEvent):
    type: Literal["TaskCompleted"] = "TaskCompleted"
    worker_id: str | None  # None: run by the internal executor
    attempt: int


class TaskFailed(_TaskEvent):
    type: Literal["TaskFailed"] = "TaskFailed"
    worker_id: str | None
    attempt: int
    error: str | None = None
    by: str


class TaskCancelled(_TaskEvent):
    type: Literal["TaskCancelled"] = "TaskCancelled"
    worker_id: str | None
    attempt: int
    error: str | None = None
    by: str


class TaskRequeued(_TaskEvent):
    """A held task went back to pending: its worker ended, (reason `claim-timeout`) the
    worker did not start it within the claim lease, or an operator requeued it (`by`;
    such a requeue is not a worker loss and costs nothing of `max_worker_losses`)."""

    type: Literal["TaskRequeued"] = "TaskRequeued"
    worker_id: str
    attempt: int
    reason: str
    was_running: bool
    by: str | None = None  # the operator of a RequeueTask; None: the system


class TaskReportRejected(_TaskEvent):
    """A stale report (old attempt or old worker) was refused; state is unchanged."""

    type: Literal["TaskReportRejected"] = "TaskReportRejected"
    worker_id: str | None
    attempt: int | None
    current_attempt: int
    requested: TaskStatus
    by: str


Event = Annotated[
    WorkerRegistered
    | WorkerJobLinked
    | HeartbeatRecorded
    | ConnectionAttached
    | RoomJoined
    | RoomLeft
    | WorkerDisconnected
    | WorkerResumed
    | WorkerDrainRequested
    | WorkerLost
    | WorkerLeft
    | WorkerDeleted
    | WorkerTaskAssigned
    | WorkerTaskReleased
    | WorkerProviderLinked
    | WorkerProviderUnlinked
    | ProviderRoomJoined
    | ProviderRoomLeft
    | JobRegistered
    | JobWorkerLinked
    | JobWorkerUnlinked
    | ProviderRegistered
    | ProviderRemoved
    | TaskSubmitted
    | TaskClaimed
    | TaskDispatched
    | TaskStarted
    | TaskCompleted
    | TaskFailed
    | TaskCancelled
    | TaskRequeued
    | TaskReportRejected,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
WORKER_ENDS = (WorkerLost, WorkerLeft, WorkerDeleted)
"""The events that end a worker (`isinstance(event, WORKER_ENDS)`)."""
EVENT_TYPES: dict[str, type[_Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        WorkerRegistered, WorkerJobLinked, HeartbeatRecorded, ConnectionAttached,
        RoomJoined, RoomLeft, WorkerDisconnected, WorkerResumed, WorkerLost, WorkerLeft,
        WorkerDeleted, WorkerTaskAssigned, WorkerTaskReleased, JobRegistered,
        JobWorkerLinked, JobWorkerUnlinked, TaskSubmitted, TaskClaimed, TaskStarted,
        TaskCompleted, TaskFailed, TaskCancelled, TaskRequeued, TaskReportRejected,
        WorkerProviderLinked, WorkerProviderUnlinked, ProviderRoomJoined, ProviderRoomLeft,
        ProviderRegistered, ProviderRemoved, TaskDispatched, WorkerDrainRequested,
    )
}  # fmt: skip


def event_to_json(event: Event) -> str:
    return event.model_dump_json(by_alias=True)


def event_from_json(data: str | bytes) -> Event:
    return EVENT_ADAPTER.validate_json(data)
