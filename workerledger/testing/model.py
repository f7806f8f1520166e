"""`LifecycleModel`: the pure core as an oracle for a host's observable behaviour.

The model holds a `LedgerState` and the log of accepted events, and runs each action
through `workerledger.core.handle` (decide, evolve, emissions). Time and ids are passed
in on every call (the model has no clock and mints no ids), so a caller drives it with
the instants and the ids the host under test chose. For each action it answers what
the host must do: accept it (and which events and emissions follow) or refuse it (and
with which error code), and from its state what the host's REST listings must show and
which task a claim must take next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from workerledger.core import (
    DEFAULT_CATEGORIES,
    Actor,
    Command,
    DisconnectWorker,
    DomainError,
    Emission,
    Emit,
    Event,
    ExpireClaim,
    LedgerState,
    RecordHeartbeat,
    RunningTaskPolicy,
    SubmitTask,
    SweepWorker,
    TaskState,
    TaskStatus,
    TaskSubmitted,
    WorkerState,
    WorkerStatus,
    claim_expired,
    fold,
    handle,
    room_of_watchers,
    sweep_reason,
)


@dataclass(frozen=True)
class ModelPolicy:
    """The host policies the model decides with (the host's own settings).

    `grace_seconds`: how long a dropped worker keeps its claims (0: released at once).
    `claim_timeout_seconds`: the claim lease (None: none). `on_worker_lost` and
    `max_worker_losses`: what the jobs the machine registers ask for a RUNNING task of
    an ended worker. `heartbeat_timeout_seconds`: when a silent worker is lost.
    `sweep_interval_seconds`: how late after a deadline the host may act on it.
    `refreshes_connected`: the host's sweeper records a heartbeat for every online
    worker whose connection it holds (the reference sweeper does), so a connected worker
    never times out; a worker without one is lost once it was silent for
    `heartbeat_timeout_seconds`.
    """

    grace_seconds: float = 0.0
    claim_timeout_seconds: float | None = None
    heartbeat_timeout_seconds: float = 60.0
    sweep_interval_seconds: float = 5.0
    on_worker_lost: RunningTaskPolicy = RunningTaskPolicy.REQUEUE
    max_worker_losses: int = 3
    allowed_categories: tuple[str, ...] = DEFAULT_CATEGORIES
    refreshes_connected: bool = True


ZNDRAW_JOBLIB_017 = ModelPolicy(
    grace_seconds=0.0, claim_timeout_seconds=None, on_worker_lost=RunningTaskPolicy.FAIL
)
"""zndraw-joblib 0.1.7's promises: no grace window, no claim lease, a RUNNING task of a
worker that is gone fails (never requeued)."""


@dataclass(frozen=True)
class Outcome:
    """What the host must do with one action: accept it (`refused` None) or refuse it
    with the core's error code; the events it records and the emissions it sends."""

    command: Command
    refused: str | None
    events: tuple[Event, ...] = ()
    emissions: tuple[Emission, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.refused is None


@dataclass(frozen=True)
class TaskView:
    """The fields of a task a host's REST listing must show as the model does."""

    id: str
    job_name: str
    room_id: str
    status: str
    worker_id: str | None
    attempt: int
    failed: bool  # error is set

    @classmethod
    def of(cls, task: TaskState) -> TaskView:
        return cls(
            id=task.id,
            job_name=task.job_name,
            room_id=task.room_id,
            status=task.status.value,
            worker_id=task.worker_id,
            attempt=task.attempt,
            failed=task.error is not None,
        )


@dataclass(frozen=True)
class JobView:
    full_name: str
    workers: frozenset[str]


@dataclass
class LifecycleModel:
    """The core as an oracle. `apply(command)` decides like a host must; the views say
    what the host must list. Ids and `now` arrive on the commands."""

    policy: ModelPolicy = field(default_factory=ModelPolicy)
    state: LedgerState = field(default_factory=LedgerState)
    log: list[Event] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    _pending_at: dict[str, int] = field(default_factory=dict)  # task id -> log position

    def apply(self, command: Command) -> Outcome:
        """Decide `command`; on acceptance fold its events in. A refusal changes nothing
        (a stale report is recorded, as a host records it).

        One host rule sits before the core: a submit to a job that no listing shows (no
        live worker, no pending task: zndraw-joblib 0.1.7's orphan rule) is refused as
        `job-not-found`, as the REST routes resolve the job from the listing."""
        if isinstance(command, SubmitTask) and command.job_name in self.state.jobs:
            job = self.state.jobs[command.job_name]
            if command.task_id not in self.state.tasks and not self._listed(job.full_name):
                outcome = Outcome(command, refused="job-not-found")
                self.outcomes.append(outcome)
                return outcome
        try:
            decision = handle(self.state, command)
        except DomainError as error:
            if error.record:  # a TaskReportRejected: recorded, folds to nothing
                self.log.extend(error.record)
                self.state = fold(error.record, self.state)
            outcome = Outcome(command, refused=error.code)
        else:
            self.state = decision.state
            for event in decision.events:
                self.log.append(event)
                if isinstance(event, TaskSubmitted):
                    self._pending_at[event.task_id] = len(self.log)
            outcome = Outcome(command, None, decision.events, decision.emissions)
        self.outcomes.append(outcome)
        return outcome

    # --- predictions ------------------------------------------------------------------

    def next_claim(self, worker_id: str) -> str | None:
        """The task a claim by `worker_id` takes: the oldest pending task of the worker's
        jobs, by submission (a requeued task keeps its place in the line)."""
        worker = self.state.workers.get(worker_id)
        if worker is None:
            return None
        pending = [
            task.id
            for task in self.state.tasks.values()
            if task.status is TaskStatus.PENDING and task.job_name in worker.jobs
        ]
        return min(pending, key=lambda task_id: self._pending_at[task_id], default=None)

    def live_workers(self) -> dict[str, WorkerState]:
        return {w.id: w for w in self.state.workers.values() if not w.is_ended}

    def tasks(self, room_id: str | None = None) -> dict[str, TaskView]:
        return {
            task.id: TaskView.of(task)
            for task in self.state.tasks.values()
            if room_id is None or task.room_id == room_id
        }

    def _listed(self, job_name: str) -> bool:
        job = self.state.jobs.get(job_name)
        if job is None:
            return False
        return bool(job.workers) or any(
            t.status is TaskStatus.PENDING and t.job_name == job_name
            for t in self.state.tasks.values()
        )

    def listed_jobs(self, room_id: str) -> dict[str, JobView]:
        """Jobs of `room_id` a listing shows: with a live worker or a pending task
        (zndraw-joblib 0.1.7's orphan rule)."""
        return {
            job.full_name: JobView(job.full_name, job.workers)
            for job in self.state.jobs.values()
            if job.room_id == room_id and self._listed(job.full_name)
        }

    def watcher_emissions(self, outcome: Outcome, room_id: str) -> list[Emit]:
        """The emissions of `outcome` that a watcher of `room_id` receives."""
        room = room_of_watchers(room_id)
        return [e for e in outcome.emissions if isinstance(e, Emit) and e.to == room]

    # --- time ---------------------------------------------------------------------------

    def refreshed(self, worker: WorkerState) -> bool:
        """The host keeps `worker` alive itself: online, its connection attached."""
        return (
            self.policy.refreshes_connected
            and worker.status is WorkerStatus.ONLINE
            and worker.sid is not None
        )

    def deadlines(self) -> list[tuple[datetime, str]]:
        """Every instant after which the host must act on its own, with what: a grace
        window ends (`worker:<id>`), a claim lease runs out (`task:<id>`), a worker that
        nothing keeps alive passes the heartbeat timeout (`heartbeat:<id>`), a drain's
        deadline passes (`drain:<id>`)."""
        found: list[tuple[datetime, str]] = []
        beat = timedelta(seconds=self.policy.heartbeat_timeout_seconds)
        for worker in self.state.workers.values():
            if worker.is_ended:
                continue
            if worker.status is WorkerStatus.DISCONNECTED and worker.grace_deadline is not None:
                found.append((worker.grace_deadline, f"worker:{worker.id}"))
            elif worker.status is WorkerStatus.ONLINE and not self.refreshed(worker):
                found.append((worker.last_heartbeat + beat, f"heartbeat:{worker.id}"))
            if worker.drain_deadline is not None:
                found.append((worker.drain_deadline, f"drain:{worker.id}"))
        timeout = self.policy.claim_timeout_seconds
        if timeout is not None:
            for task in self.state.tasks.values():
                if task.status is TaskStatus.CLAIMED and task.claimed_at is not None:
                    found.append((task.claimed_at + timedelta(seconds=timeout), f"task:{task.id}"))
        return sorted(found)

    def advance(self, now: datetime) -> list[Outcome]:
        """What the host's timers and sweeper must have done by `now`, in the sweeper's
        order: a heartbeat for every worker the host keeps alive (`refreshed`); every
        worker past its grace window, heartbeat timeout or drain deadline is ended; every
        claim whose lease ran out is requeued."""
        done: list[Outcome] = []
        timeout = self.policy.heartbeat_timeout_seconds
        for worker in list(self.state.workers.values()):
            if self.refreshed(worker):
                actor = Actor(user=worker.user)
                done.append(self.apply(RecordHeartbeat(now=now, actor=actor, worker_id=worker.id)))
        for worker in list(self.state.workers.values()):
            if sweep_reason(worker, now, timeout):
                sweep = SweepWorker(now=now, worker_id=worker.id, heartbeat_timeout_seconds=timeout)
                done.append(self.apply(sweep))
        lease = self.policy.claim_timeout_seconds
        if lease is not None:
            for task in list(self.state.tasks.values()):
                if claim_expired(task, now, lease) is not None:
                    expire = ExpireClaim(now=now, task_id=task.id, claim_timeout_seconds=lease)
                    done.append(self.apply(expire))
        return done

    def disconnect(self, now: datetime, worker_id: str, reason: str) -> Outcome:
        """A worker's connection is gone (torn down, or its process died): a
        `DisconnectWorker` of its current session with the policy's grace window. A worker
        that never connected is lost as its dead process is (a sweep that finds it
        silent), since the lifecycle promises the same release either way."""
        worker = self.state.workers.get(worker_id)
        if worker is not None and worker.sid is not None:
            command: Command = DisconnectWorker(
                now=now, worker_id=worker_id, sid=worker.sid, reason=reason,
                grace_seconds=self.policy.grace_seconds,
            )  # fmt: skip
        else:
            last = worker.last_heartbeat if worker is not None else now
            command = SweepWorker(
                now=max(now, last + timedelta(seconds=1)), worker_id=worker_id,
                heartbeat_timeout_seconds=min(self.policy.heartbeat_timeout_seconds, 0.5),
            )  # fmt: skip
        return self.apply(command)

    def replays(self) -> bool:
        """Folding the model's own log gives its state (the model's self-check)."""
        return fold(self.log) == self.state
