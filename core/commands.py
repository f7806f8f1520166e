"""Commands: what an adapter asks the core to decide. Imperative names.

Time (`now`) and new ids (`worker_id` of a registration, `task_id` of a submit)
always arrive on the command: the core never reads a clock or invents an id.
Policies that belong to the host (grace window, heartbeat timeout, categories)
arrive on the command too, so the log records decisions, not settings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, TypeAdapter

from .model import DEFAULT_CATEGORIES, SYSTEM, Actor, Frozen, RunningTaskPolicy, TaskStatus

DRAIN_DEADLINE_MAX_SECONDS = 366 * 86400.0
"""The longest drain deadline (a year): `now + deadline` must stay a valid datetime."""


class _Command(Frozen):
    now: AwareDatetime
    actor: Actor = SYSTEM


class RegisterWorker(_Command):
    type: Literal["RegisterWorker"] = "RegisterWorker"
    worker_id: str


class RegisterJob(_Command):
    """Register (or re-register) a job and link a worker to it.

    With `create_worker` the worker is created when it does not exist yet; a retry
    with the same `worker_id` then links the existing worker instead of a second one.
    """

    type: Literal["RegisterJob"] = "RegisterJob"
    room_id: str
    category: str
    name: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    worker_id: str
    create_worker: bool = False
    allowed_categories: tuple[str, ...] = DEFAULT_CATEGORIES
    on_worker_lost: RunningTaskPolicy = RunningTaskPolicy.FAIL
    max_worker_losses: int = Field(default=3, ge=0)
    request_hash: str | None = None  # digest of the request that carried an Idempotency-Key

    model_config = _Command.model_config | {"populate_by_name": True}


class RecordHeartbeat(_Command):
    type: Literal["RecordHeartbeat"] = "RecordHeartbeat"
    worker_id: str


class JoinJobRoom(_Command):
    """A Socket.IO connection announces it speaks for `worker_id` and joins a job room."""

    type: Literal["JoinJobRoom"] = "JoinJobRoom"
    worker_id: str
    sid: str
    job_name: str


class LeaveJobRoom(_Command):
    type: Literal["LeaveJobRoom"] = "LeaveJobRoom"
    worker_id: str
    sid: str
    job_name: str


class DisconnectWorker(_Command):
    """A Socket.IO connection closed. With `grace_seconds == 0` the worker is lost at once."""

    type: Literal["DisconnectWorker"] = "DisconnectWorker"
    worker_id: str
    sid: str
    reason: str
    grace_seconds: float = Field(ge=0)


class SweepWorker(_Command):
    """Sweeper check: end the worker if its grace expired or its heartbeat timed out.

    A no-op (no events) when neither holds, so racing sweepers are harmless.
    """

    type: Literal["SweepWorker"] = "SweepWorker"
    worker_id: str
    heartbeat_timeout_seconds: float = Field(gt=0)


class RemoveWorker(_Command):
    """`DELETE /workers/{id}`: the owner leaves, or a superuser deletes (with the
    operator's `reason`, if given, in the end event)."""

    type: Literal["RemoveWorker"] = "RemoveWorker"
    worker_id: str
    reason: str | None = None


class DrainWorker(_Command):
    """The owner or a superuser drains a worker: no new claims, finish, then leave.

    `deadline_seconds` (None: no deadline) bounds the drain; past it a sweep ends the
    worker and releases what it still holds per its job's policy.
    """

    type: Literal["DrainWorker"] = "DrainWorker"
    worker_id: str
    reason: str
    deadline_seconds: float | None = Field(default=None, ge=0, le=DRAIN_DEADLINE_MAX_SECONDS)


class SubmitTask(_Command):
    """Submit a task. With `request_hash` (an Idempotency-Key was sent, and `task_id`
    derives from it) a resend of the same request changes nothing and a different
    request under the same id is refused."""

    type: Literal["SubmitTask"] = "SubmitTask"
    task_id: str
    job_name: str
    room_id: str
    payload: dict[str, Any] = Field(default_factory=dict)
    request_hash: str | None = None


class ClaimTask(_Command):
    """Claim one pending task (the adapter picks the candidate from its read model)."""

    type: Literal["ClaimTask"] = "ClaimTask"
    task_id: str
    worker_id: str
    request_key: str | None = None  # Idempotency-Key: a resend replays the first claim


class ExpireClaim(_Command):
    """Claim lease check: requeue a CLAIMED task its worker has not started in time.

    A no-op (no events) when the task is no longer CLAIMED or the lease has time left,
    so racing sweepers are harmless.
    """

    type: Literal["ExpireClaim"] = "ExpireClaim"
    task_id: str
    claim_timeout_seconds: float = Field(gt=0)


class RegisterProvider(_Command):
    """Register a provider, or update the one of the same (room, category, name).

    `provider_id` is the id a new provider gets (an existing one keeps its own). With
    `create_worker` the worker `worker_id` is created for it when it does not exist.
    `allowed_categories` None allows any category.
    """

    type: Literal["RegisterProvider"] = "RegisterProvider"
    provider_id: str
    room_id: str
    category: str
    name: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    content_type: str = "application/json"
    worker_id: str
    create_worker: bool = False
    allowed_categories: tuple[str, ...] | None = None

    model_config = _Command.model_config | {"populate_by_name": True}


class RemoveProvider(_Command):
    """`DELETE /providers/{id}`: the owner or a superuser removes a provider."""

    type: Literal["RemoveProvider"] = "RemoveProvider"
    provider_name: str
    provider_id: str


class JoinProviderRoom(_Command):
    """A Socket.IO connection speaks for `worker_id` and joins its provider's room."""

    type: Literal["JoinProviderRoom"] = "JoinProviderRoom"
    worker_id: str
    sid: str
    provider_name: str


class LeaveProviderRoom(_Command):
    type: Literal["LeaveProviderRoom"] = "LeaveProviderRoom"
    worker_id: str
    sid: str
    provider_name: str


class RequeueTask(_Command):
    """An operator (the holder's owner or a superuser) puts a CLAIMED or RUNNING task
    back to PENDING; the old attempt is fenced off."""

    type: Literal["RequeueTask"] = "RequeueTask"
    task_id: str
    reason: str


class UpdateTask(_Command):
    """The `PATCH /tasks/{id}` status report: running, completed, failed or cancelled.

    `worker_id` and `attempt` are optional for zndraw-joblib 0.1.7 clients; when given
    they fence the report to the current claim.
    """

    type: Literal["UpdateTask"] = "UpdateTask"
    task_id: str
    status: TaskStatus
    error: str | None = None
    worker_id: str | None = None
    attempt: int | None = None


Command = Annotated[
    RegisterWorker
    | RegisterJob
    | RecordHeartbeat
    | JoinJobRoom
    | LeaveJobRoom
    | DisconnectWorker
    | SweepWorker
    | RemoveWorker
    | DrainWorker
    | SubmitTask
    | ClaimTask
    | ExpireClaim
    | UpdateTask
    | RequeueTask
    | RegisterProvider
    | RemoveProvider
    | JoinProviderRoom
    | LeaveProviderRoom,
    Field(discriminator="type"),
]

COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)
