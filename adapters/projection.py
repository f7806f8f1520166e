"""The host's materialized view of the log: every entity's current state and version.

Built by folding the log (`apply`), kept current by tailing it, and used both to
answer queries and to hand the core the partial state a command needs (`scope`).
Entities are kept in plain dicts and replaced per event, so applying an event costs
the same whatever the size of the system. Pending tasks are indexed per job by log
position (FIFO), which keeps claims and queue positions O(log n).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from datetime import datetime

from workerledger.core import (
    ClaimTask,
    Command,
    DisconnectWorker,
    Event,
    ExpireClaim,
    JobState,
    JoinJobRoom,
    LedgerState,
    RegisterJob,
    RemoveWorker,
    SubmitTask,
    SweepWorker,
    TaskState,
    TaskStatus,
    UpdateTask,
    WorkerState,
    evolve,
    job_full_name,
)
from workerledger.core.decide_tasks import claim_expired
from workerledger.core.decide_workers import sweep_reason
from workerledger.core.events import HeartbeatRecorded

from .ports import StoredEvent


class Projection:
    def __init__(self) -> None:
        self.workers: dict[str, WorkerState] = {}
        self.jobs: dict[str, JobState] = {}
        self.tasks: dict[str, TaskState] = {}
        self.versions: dict[str, int] = {}
        self.position = 0  # last log position applied
        self.liveness_counter = 0
        self.task_seq: dict[str, int] = {}  # task id -> position of its submission
        self.pending: dict[str, list[int]] = {}  # job -> sorted submission positions
        self.seq_task: dict[int, str] = {}
        self.room_tasks: dict[str, list[str]] = {}  # room id -> task ids, oldest first
        self.worker_order: list[str] = []  # registration order

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
        kind, _, key = event.stream.partition(":")
        before_task = self.tasks.get(key) if kind == "task" else None
        state = LedgerState.model_construct(
            workers={key: self.workers[key]} if kind == "worker" and key in self.workers else {},
            jobs={key: self.jobs[key]} if kind == "job" and key in self.jobs else {},
            tasks={key: before_task} if before_task is not None else {},
        )
        after = evolve(state, event)
        if kind == "worker" and key in after.workers:
            if key not in self.workers:
                self.worker_order.append(key)
            self.workers[key] = after.workers[key]
        elif kind == "job" and key in after.jobs:
            self.jobs[key] = after.jobs[key]
        elif kind == "task" and key in after.tasks:
            self._index_task(before_task, after.tasks[key], position)

    def _index_task(self, before: TaskState | None, after: TaskState, position: int) -> None:
        self.tasks[after.id] = after
        if before is None:
            self.task_seq[after.id] = position
            self.seq_task[position] = after.id
            self.room_tasks.setdefault(after.room_id, []).append(after.id)
        was_pending = before is not None and before.status is TaskStatus.PENDING
        is_pending = after.status is TaskStatus.PENDING
        seq = self.task_seq[after.id]
        queue = self.pending.setdefault(after.job_name, [])
        if is_pending and not was_pending:
            insort(queue, seq)
        elif was_pending and not is_pending:
            index = bisect_left(queue, seq)
            if index < len(queue) and queue[index] == seq:
                del queue[index]

    # --- what a command needs ---------------------------------------------------------

    def scope(self, command: Command) -> LedgerState:
        """The partial state `command` reads: named entities and what they reference."""
        workers: dict[str, WorkerState] = {}
        jobs: dict[str, JobState] = {}
        tasks: dict[str, TaskState] = {}

        def add_worker(worker_id: str | None, *, with_tasks: bool = False) -> None:
            worker = self.workers.get(worker_id) if worker_id else None
            if worker is None:
                return
            workers[worker.id] = worker
            for job_name in worker.jobs:
                add_job(job_name)
            if with_tasks:
                for task_id in worker.tasks:
                    add_task(task_id)

        def add_job(job_name: str) -> None:
            if job_name in self.jobs:
                jobs[job_name] = self.jobs[job_name]

        def add_task(task_id: str) -> None:
            task = self.tasks.get(task_id)
            if task is not None:
                tasks[task_id] = task
                add_job(task.job_name)

        match command:
            case RegisterJob():
                add_worker(command.worker_id)
                add_job(job_full_name(command.room_id, command.category, command.name))
            case JoinJobRoom():
                add_worker(command.worker_id)
                add_job(command.job_name)
            case DisconnectWorker() | SweepWorker() | RemoveWorker():
                add_worker(command.worker_id, with_tasks=True)
            case SubmitTask():
                add_job(command.job_name)
                add_task(command.task_id)
            case ClaimTask():
                add_worker(command.worker_id)
                add_task(command.task_id)
            case ExpireClaim():
                add_task(command.task_id)
                task = self.tasks.get(command.task_id)
                add_worker(task.worker_id if task else None)
            case UpdateTask():
                add_task(command.task_id)
                task = self.tasks.get(command.task_id)
                add_worker(task.worker_id if task else None)
                if command.worker_id:
                    add_worker(command.worker_id)
            case _:
                add_worker(getattr(command, "worker_id", None))
        return LedgerState.model_construct(workers=workers, jobs=jobs, tasks=tasks)

    def version(self, stream: str) -> int:
        return self.versions.get(stream, 0)

    # --- queries used by the adapters ------------------------------------------------

    def queue_position(self, task_id: str) -> int | None:
        task = self.tasks.get(task_id)
        if task is None or task.status is not TaskStatus.PENDING:
            return None
        queue = self.pending.get(task.job_name, [])
        return bisect_left(queue, self.task_seq[task_id]) + 1

    def pending_count(self, job_name: str) -> int:
        return len(self.pending.get(job_name, ()))

    def claim_candidates(self, worker_id: str, limit: int = 8) -> list[str]:
        """Oldest pending tasks over the worker's jobs (FIFO by submission)."""
        worker = self.workers.get(worker_id)
        if worker is None:
            return []
        heads: list[int] = []
        for job_name in worker.jobs:
            heads.extend(self.pending.get(job_name, [])[:limit])
        return [self.seq_task[seq] for seq in sorted(heads)[:limit]]

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
