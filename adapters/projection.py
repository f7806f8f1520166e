"""The host's materialized view of the log: every entity's current state and version.

Built by folding the log (`apply`), kept current by tailing it, and used both to
answer queries and to hand the core the partial state a command needs (`scope`).
Entities are kept in plain dicts and replaced per event, so applying an event costs
the same whatever the size of the system. Pending tasks are indexed per job by log
position (FIFO), which keeps claims and queue positions O(log n).

The indexes (underscored) are the projection's own: adapters read the view through
the named queries below (`worker`, `tasks_in_room`, `queue_position`, ...), so an
index can change without touching a route or a handler.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, Self

from workerledger.core import (
    GLOBAL_ROOM,
    ClaimTask,
    Command,
    DisconnectWorker,
    DrainWorker,
    Event,
    ExpireClaim,
    HeartbeatRecorded,
    JobState,
    JoinJobRoom,
    JoinProviderRoom,
    LeaveProviderRoom,
    LedgerState,
    ProviderState,
    RegisterJob,
    RegisterProvider,
    RemoveProvider,
    RemoveWorker,
    RequeueTask,
    Stream,
    StreamKind,
    SubmitTask,
    SweepWorker,
    TaskState,
    TaskStatus,
    UpdateTask,
    WorkerState,
    WorkerStatus,
    claim_expired,
    evolve_job,
    evolve_provider,
    evolve_task,
    evolve_worker,
    job_full_name,
    sweep_reason,
)

from .ports import StoredEvent


class Projection:
    def __init__(self) -> None:
        self.workers: dict[str, WorkerState] = {}
        self.jobs: dict[str, JobState] = {}
        self.tasks: dict[str, TaskState] = {}
        self.providers: dict[str, ProviderState] = {}  # full name -> state (removed kept)
        self.versions: dict[str, int] = {}
        self.position = 0  # last log position applied
        self.liveness_counter = 0
        self._task_seq: dict[str, int] = {}  # task id -> position of its submission
        self._pending: dict[str, list[int]] = {}  # job -> sorted submission positions
        self._seq_task: dict[int, str] = {}
        self._room_tasks: dict[str, list[str]] = {}  # room id -> task ids, oldest first
        self._worker_order: list[str] = []  # registration order
        self._provider_ids: dict[str, str] = {}  # live provider id -> full name

    @classmethod
    def restore(
        cls,
        *,
        position: int,
        workers: Iterable[tuple[WorkerState, int]],
        jobs: Iterable[tuple[JobState, int]],
        tasks: Iterable[tuple[TaskState, int, int]],
        providers: Iterable[tuple[ProviderState, int]] = (),
    ) -> Self:
        """A view at log `position` holding entities read back from a checkpoint.

        `workers` are (state, stream version) in registration order, `jobs` and
        `providers` (state, version), `tasks` (state, version, log position of the
        submission). The indexes
        are built here by the same code `apply` keeps them with, so a restored view
        answers exactly as the fold it was checkpointed from (the read-model tables).
        """
        view = cls()
        view.position = position
        for worker, version in workers:
            view.workers[worker.id] = worker
            view._worker_order.append(worker.id)
            view.versions[Stream.worker(worker.id).text] = version
        for job, version in jobs:
            view.jobs[job.full_name] = job
            view.versions[Stream.job(job.full_name).text] = version
        for task, version, submitted in sorted(tasks, key=lambda entry: entry[2]):
            view._index_task(None, task, submitted)
            view.versions[Stream.task(task.id).text] = version
        for provider, version in providers:
            view._index_provider(provider)
            view.versions[Stream.provider(provider.full_name).text] = version
        return view

    # --- applying -------------------------------------------------------------------

    def apply(self, stored: StoredEvent) -> None:
        """Fold one stored event (in log order) into the view."""
        self._apply_event(stored.event, stored.position)
        self.versions[stored.stream] = stored.version
        self.position = max(self.position, stored.position)

    def apply_heartbeat(self, worker_id: str, at: datetime) -> None:
        if worker_id in self.workers:
            self._apply_event(HeartbeatRecorded(worker_id=worker_id, at=at), self.position)

    def _apply_event(self, event: Event, position: int) -> None:
        # the core's step for the event's own entity (what `evolve` does on a state)
        kind, key = event.stream_kind, event.stream_key
        if kind is StreamKind.TASK:
            before_task = self.tasks.get(key)
            task = evolve_task(before_task, event)
            if task is not None:
                self._index_task(before_task, task, position)
        elif kind is StreamKind.WORKER:
            worker = evolve_worker(self.workers.get(key), event)
            if worker is not None:
                if key not in self.workers:
                    self._worker_order.append(key)
                self.workers[key] = worker
        elif kind is StreamKind.JOB:
            job = evolve_job(self.jobs.get(key), event)
            if job is not None:
                self.jobs[key] = job
        elif kind is StreamKind.PROVIDER:
            provider = evolve_provider(self.providers.get(key), event)
            if provider is not None:
                self._index_provider(provider)

    def _index_provider(self, provider: ProviderState) -> None:
        before = self.providers.get(provider.full_name)
        if before is not None:
            self._provider_ids.pop(before.id, None)
        self.providers[provider.full_name] = provider
        if provider.is_live:
            self._provider_ids[provider.id] = provider.full_name

    def _index_task(self, before: TaskState | None, after: TaskState, position: int) -> None:
        self.tasks[after.id] = after
        if before is None:
            self._task_seq[after.id] = position
            self._seq_task[position] = after.id
            self._room_tasks.setdefault(after.room_id, []).append(after.id)
        was_pending = before is not None and before.status is TaskStatus.PENDING
        is_pending = after.status is TaskStatus.PENDING
        seq = self._task_seq[after.id]
        queue = self._pending.setdefault(after.job_name, [])
        if is_pending and not was_pending:
            insort(queue, seq)
        elif was_pending and not is_pending:
            index = bisect_left(queue, seq)
            if index < len(queue) and queue[index] == seq:
                del queue[index]

    # --- what a command needs ---------------------------------------------------------

    def scope(self, command: Command) -> LedgerState:
        """The partial state `command` reads: named entities and what they reference."""
        scope = _Scope(self)
        _scope_step(type(command))(scope, command)
        return LedgerState.of(
            workers=scope.workers, jobs=scope.jobs, tasks=scope.tasks, providers=scope.providers
        )

    def version(self, stream: str | Stream) -> int:
        """The stream's version in the view (0: no events yet), the append's expectation."""
        return self.versions.get(str(stream), 0)

    # --- entities ---------------------------------------------------------------------

    def worker(self, worker_id: str) -> WorkerState | None:
        return self.workers.get(worker_id)

    def job(self, job_name: str) -> JobState | None:
        return self.jobs.get(job_name)

    def task(self, task_id: str) -> TaskState | None:
        return self.tasks.get(task_id)

    def live_workers(self) -> list[WorkerState]:
        """Workers that have not ended, newest first (by registration)."""
        workers = (self.workers[worker_id] for worker_id in reversed(self._worker_order))
        return [worker for worker in workers if not worker.is_ended]

    def online_workers_on(self, sids: Collection[str]) -> list[WorkerState]:
        """ONLINE workers whose current connection is one of `sids`."""
        return [
            worker
            for worker in self.workers.values()
            if worker.sid in sids and worker.status is WorkerStatus.ONLINE
        ]

    def jobs_in(self, rooms: Collection[str]) -> list[JobState]:
        """The jobs registered in `rooms`, newest first (by first registration)."""
        return [job for job in reversed(self.jobs.values()) if job.room_id in rooms]

    def tasks_in_room(self, room_id: str, status: TaskStatus | None = None) -> list[TaskState]:
        """Tasks submitted to `room_id` (with `status`, if given), newest first."""
        tasks = (self.tasks[task_id] for task_id in reversed(self._room_tasks.get(room_id, [])))
        return [task for task in tasks if status is None or task.status is status]

    def tasks_of_job_in_room(
        self, room_id: str, job_name: str, status: TaskStatus | None = None
    ) -> list[TaskState]:
        """Tasks of `job_name` submitted to `room_id` (with `status`), newest first."""
        return [task for task in self.tasks_in_room(room_id, status) if task.job_name == job_name]

    # --- providers ------------------------------------------------------------------

    def provider(self, full_name: str) -> ProviderState | None:
        """The live provider of that full name, or None."""
        provider = self.providers.get(full_name)
        return provider if provider is not None and provider.is_live else None

    def provider_by_id(self, provider_id: str) -> ProviderState | None:
        """The live provider with that id, or None (a removed provider's id is unknown)."""
        full_name = self._provider_ids.get(provider_id)
        return self.providers[full_name] if full_name is not None else None

    def providers_visible_from(self, room_id: str) -> list[ProviderState]:
        """Live providers of `room_id` and `@global`, newest first (0.1.7's visibility:
        from `@global` only its own)."""
        rooms = {GLOBAL_ROOM, room_id}
        live = [
            provider
            for provider in self.providers.values()
            if provider.is_live and provider.room_id in rooms
        ]
        return sorted(live, key=lambda provider: provider.created_at, reverse=True)

    # --- the queue --------------------------------------------------------------------

    def queue_position(self, task_id: str) -> int | None:
        """The rank (1 = next) of a pending task in its job's FIFO queue; None otherwise."""
        task = self.tasks.get(task_id)
        if task is None or task.status is not TaskStatus.PENDING:
            return None
        queue = self._pending.get(task.job_name, [])
        return bisect_left(queue, self._task_seq[task_id]) + 1

    def pending_count(self, job_name: str) -> int:
        return len(self._pending.get(job_name, ()))

    def oldest_pending(self, job_name: str) -> TaskState | None:
        """The task a claim for `job_name` would take next (FIFO), if any."""
        queue = self._pending.get(job_name)
        return self.tasks[self._seq_task[queue[0]]] if queue else None

    def claim_candidates(self, worker_id: str, limit: int = 8) -> list[str]:
        """Oldest pending tasks over the worker's jobs (FIFO by submission)."""
        worker = self.workers.get(worker_id)
        if worker is None:
            return []
        heads: list[int] = []
        for job_name in worker.jobs:
            heads.extend(self._pending.get(job_name, [])[:limit])
        return [self._seq_task[seq] for seq in sorted(heads)[:limit]]

    # --- what the sweeper acts on -----------------------------------------------------

    def sweep_candidates(self, now: datetime, heartbeat_timeout_seconds: float) -> list[str]:
        """Workers a SweepWorker would end now (the core's own rule; it re-checks each)."""
        return [
            worker.id
            for worker in self.workers.values()
            if sweep_reason(worker, now, heartbeat_timeout_seconds) is not None
        ]

    def expired_claims(self, now: datetime, claim_timeout_seconds: float) -> list[str]:
        """CLAIMED tasks whose lease ran out (the core's own rule; it re-checks each).

        Only tasks held by live workers can be CLAIMED, so this walks held tasks only.
        """
        return [
            task_id
            for worker in self.workers.values()
            for task_id in sorted(worker.tasks)
            if (task := self.tasks.get(task_id)) is not None
            and claim_expired(task, now, claim_timeout_seconds) is not None
        ]

    # --- the order the read-model tables keep -----------------------------------------

    def registration_order(self) -> Sequence[str]:
        """Worker ids, oldest registration first (read-only)."""
        return tuple(self._worker_order)

    def submission_positions(self) -> Mapping[str, int]:
        """Task id -> log position of its submission, the FIFO key (read-only)."""
        return MappingProxyType(self._task_seq)

    # --- the operator console ---------------------------------------------------------

    def workers_newest_first(self) -> Iterable[WorkerState]:
        """Every worker, ended ones too, newest registration first (lazy: consume it on
        the ledger's thread, within the query)."""
        return (self.workers[worker_id] for worker_id in reversed(self._worker_order))

    def tasks_newest_first(self, room_id: str | None = None) -> Iterable[TaskState]:
        """Tasks (submitted to `room_id`, if given), newest submission first (lazy)."""
        ids = (
            reversed(self._room_tasks.get(room_id, []))
            if room_id is not None
            else reversed(self._seq_task.values())
        )
        return (self.tasks[task_id] for task_id in ids)


class _Scope:
    """The entities a command reads, gathered from a view (`Projection.scope`)."""

    __slots__ = ("jobs", "providers", "tasks", "view", "workers")

    def __init__(self, view: Projection) -> None:
        self.view = view
        self.workers: dict[str, WorkerState] = {}
        self.jobs: dict[str, JobState] = {}
        self.tasks: dict[str, TaskState] = {}
        self.providers: dict[str, ProviderState] = {}

    def add_worker(self, worker_id: str | None, *, with_tasks: bool = False) -> None:
        worker = self.view.workers.get(worker_id) if worker_id else None
        if worker is None:
            return
        self.workers[worker.id] = worker
        for job_name in worker.jobs:
            self.add_job(job_name)
        if with_tasks:
            for task_id in worker.tasks:
                self.add_task(task_id)
            for provider_name in worker.providers:
                self.add_provider(provider_name)

    def add_provider(self, provider_name: str) -> None:
        provider = self.view.providers.get(provider_name)
        if provider is not None:
            self.providers[provider_name] = provider
            if provider.is_live and provider.worker_id not in self.workers:
                self.add_worker(provider.worker_id)

    def add_job(self, job_name: str) -> None:
        job = self.view.jobs.get(job_name)
        if job is not None:
            self.jobs[job_name] = job

    def add_task(self, task_id: str) -> None:
        task = self.view.tasks.get(task_id)
        if task is not None:
            self.tasks[task_id] = task
            self.add_job(task.job_name)


def _scope_register_job(scope: _Scope, command: RegisterJob) -> None:
    scope.add_worker(command.worker_id)
    scope.add_job(job_full_name(command.room_id, command.category, command.name))


def _scope_join_job_room(scope: _Scope, command: JoinJobRoom) -> None:
    scope.add_worker(command.worker_id)
    scope.add_job(command.job_name)


def _scope_worker_end(
    scope: _Scope, command: DisconnectWorker | SweepWorker | RemoveWorker | DrainWorker
) -> None:
    scope.add_worker(command.worker_id, with_tasks=True)


def _scope_submit(scope: _Scope, command: SubmitTask) -> None:
    scope.add_job(command.job_name)
    scope.add_task(command.task_id)


def _scope_claim(scope: _Scope, command: ClaimTask) -> None:
    scope.add_worker(command.worker_id)
    scope.add_task(command.task_id)


def _scope_task_report(scope: _Scope, command: ExpireClaim | UpdateTask | RequeueTask) -> None:
    scope.add_task(command.task_id)
    task = scope.view.tasks.get(command.task_id)
    holder = scope.view.workers.get(task.worker_id) if task and task.worker_id else None
    # a draining holder may end in this decision: it needs its providers
    scope.add_worker(holder.id if holder else None, with_tasks=bool(holder and holder.draining))
    if isinstance(command, UpdateTask) and command.worker_id:
        scope.add_worker(command.worker_id)


def _scope_register_provider(scope: _Scope, command: RegisterProvider) -> None:
    scope.add_worker(command.worker_id)
    scope.add_provider(job_full_name(command.room_id, command.category, command.name))


def _scope_remove_provider(scope: _Scope, command: RemoveProvider) -> None:
    scope.add_provider(command.provider_name)


def _scope_provider_room(scope: _Scope, command: JoinProviderRoom | LeaveProviderRoom) -> None:
    scope.add_worker(command.worker_id)
    scope.add_provider(command.provider_name)


def _scope_worker(scope: _Scope, command: Command) -> None:
    scope.add_worker(getattr(command, "worker_id", None))


_ScopeStep = Callable[[_Scope, Any], None]
_SCOPE_STEPS: dict[type, _ScopeStep] = {
    RegisterJob: _scope_register_job,
    JoinJobRoom: _scope_join_job_room,
    DisconnectWorker: _scope_worker_end,
    SweepWorker: _scope_worker_end,
    RemoveWorker: _scope_worker_end,
    DrainWorker: _scope_worker_end,
    SubmitTask: _scope_submit,
    ClaimTask: _scope_claim,
    ExpireClaim: _scope_task_report,
    UpdateTask: _scope_task_report,
    RequeueTask: _scope_task_report,
    RegisterProvider: _scope_register_provider,
    RemoveProvider: _scope_remove_provider,
    JoinProviderRoom: _scope_provider_room,
    LeaveProviderRoom: _scope_provider_room,
}


def _scope_step(command_type: type) -> _ScopeStep:
    """The scope step of a command type (of its nearest listed base, as a class pattern
    would match; else the named worker alone), remembered per type."""
    step = _SCOPE_STEPS.get(command_type)
    if step is None:
        step = next(
            (_SCOPE_STEPS[base] for base in command_type.__mro__ if base in _SCOPE_STEPS),
            _scope_worker,
        )
        _SCOPE_STEPS[command_type] = step
    return step
