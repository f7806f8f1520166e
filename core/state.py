"""The lifecycle state that events fold into. Frozen; replaced, never mutated.

`LedgerState` may hold the whole system (tests, replay) or only the streams a command
touches (the store loads a worker, its tasks and its jobs). Decisions only read the
entities named by the command and the ones those entities reference.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field

from .model import Frozen, RunningTaskPolicy, TaskStatus, WorkerStatus, construct, copy_with

CLAIM_KEYS_KEPT = 16
"""How many claim Idempotency-Keys a worker remembers (a client resends its latest)."""


class WorkerState(Frozen):
    id: str
    user: str
    status: WorkerStatus = WorkerStatus.ONLINE
    created_at: AwareDatetime
    last_heartbeat: AwareDatetime
    sid: str | None = None  # current Socket.IO connection, if any
    rooms: frozenset[str] = frozenset()  # job full names whose room the sid joined
    provider_rooms: frozenset[str] = frozenset()  # provider full names whose room it joined
    jobs: frozenset[str] = frozenset()  # job full names the worker is registered for
    tasks: frozenset[str] = frozenset()  # ids of tasks it holds (claimed or running)
    providers: frozenset[str] = frozenset()  # full names of the providers it serves
    disconnected_at: AwareDatetime | None = None
    disconnect_reason: str | None = None
    grace_deadline: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    end_reason: str | None = None
    request_hash: str | None = None  # of the keyed registration that created it
    claim_keys: tuple[tuple[str, str], ...] = ()  # (Idempotency-Key, task id), newest last
    # A drain is a sub-state of ONLINE / DISCONNECTED: no claims, no job rooms, ends
    # (left) once the worker holds nothing, or (lost) at the deadline.
    draining_since: AwareDatetime | None = None
    drain_deadline: AwareDatetime | None = None
    drain_reason: str | None = None
    drained_by: str | None = None

    @property
    def is_ended(self) -> bool:
        return self.status.is_ended

    @property
    def draining(self) -> bool:
        """True from the drain until the worker ends (and after: it was drained)."""
        return self.draining_since is not None

    def claimed_under(self, key: str) -> str | None:
        """The task this worker claimed with Idempotency-Key `key` (its last
        CLAIM_KEYS_KEPT claims are remembered), or None."""
        for claim_key, task_id in reversed(self.claim_keys):
            if claim_key == key:
                return task_id
        return None


class JobState(Frozen):
    full_name: str
    room_id: str
    category: str
    name: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    created_at: AwareDatetime
    workers: frozenset[str] = frozenset()  # linked workers that have not ended
    on_worker_lost: RunningTaskPolicy = RunningTaskPolicy.FAIL
    max_worker_losses: int = 3

    model_config = Frozen.model_config | {"populate_by_name": True}


class TaskState(Frozen):
    id: str
    job_name: str
    room_id: str  # the room the task was submitted to (may differ from the job's)
    payload: dict[str, Any] = Field(default_factory=dict)
    submitted_by: str
    status: TaskStatus = TaskStatus.PENDING
    created_at: AwareDatetime
    worker_id: str | None = None  # holder; kept once the task ends, cleared on requeue
    attempt: int = 0  # fencing token: increases with every claim
    attempt_workers: tuple[str, ...] = ()  # worker of attempt n at index n - 1
    claimed_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    error: str | None = None
    losses: int = 0  # RUNNING attempts interrupted by an ended worker
    requeues: int = 0
    request_hash: str | None = None  # of the keyed submit that created it


class ProviderState(Frozen):
    """A provider a worker serves: reads of `full_name` are dispatched to that worker.

    Owned by the worker: the worker's end removes it. A removed provider keeps its
    state (`removed_at`) so an old id is still recognised as gone; registering the
    same full name again starts it anew with a new id.
    """

    id: str
    full_name: str
    room_id: str
    category: str
    name: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    content_type: str = "application/json"
    user: str
    worker_id: str
    created_at: AwareDatetime
    removed_at: AwareDatetime | None = None
    removal_reason: str | None = None

    model_config = Frozen.model_config | {"populate_by_name": True}

    @property
    def is_live(self) -> bool:
        return self.removed_at is None


class LedgerState(Frozen):
    workers: dict[str, WorkerState] = Field(default_factory=dict)
    jobs: dict[str, JobState] = Field(default_factory=dict)
    tasks: dict[str, TaskState] = Field(default_factory=dict)
    providers: dict[str, ProviderState] = Field(default_factory=dict)

    @classmethod
    def of(
        cls,
        workers: dict[str, WorkerState],
        jobs: dict[str, JobState],
        tasks: dict[str, TaskState],
        providers: dict[str, ProviderState],
    ) -> LedgerState:
        """A state of these entities, not validated: `model_construct` with all four
        fields, for the partial states an adapter takes from its view on every command."""
        return construct(
            cls, {"workers": workers, "jobs": jobs, "tasks": tasks, "providers": providers}
        )

    def live_provider(self, full_name: str) -> ProviderState | None:
        provider = self.providers.get(full_name)
        return provider if provider is not None and provider.is_live else None

    def with_provider(self, provider: ProviderState) -> LedgerState:
        return copy_with(self, {"providers": {**self.providers, provider.full_name: provider}})

    def with_worker(self, worker: WorkerState) -> LedgerState:
        return copy_with(self, {"workers": {**self.workers, worker.id: worker}})

    def with_job(self, job: JobState) -> LedgerState:
        return copy_with(self, {"jobs": {**self.jobs, job.full_name: job}})

    def with_task(self, task: TaskState) -> LedgerState:
        return copy_with(self, {"tasks": {**self.tasks, task.id: task}})


def later(a: datetime | None, b: datetime) -> datetime:
    """The later of two instants (None counts as never)."""
    return b if a is None or b > a else a
