"""Typed domain errors. Raising one means: the command changed nothing.

Each error has a stable `code` (kebab case); the REST adapter turns it into the
problem type `/v1/problems/<code>`, the Socket.IO adapter into an error ack.
A few rejections are worth keeping in the log (a stale completion attempt); those
errors carry the events to `record`, which change no state when folded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .events import Event


class DomainError(Exception):
    code: ClassVar[str] = "domain-error"

    def __init__(self, detail: str, *, record: Sequence[Event] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.record: tuple[Event, ...] = tuple(record)


class InvalidRoomIdError(DomainError):
    code = "invalid-room-id"


class InvalidCategoryError(DomainError):
    code = "invalid-category"


class ForbiddenError(DomainError):
    code = "forbidden"


class JobNotFoundError(DomainError):
    code = "job-not-found"


class WorkerNotFoundError(DomainError):
    """Unknown worker id, or a worker that has ended (lost, left, deleted)."""

    code = "worker-not-found"


class TaskNotFoundError(DomainError):
    code = "task-not-found"


class SchemaConflictError(DomainError):
    code = "schema-conflict"


class InvalidTransitionError(DomainError):
    code = "invalid-task-transition"


class StaleAttemptError(DomainError):
    """A worker reported on a claim that is no longer its own (fencing token mismatch)."""

    code = "stale-attempt"


class TaskNotPendingError(DomainError):
    """Claim of a task that another worker took first (or that ended)."""

    code = "task-not-pending"


class WorkerNotOnlineError(DomainError):
    """The worker is inside its disconnect grace window and may not claim."""

    code = "worker-not-online"


class WorkerDrainingError(DomainError):
    """The worker is being drained and claims nothing (a claim route answers no task)."""

    code = "worker-draining"


class JobNotLinkedError(DomainError):
    """The worker is not registered for the job it tried to use."""

    code = "job-not-linked"


class StaleSessionError(DomainError):
    """A Socket.IO connection that is not (or no longer) the worker's current one."""

    code = "stale-session"


class NotInRoomError(DomainError):
    code = "not-in-room"


class DuplicateIdError(DomainError):
    code = "duplicate-id"


class IdempotencyKeyReusedError(DomainError):
    """An Idempotency-Key was sent again with a different request (422)."""

    code = "idempotency-key-reused"


class ProviderNotFoundError(DomainError):
    """The provider is unknown, removed, not visible from the room, or the id is another's."""

    code = "provider-not-found"


class InternalJobNotConfiguredError(DomainError):
    """A task for an `@internal` job, and the host has no internal executor for it."""

    code = "internal-job-not-configured"


class RoomLockedError(DomainError):
    """The host's writable-room policy refused a write to a locked room."""

    code = "room-locked"
