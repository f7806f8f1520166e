"""What a worker deals in: extensions (jobs as pydantic models), tasks and claims."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from .errors import TaskCancelledError

GLOBAL_ROOM = "@global"


class Category(StrEnum):
    """The job categories a host allows by default."""

    MODIFIER = "modifiers"
    SELECTION = "selections"
    ANALYSIS = "analysis"


class Extension(BaseModel):
    """A job: its fields are the task payload, its JSON schema is published on registration.

    Subclasses set `category` and may set `job_name` (default: the class name).
    `on_worker_lost` ("fail" or "requeue") and `max_worker_losses` choose what the
    server does with a RUNNING task whose worker is lost (server default: fail).
    `run` is optional; `execute` callables decide what to do with a claimed task.
    """

    category: ClassVar[str] = Category.MODIFIER
    job_name: ClassVar[str | None] = None
    on_worker_lost: ClassVar[str | None] = None
    max_worker_losses: ClassVar[int | None] = None

    @classmethod
    def name_of_job(cls) -> str:
        return cls.job_name or cls.__name__

    @classmethod
    def full_name(cls, room: str = GLOBAL_ROOM) -> str:
        return f"{room}:{cls.category!s}:{cls.name_of_job()}"

    def run(self, task: ClaimedTask[Any]) -> Any:
        """Override to do the work; check `task.cancelled` in long loops."""
        raise NotImplementedError(f"{type(self).__name__}.run is not implemented")


E = TypeVar("E", bound=Extension)


class TaskInfo(BaseModel):
    """A task as the server reports it (`TaskResponse` plus the `attempt` extension)."""

    model_config = ConfigDict(extra="allow")

    id: str
    job_name: str
    room_id: str
    status: str
    worker_id: str | None = None
    error: str | None = None
    payload: dict[str, Any] = {}
    attempt: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    queue_position: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


@dataclass(eq=False)
class ClaimedTask(Generic[E]):
    """A task this worker holds: its validated extension and its claim's fencing token.

    The cancellation flag is set when the server cancels the task (a `task_cancelled`
    event, or a status check) or when the manager shuts down; long-running work should
    check `cancelled` (or call `raise_if_cancelled()`) and stop early.
    """

    task_id: str
    job_name: str
    room_id: str
    attempt: int | None
    worker_id: str
    extension: E
    payload: dict[str, Any]
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    cancel_reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block up to `timeout` seconds; True once the task is cancelled."""
        return self._cancel.wait(timeout)

    def raise_if_cancelled(self) -> None:
        if self._cancel.is_set():
            raise TaskCancelledError(self.cancel_reason or "task cancelled")

    def mark_cancelled(self, reason: str | None) -> None:
        if not self._cancel.is_set():
            self.cancel_reason = reason
            self._cancel.set()
