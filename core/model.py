"""Value types shared by commands, events and state: statuses, actors, names."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Base of every core model: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


F = TypeVar("F", bound=Frozen)


def copy_with(model: F, update: dict[str, Any]) -> F:
    """`model.model_copy(update=update)`, the same copy without pydantic's generic path.

    Equal to it for a `Frozen` model (no extra fields, no private attributes): a new
    instance whose field values are the model's with `update` applied (not validated),
    and whose set fields are the model's plus the updated ones. The evolve step copies
    on every event, so this is on every command's path."""
    copied = model.__class__.__new__(model.__class__)
    _set(copied, "__dict__", {**model.__dict__, **update})
    _set(copied, "__pydantic_extra__", None)
    _set(copied, "__pydantic_fields_set__", model.__pydantic_fields_set__ | update.keys())
    _set(copied, "__pydantic_private__", None)
    return copied


def construct(cls: type[F], fields: dict[str, Any]) -> F:
    """`cls.model_construct(**fields)` for a `Frozen` model given all its fields (not
    validated), the same instance without pydantic's generic path."""
    built = cls.__new__(cls)
    _set(built, "__dict__", fields)
    _set(built, "__pydantic_extra__", None)
    _set(built, "__pydantic_fields_set__", set(fields))
    _set(built, "__pydantic_private__", None)
    return built


_set = object.__setattr__


class TaskStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_held(self) -> bool:
        """True while a worker holds the task (claimed or running)."""
        return self in (TaskStatus.CLAIMED, TaskStatus.RUNNING)


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

# The zndraw-joblib 0.1.7 PATCH table. `pending -> claimed` is only reachable through
# ClaimTask here (0.1.7 let a superuser PATCH it and left the task without a worker).
TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.CLAIMED, TaskStatus.CANCELLED}),
    TaskStatus.CLAIMED: frozenset({TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.RUNNING: frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}


class WorkerStatus(StrEnum):
    ONLINE = "online"  # registered; connected over Socket.IO or REST-only
    DISCONNECTED = "disconnected"  # socket dropped, inside the grace window
    LOST = "lost"  # grace expired, heartbeat timed out, or dropped with grace 0
    LEFT = "left"  # the owner removed it (client disconnect(), DELETE)
    DELETED = "deleted"  # a superuser removed another user's worker

    @property
    def is_ended(self) -> bool:
        return self in (WorkerStatus.LOST, WorkerStatus.LEFT, WorkerStatus.DELETED)


class RunningTaskPolicy(StrEnum):
    """What happens to a RUNNING task when its worker ends (CLAIMED ones always requeue)."""

    FAIL = "fail"
    REQUEUE = "requeue"


class Actor(Frozen):
    """Who issues a command: an authenticated user, possibly a superuser."""

    user: str
    superuser: bool = False


SYSTEM = Actor(user="@system", superuser=True)
"""The actor of the host's own detectors (Socket.IO disconnect, sweeper)."""

GLOBAL_ROOM = "@global"
INTERNAL_ROOM = "@internal"
DEFAULT_CATEGORIES = ("modifiers", "selections", "analysis")


def invalid_room_detail(room_id: str) -> str:
    """The refusal of an invalid room id, in zndraw-joblib 0.1.7's words."""
    if not room_id:
        return "Room ID must not be empty"
    return f"Room ID '{room_id}' contains invalid characters (@ or :)"


def invalid_job_name_detail(job_name: str) -> str:
    """The refusal of a malformed `room:category:name`, in zndraw-joblib 0.1.7's words."""
    return f"Invalid job name format: {job_name!r} (expected room:category:name)"


def room_of_provider(full_name: str) -> str:
    """The Socket.IO room a provider's worker joins to receive `provider_request`."""
    return f"providers:{full_name}"


WORKER_ENDED_ERROR = "Worker disconnected"
"""How a task failed by its worker's end begins its error (0.1.7 clients look for it)."""


def is_valid_room_id(room_id: str) -> bool:
    """Rooms are `@global`, `@internal`, or a non-empty id without `@` and `:`."""
    if room_id in (GLOBAL_ROOM, INTERNAL_ROOM):
        return True
    return bool(room_id) and "@" not in room_id and ":" not in room_id


def job_full_name(room_id: str, category: str, name: str) -> str:
    return f"{room_id}:{category}:{name}"


def split_job_name(full_name: str) -> tuple[str, str, str] | None:
    """Split `room:category:name` (the name may contain `:`); None if malformed."""
    parts = full_name.split(":", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def room_of_job(full_name: str) -> str:
    """The Socket.IO room that workers of a job join."""
    return f"jobs:{full_name}"


def room_of_watchers(room_id: str) -> str:
    """The Socket.IO room where a room's watchers receive status events."""
    return f"room:{room_id}"
