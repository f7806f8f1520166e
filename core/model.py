"""Value types shared by commands, events and state: statuses, actors, names."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, StrEnum
from typing import Any, TypeVar, cast

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
    values = model.__dict__.copy()
    values.update(update)
    return _instance(model.__class__, values, model.__pydantic_fields_set__.union(update))


def construct(cls: type[F], fields: dict[str, Any]) -> F:
    """`cls.model_construct(**fields)` for a `Frozen` model given all its fields (not
    validated), the same instance without pydantic's generic path."""
    return _instance(cls, fields, set(fields))


def build(cls: type[F], given: dict[str, Any]) -> F:
    """`cls(**given)` for values that are valid as they are (not validated): the model's
    defaults fill the fields not given, and the set fields are the given ones, as
    validation would make them. Only for values the core built from validated ones."""
    template, factories, required = _defaults_of(cls)
    if not required <= given.keys() <= template.keys():
        raise TypeError(f"{cls.__name__}: fields {sorted(given)} do not build it")
    fields = template.copy()  # every field, in declaration order
    fields.update(given)
    for name, factory in factories:
        if name not in given:
            fields[name] = factory()
    return _instance(cls, fields, set(given))


_Defaults = tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...], frozenset[str]]
_DEFAULTS: dict[type[BaseModel], _Defaults] = {}
_IMMUTABLE = (str, int, float, bool, frozenset, tuple, Enum, type(None))


def _defaults_of(cls: type[BaseModel]) -> _Defaults:
    found = _DEFAULTS.get(cls)
    if found is not None:
        return found
    template: dict[str, Any] = {}
    factories: list[tuple[str, Callable[[], Any]]] = []
    required: set[str] = set()
    for name, field in cls.model_fields.items():
        template[name] = None
        if field.default_factory is not None:
            if field.default_factory_takes_validated_data:
                raise TypeError(f"{cls.__name__}.{name}: a factory of the data cannot be built")
            factories.append((name, cast(Callable[[], Any], field.default_factory)))
        elif field.is_required():
            required.add(name)
        elif isinstance(field.default, _IMMUTABLE):  # pydantic would copy a mutable one
            template[name] = field.default
        else:
            raise TypeError(f"{cls.__name__}.{name}: a mutable default cannot be built")
    found = _DEFAULTS[cls] = (template, tuple(factories), frozenset(required))
    return found


_set = object.__setattr__
_new = object.__new__  # no core model defines __new__


def _instance(cls: type[F], values: dict[str, Any], fields_set: set[str]) -> F:
    """An instance of `cls` holding `values` as they are (no validation)."""
    built = _new(cls)
    _set(built, "__dict__", values)
    _set(built, "__pydantic_extra__", None)
    _set(built, "__pydantic_fields_set__", fields_set)
    _set(built, "__pydantic_private__", None)
    return built


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
