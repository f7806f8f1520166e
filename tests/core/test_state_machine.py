"""Random interleavings of every command against the pure core (Hypothesis stateful).

The machine keeps the live state, the log of accepted (and recorded) events, an integer
clock and the Socket.IO room membership rebuilt from emissions. `refusal()` is a naive
model of which DomainError a command must raise; every command is checked against it.
After every step the invariants below hold; each decision is also checked on its own
(ending a worker releases each of its claims exactly once, no stale completion).

Rules draw ids from Bundles; most also take `pick`: with pick >= 0 the rule steers to
an id for which it is interesting (a pending task to claim, a connected worker to
drop), with -1 it uses the Bundle's draw as is, whatever state that id is in.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)
from pydantic import BaseModel, TypeAdapter
from support.builders import ALICE, BOB, ROOT, T0
from workerledger.core import (
    COMMAND_ADAPTER,
    EMISSION_ADAPTER,
    EVENT_ADAPTER,
    SYSTEM,
    TASK_TRANSITIONS,
    Actor,
    ClaimTask,
    Command,
    Decision,
    DisconnectSid,
    DisconnectWorker,
    DomainError,
    DrainWorker,
    EnterRoom,
    Event,
    ExpireClaim,
    JoinJobRoom,
    JoinProviderRoom,
    LeaveJobRoom,
    LeaveProviderRoom,
    LeaveRoom,
    LedgerState,
    RecordHeartbeat,
    RegisterJob,
    RegisterProvider,
    RegisterWorker,
    RemoveProvider,
    RemoveWorker,
    RequeueTask,
    RunningTaskPolicy,
    SubmitTask,
    SweepWorker,
    TaskState,
    TaskStatus,
    UpdateTask,
    WorkerState,
    WorkerStatus,
    fold,
    handle,
    is_valid_room_id,
    job_full_name,
    room_of_job,
    room_of_provider,
)
from workerledger.core import errors as err
from workerledger.core import events as ev

ACTORS = {"alice": ALICE, "bob": BOB, "root": ROOT}
JOBS = (
    ("r1", "modifiers", "relax"),
    ("r1", "analysis", "plot"),
    ("r2", "modifiers", "relax"),
    ("@global", "selections", "pick"),
)
JOB_NAMES = tuple(job_full_name(*job) for job in JOBS)
PROVIDERS = (
    ("r1", "filesystem", "disk"),
    ("r1", "frames", "src"),
    ("@global", "filesystem", "all"),
)
PROVIDER_NAMES = tuple(job_full_name(*provider) for provider in PROVIDERS)
UNKNOWN_JOB = "r9:modifiers:ghost"
SCHEMAS: tuple[dict[str, Any], ...] = ({}, {"type": "object"})
GRACES = (0, 10, 45)  # none, shorter and longer than the heartbeat timeout
TIMEOUT = 30
CLAIM_TIMEOUT = 5
REPORTS = (TaskStatus.RUNNING, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
ENDS = (ev.WorkerLost, ev.WorkerLeft, ev.WorkerDeleted)
Refusal = type[DomainError] | None


# --- the naive model of refusals ----------------------------------------------------


def _live(state: LedgerState, worker_id: str) -> WorkerState | None:
    worker = state.workers.get(worker_id)
    return None if worker is None or worker.is_ended else worker


def _worker_refusal(state: LedgerState, worker_id: str, actor: Actor | None) -> Refusal:
    """Rules 1 and 2 of decide_workers: unknown or ended -> 404; not the owner -> 403."""
    worker = _live(state, worker_id)
    if worker is None:
        return err.WorkerNotFoundError
    if actor is not None and actor.user != worker.user:
        return err.ForbiddenError
    return None


def _register_refusal(state: LedgerState, cmd: RegisterJob) -> Refusal:
    if not is_valid_room_id(cmd.room_id):
        return err.InvalidRoomIdError
    if cmd.room_id.startswith("@") and not cmd.actor.superuser:
        return err.ForbiddenError
    if cmd.category not in cmd.allowed_categories:
        return err.InvalidCategoryError
    creates = cmd.worker_id not in state.workers and cmd.create_worker
    if not creates and _worker_refusal(state, cmd.worker_id, cmd.actor):
        return err.WorkerNotFoundError  # another user's worker is not theirs to see
    job = state.jobs.get(job_full_name(cmd.room_id, cmd.category, cmd.name))
    if job is not None and job.schema_ != cmd.schema_ and job.workers - {cmd.worker_id}:
        return err.SchemaConflictError
    return None


def _claim_refusal(state: LedgerState, cmd: ClaimTask) -> Refusal:
    if refusal := _worker_refusal(state, cmd.worker_id, cmd.actor):
        return refusal
    worker = state.workers[cmd.worker_id]
    task = state.tasks.get(cmd.task_id)
    if cmd.request_key is not None and any(key == cmd.request_key for key, _ in worker.claim_keys):
        return None  # a resend of a claim that was made: accepted, nothing new
    if worker.status is not WorkerStatus.ONLINE:
        return err.WorkerNotOnlineError
    if worker.draining_since is not None:
        return err.WorkerDrainingError
    if task is None:
        return err.TaskNotFoundError
    if task.status is not TaskStatus.PENDING:
        return err.TaskNotPendingError
    if task.job_name not in worker.jobs:
        return err.JobNotLinkedError
    return None


def _update_refusal(state: LedgerState, cmd: UpdateTask) -> Refusal:
    task = state.tasks.get(cmd.task_id)
    if task is None:
        return err.TaskNotFoundError
    cancel_own = cmd.status is TaskStatus.CANCELLED and cmd.actor.user == task.submitted_by
    if not (cmd.actor.superuser or cancel_own):
        named = cmd.worker_id if cmd.worker_id in task.attempt_workers else task.worker_id
        if named is None or state.workers[named].user != cmd.actor.user:
            return err.ForbiddenError
    wrong_attempt = cmd.attempt is not None and cmd.attempt != task.attempt
    if wrong_attempt or (cmd.worker_id is not None and cmd.worker_id != task.worker_id):
        if cmd.worker_id is not None and cmd.worker_id not in task.attempt_workers:
            return err.ForbiddenError  # a worker id that never held the task is forged
        return err.StaleAttemptError
    if _is_repeat(task, cmd):
        return None  # the stored report again: accepted, nothing new
    if cmd.status not in TASK_TRANSITIONS[task.status] or cmd.status is TaskStatus.CLAIMED:
        return err.InvalidTransitionError
    return None


def _is_repeat(task: TaskState, cmd: UpdateTask) -> bool:
    reportable = cmd.status not in (TaskStatus.PENDING, TaskStatus.CLAIMED)
    same_error = not cmd.status.is_terminal or cmd.error == task.error
    holder = task.worker_id is not None or cmd.status is TaskStatus.CANCELLED
    return cmd.status is task.status and reportable and same_error and holder


def _requeue_refusal(state: LedgerState, cmd: RequeueTask) -> Refusal:
    """Rule 10 of decide_tasks: a held task with a worker; its owner or a superuser."""
    task = state.tasks.get(cmd.task_id)
    if task is None:
        return err.TaskNotFoundError
    if task.status not in (TaskStatus.CLAIMED, TaskStatus.RUNNING) or task.worker_id is None:
        return err.InvalidTransitionError
    if cmd.actor.superuser or state.workers[task.worker_id].user == cmd.actor.user:
        return None
    return err.ForbiddenError


def _submit_refusal(state: LedgerState, cmd: SubmitTask) -> Refusal:
    existing = state.tasks.get(cmd.task_id)
    if existing is not None:
        if cmd.request_hash is None:
            return err.DuplicateIdError
        same = (existing.request_hash, existing.submitted_by) == (cmd.request_hash, cmd.actor.user)
        return None if same else err.IdempotencyKeyReusedError
    if not is_valid_room_id(cmd.room_id):
        return err.InvalidRoomIdError
    return None if cmd.job_name in state.jobs else err.JobNotFoundError


def _provider_refusal(state: LedgerState, cmd: Command) -> Refusal:
    """The rules of core/decide_providers.py, naively."""
    match cmd:
        case RegisterProvider():
            if cmd.room_id.startswith("@") and not cmd.actor.superuser:
                return err.ForbiddenError
            name = job_full_name(cmd.room_id, cmd.category, cmd.name)
            existing = state.live_provider(name)
            if existing and existing.user != cmd.actor.user and not cmd.actor.superuser:
                return err.ForbiddenError
            creates = cmd.worker_id not in state.workers and cmd.create_worker
            if not creates and _worker_refusal(state, cmd.worker_id, cmd.actor):
                return err.WorkerNotFoundError
            return None
        case RemoveProvider():
            provider = state.live_provider(cmd.provider_name)
            if provider is None or provider.id != cmd.provider_id:
                return err.ProviderNotFoundError
            mine = provider.user == cmd.actor.user or cmd.actor.superuser
            return None if mine else err.ForbiddenError
        case JoinProviderRoom():
            if refusal := _worker_refusal(state, cmd.worker_id, cmd.actor):
                return refusal
            if state.live_provider(cmd.provider_name) is None:
                return err.ProviderNotFoundError
            serves = cmd.provider_name in state.workers[cmd.worker_id].providers
            return None if serves else err.ForbiddenError
        case LeaveProviderRoom():
            if refusal := _worker_refusal(state, cmd.worker_id, cmd.actor):
                return refusal
            worker = state.workers[cmd.worker_id]
            if worker.sid != cmd.sid:
                return err.StaleSessionError
            return None if cmd.provider_name in worker.provider_rooms else err.NotInRoomError
    raise AssertionError(f"no provider model for {cmd!r}")


def refusal(state: LedgerState, command: Command) -> Refusal:
    """The DomainError `command` must raise in `state`, or None if it must be accepted."""
    match command:
        case RegisterWorker():
            return err.DuplicateIdError if command.worker_id in state.workers else None
        case RegisterJob():
            return _register_refusal(state, command)
        case RecordHeartbeat():
            return _worker_refusal(state, command.worker_id, command.actor)
        case JoinJobRoom():
            if refusal := _worker_refusal(state, command.worker_id, command.actor):
                return refusal
            if command.job_name not in state.jobs:
                return err.JobNotFoundError
            linked = command.job_name in state.workers[command.worker_id].jobs
            return None if linked else err.JobNotLinkedError
        case LeaveJobRoom():
            if refusal := _worker_refusal(state, command.worker_id, command.actor):
                return refusal
            worker = state.workers[command.worker_id]
            if worker.sid != command.sid:
                return err.StaleSessionError
            return None if command.job_name in worker.rooms else err.NotInRoomError
        case DisconnectWorker():
            if refusal := _worker_refusal(state, command.worker_id, None):
                return refusal
            current = state.workers[command.worker_id].sid
            return None if current == command.sid else err.StaleSessionError
        case SweepWorker():
            return None if command.worker_id in state.workers else err.WorkerNotFoundError
        case RemoveWorker() | DrainWorker():
            if command.actor.superuser:
                return _worker_refusal(state, command.worker_id, None)
            return _worker_refusal(state, command.worker_id, command.actor)
        case SubmitTask():
            return _submit_refusal(state, command)
        case ExpireClaim():
            return None if command.task_id in state.tasks else err.TaskNotFoundError
        case ClaimTask():
            return _claim_refusal(state, command)
        case UpdateTask():
            return _update_refusal(state, command)
        case RequeueTask():
            return _requeue_refusal(state, command)
        case RegisterProvider() | RemoveProvider() | JoinProviderRoom() | LeaveProviderRoom():
            return _provider_refusal(state, command)
    raise AssertionError(f"no model for {command!r}")


def _expected_release(before: LedgerState, task_id: str) -> type[ev.TaskRequeued | ev.TaskFailed]:
    """Rule 5 of decide_workers: CLAIMED requeues; RUNNING fails unless the policy allows."""
    task = before.tasks[task_id]
    job = before.jobs[task.job_name]
    if task.status is TaskStatus.CLAIMED:
        return ev.TaskRequeued
    budget_left = task.losses < job.max_worker_losses
    if job.on_worker_lost is RunningTaskPolicy.REQUEUE and budget_left:
        return ev.TaskRequeued
    return ev.TaskFailed


def label(command: Command) -> str:
    return f"{command.type}({command.status})" if isinstance(command, UpdateTask) else command.type


def _round_trips(adapter: TypeAdapter[Any], value: BaseModel) -> None:
    back = adapter.validate_json(value.model_dump_json(by_alias=True))
    assert (type(back), back) == (type(value), value)


# --- the machine --------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    workers = Bundle("workers")
    gone = Bundle("gone")  # removed with RemoveWorker
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.state = LedgerState()
        self.log: list[Event] = []
        self.clock = 0
        self.members: dict[str, set[str]] = {}  # sid -> rooms, from emissions only
        self.old_sids: dict[str, list[str]] = {}  # worker -> sids it spoke over
        self.counter = 0

    # --- helpers ----------------------------------------------------------------------

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.clock)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def owner(self, worker_id: str) -> Actor:
        return ACTORS[self.state.workers[worker_id].user]

    def other(self, worker_id: str) -> Actor:
        """A non-superuser who does not own the worker."""
        return ACTORS["bob" if self.state.workers[worker_id].user != "bob" else "alice"]

    def stale_sid(self, worker_id: str) -> str:
        current = self.state.workers[worker_id].sid
        old = [sid for sid in self.old_sids.get(worker_id, []) if sid != current]
        return old[-1] if old else "s-never"

    def run(
        self, command: Command, *, must_fail: tuple[type[DomainError], ...] = ()
    ) -> Decision | None:
        """Handle `command`; it must be accepted or refused exactly as `refusal` says."""
        _round_trips(COMMAND_ADAPTER, command)
        expected = refusal(self.state, command)
        if must_fail:
            assert expected in must_fail, f"{command!r} is not invalid: {expected}"
        before = self.state.model_copy(deep=True)
        try:
            decision = handle(self.state, command)
        except DomainError as error:
            assert type(error) is expected, f"{command!r} raised {error!r}, want {expected}"
            assert self.state == before
            assert fold(error.record, self.state) == self.state
            self.check_record(command, error)
            self.log.extend(error.record)
            event(f"refused {label(command)}: {error.code}")
            return None
        assert expected is None, f"{command!r} was accepted, want {expected}"
        self.check_decision(before, command, decision)
        self.log.extend(decision.events)
        self.state = decision.state
        self.apply_emissions(decision)
        event(f"accepted {label(command)}")
        return decision

    def check_record(self, command: Command, error: DomainError) -> None:
        if not isinstance(error, err.StaleAttemptError):
            assert error.record == ()
            return
        assert isinstance(command, UpdateTask)
        task = self.state.tasks[command.task_id]
        assert error.record == (
            ev.TaskReportRejected(
                task_id=task.id,
                worker_id=command.worker_id,
                attempt=command.attempt,
                current_attempt=task.attempt,
                requested=command.status,
                by=command.actor.user,
                at=command.now,
            ),
        )
        _round_trips(EVENT_ADAPTER, error.record[0])

    def check_decision(self, before: LedgerState, command: Command, decision: Decision) -> None:
        for new in decision.events:
            _round_trips(EVENT_ADAPTER, new)
        for emission in decision.emissions:
            _round_trips(EMISSION_ADAPTER, emission)
        self.check_releases(before, decision.events)
        for new in decision.events:
            match new:
                case ev.WorkerRegistered():
                    assert new.worker_id not in before.workers  # never a second worker
                case ev.ConnectionAttached():
                    assert new.previous_sid == before.workers[new.worker_id].sid
                case ev.TaskCompleted():
                    task = before.tasks[new.task_id]
                    assert task.status is TaskStatus.RUNNING
                    assert (new.attempt, new.worker_id) == (task.attempt, task.worker_id)
                case ev.WorkerLeft(reason=reason) if reason and reason.startswith("drained"):
                    drained = decision.state.workers[new.worker_id]
                    assert drained.draining_since is not None and drained.tasks == frozenset()
                    assert new.by == drained.drained_by
                    event("drained worker ended")
        if isinstance(command, UpdateTask):  # an accepted report names the current claim
            task = before.tasks[command.task_id]
            assert command.attempt in (None, task.attempt)
            assert command.worker_id in (None, task.worker_id)

    def check_releases(self, before: LedgerState, events: tuple[Event, ...]) -> None:
        """Every claim of a worker that ends is released exactly once, by policy."""
        ends = [new for new in events if isinstance(new, ENDS)]
        assert len(ends) <= 1
        # a report, lease expiry or requeue releases its task before a drained end
        let_go = {new.task_id for new in events if isinstance(new, ev.WorkerTaskReleased)}
        held = {
            task_id: end.worker_id
            for end in ends
            for task_id in before.workers[end.worker_id].tasks - let_go
        }
        released = [
            new
            for new in events
            if isinstance(new, ev.TaskRequeued | ev.TaskFailed) and new.task_id not in let_go
        ]
        counts = Counter(new.task_id for new in released)
        for task_id, worker_id in held.items():
            assert counts[task_id] == 1, f"{task_id} released {counts[task_id]} times"
            (release,) = [new for new in released if new.task_id == task_id]
            assert type(release) is _expected_release(before, task_id)
            assert (release.worker_id, release.attempt) == (
                worker_id,
                before.tasks[task_id].attempt,
            )
        requeued = {new.task_id for new in released if isinstance(new, ev.TaskRequeued)}
        assert requeued <= set(held)
        if ends:
            assert not before.workers[ends[0].worker_id].is_ended
            event(f"ended holding {len(held)} task(s)")
            for release in released:
                event(f"released as {release.type}")

    def apply_emissions(self, decision: Decision) -> None:
        for emission in decision.emissions:
            match emission:
                case EnterRoom(sid=sid, room=room):
                    assert room not in self.members.get(sid, set())
                    self.members.setdefault(sid, set()).add(room)
                case LeaveRoom(sid=sid, room=room):
                    assert room in self.members.get(sid, set())
                    self.members[sid].discard(room)
                case DisconnectSid(sid=sid):
                    self.members[sid] = set()

    # --- registration -----------------------------------------------------------------

    def register_job(
        self, worker_id: str, actor: Actor, job: int, schema: int, **extra: Any
    ) -> RegisterJob:
        room, category, name = JOBS[job]
        return RegisterJob(
            now=self.now(),
            actor=actor,
            room_id=room,
            category=category,
            name=name,
            schema=SCHEMAS[schema],
            worker_id=worker_id,
            **{"create_worker": True, **extra},
        )

    @initialize(
        target=workers,
        user=st.sampled_from(("alice", "bob")),
        job=st.integers(0, 2),
        policy=st.sampled_from(RunningTaskPolicy),
        losses=st.integers(0, 2),
    )
    def register_first(self, user: str, job: int, policy: RunningTaskPolicy, losses: int) -> str:
        worker_id = self.fresh("w")
        extra = {"on_worker_lost": policy, "max_worker_losses": losses}
        self.run(self.register_job(worker_id, ACTORS[user], job, 0, **extra))
        return worker_id

    @initialize(target=workers, user=st.sampled_from(("alice", "bob")))
    def register_second(self, user: str) -> str:
        return self.register_first(user, 0, RunningTaskPolicy.REQUEUE, 1)

    @initialize(target=tasks, user=st.sampled_from(("alice", "bob")), job=st.integers(0, 2))
    def submit_first(self, user: str, job: int) -> str:
        # the task's job needs a worker (not in the bundle)
        self.register_first(user, job, RunningTaskPolicy.FAIL, 0)
        task_id = self.fresh("t")
        command = SubmitTask(
            now=self.now(),
            actor=ACTORS[user],
            task_id=task_id,
            job_name=JOB_NAMES[job],
            room_id="r1",
        )
        self.run(command)
        return task_id

    @rule(
        target=workers,
        user=st.sampled_from(sorted(ACTORS)),
        job=st.integers(-1, len(JOBS) - 1),
        schema=st.integers(0, len(SCHEMAS) - 1),
        policy=st.sampled_from(RunningTaskPolicy),
        losses=st.integers(0, 2),
    )
    def register(
        self, user: str, job: int, schema: int, policy: RunningTaskPolicy, losses: int
    ) -> Any:
        """RegisterJob with create_worker (job -1: a bare RegisterWorker, no job)."""
        worker_id = self.fresh("w")
        command: Command = RegisterWorker(now=self.now(), actor=ACTORS[user], worker_id=worker_id)
        if job >= 0:
            command = self.register_job(
                worker_id,
                ACTORS[user],
                job,
                schema,
                on_worker_lost=policy,
                max_worker_losses=losses,
            )
        return worker_id if self.run(command) is not None else multiple()

    @rule(worker=workers, job=st.integers(0, len(JOBS) - 1), schema=st.integers(0, 1))
    def register_again(self, worker: str, job: int, schema: int) -> None:
        """A retry (or another job) with the same worker id creates no second worker."""
        count = len(self.state.workers)
        decision = self.run(self.register_job(worker, self.owner(worker), job, schema))
        assert len(self.state.workers) == count
        if decision is not None:
            assert not any(isinstance(new, ev.WorkerRegistered) for new in decision.events)

    # --- connections ------------------------------------------------------------------

    def connect(self, worker: str) -> str:
        sid = self.fresh("s")
        self.old_sids.setdefault(worker, []).append(sid)
        return sid

    def job_for(self, worker: str, pick: int, linked: bool) -> str:
        jobs = sorted(self.state.workers[worker].jobs)
        return jobs[pick % len(jobs)] if linked and jobs else JOB_NAMES[pick % len(JOB_NAMES)]

    def steer(self, drawn: str, candidates: list[str], pick: int) -> str:
        """With pick >= 0, one of the ids for which the rule is interesting; else `drawn`."""
        return candidates[pick % len(candidates)] if pick >= 0 and candidates else drawn

    def workers_where(self, predicate: Any) -> list[str]:
        return sorted(w.id for w in self.state.workers.values() if predicate(w))

    def tasks_where(self, predicate: Any) -> list[str]:
        return sorted(t.id for t in self.state.tasks.values() if predicate(t))

    @rule(worker=workers, pick=st.integers(-1, 7), linked=st.booleans(), new_sid=st.booleans())
    def join(self, worker: str, pick: int, linked: bool, new_sid: bool) -> None:
        worker = self.steer(worker, self.workers_where(lambda w: not w.is_ended), pick)
        current = self.state.workers[worker].sid
        sid = self.connect(worker) if new_sid or current is None else current
        job = self.job_for(worker, pick, linked)
        command = JoinJobRoom(
            now=self.now(), actor=self.owner(worker), worker_id=worker, sid=sid, job_name=job
        )
        self.run(command)

    @precondition(lambda self: self.workers_where(lambda w: w.status is WorkerStatus.DISCONNECTED))
    @rule(worker=workers, pick=st.integers(-1, 7))
    def resume(self, worker: str, pick: int) -> None:
        """A join from a new connection; a DISCONNECTED worker comes back with its claims."""
        worker = self.steer(
            worker, self.workers_where(lambda w: w.status is WorkerStatus.DISCONNECTED), pick
        )
        before = self.state.workers[worker]
        command = JoinJobRoom(
            now=self.now(),
            actor=self.owner(worker),
            worker_id=worker,
            sid=self.connect(worker),
            job_name=self.job_for(worker, pick, linked=True),
        )
        if self.run(command) is not None and before.grace_deadline is not None:
            after = self.state.workers[worker]
            assert (after.status, after.tasks) == (WorkerStatus.ONLINE, before.tasks)
            event("resumed in grace" if self.now() < before.grace_deadline else "resumed late")

    @rule(worker=workers, pick=st.integers(-1, 7), stale=st.booleans())
    def leave(self, worker: str, pick: int, stale: bool) -> None:
        worker = self.steer(worker, self.workers_where(lambda w: w.rooms), pick)
        current = self.state.workers[worker]
        sid = self.stale_sid(worker) if stale or current.sid is None else current.sid
        rooms = sorted(current.rooms)
        job = rooms[pick % len(rooms)] if rooms else JOB_NAMES[pick % len(JOB_NAMES)]
        command = LeaveJobRoom(
            now=self.now(), actor=self.owner(worker), worker_id=worker, sid=sid, job_name=job
        )
        self.run(command)

    @rule(
        worker=workers,
        pick=st.integers(-1, 7),
        grace=st.sampled_from(GRACES),
        stale=st.booleans(),
    )
    def disconnect(self, worker: str, pick: int, grace: int, stale: bool) -> None:
        holding = self.workers_where(lambda w: w.sid and w.tasks)
        worker = self.steer(worker, holding or self.workers_where(lambda w: w.sid), pick)
        before = self.state.workers[worker]
        sid = self.stale_sid(worker) if stale or before.sid is None else before.sid
        command = DisconnectWorker(
            now=self.now(), worker_id=worker, sid=sid, reason="transport close", grace_seconds=grace
        )
        if self.run(command) is None:
            return
        after = self.state.workers[worker]
        if grace == 0:
            assert after.status is WorkerStatus.LOST
        else:  # nothing is released inside the grace window
            assert (after.status, after.tasks) == (WorkerStatus.DISCONNECTED, before.tasks)

    @rule(worker=workers, pick=st.integers(-1, 7))
    def heartbeat(self, worker: str, pick: int) -> None:
        worker = self.steer(worker, self.workers_where(lambda w: not w.is_ended), pick)
        self.run(RecordHeartbeat(now=self.now(), actor=self.owner(worker), worker_id=worker))

    # --- time and the sweeper ---------------------------------------------------------

    def sweep_once(self, worker: str) -> None:
        """Rule 6: only a silent ONLINE worker or an expired grace window ends a worker."""
        before, now = self.state.workers[worker], self.now()
        deadline = before.drain_deadline
        if not before.is_ended and deadline is not None and now >= deadline:
            due = True
        elif before.status is WorkerStatus.DISCONNECTED:
            assert before.grace_deadline is not None
            due = now >= before.grace_deadline
        else:
            due = not before.is_ended and now - before.last_heartbeat > timedelta(seconds=TIMEOUT)
        command = SweepWorker(now=now, worker_id=worker, heartbeat_timeout_seconds=TIMEOUT)
        decision = self.run(command)
        assert decision is not None and bool(decision.events) == due
        again = self.run(command)  # sweeps are idempotent
        assert again is not None and again.events == ()
        swept = self.state.workers[worker]
        if swept.drain_deadline is not None and not swept.is_ended:
            assert self.now() < swept.drain_deadline
        if swept.status is WorkerStatus.DISCONNECTED:
            assert swept.grace_deadline is not None and self.now() < swept.grace_deadline
        elif swept.status is WorkerStatus.ONLINE:
            assert self.now() - swept.last_heartbeat <= timedelta(seconds=TIMEOUT)

    @rule(
        worker=workers,
        pick=st.integers(-1, 7),
        seconds=st.integers(0, TIMEOUT // 2),
        everyone=st.booleans(),
    )
    def tick(self, worker: str, pick: int, seconds: int, everyone: bool) -> None:
        """Advance the clock, then sweep one worker (a dropped one if any) or all of them."""
        self.clock += seconds
        dropped = self.workers_where(lambda w: w.status is WorkerStatus.DISCONNECTED)
        worker = self.steer(worker, dropped, pick)
        for swept in sorted(self.state.workers) if everyone else [worker]:
            self.sweep_once(swept)

    @rule(worker=consumes(workers), by_owner=st.booleans(), target=gone)
    def remove(self, worker: str, by_owner: bool) -> str:
        actor = self.owner(worker) if by_owner else ACTORS["root"]
        self.run(RemoveWorker(now=self.now(), actor=actor, worker_id=worker))
        return worker

    # --- tasks ------------------------------------------------------------------------

    @rule(
        target=tasks,
        known=st.booleans(),
        pick=st.integers(0, 7),
        user=st.sampled_from(("alice", "bob")),
        room=st.sampled_from(("r1", "r2")),
        keyed=st.booleans(),
    )
    def submit(self, known: bool, pick: int, user: str, room: str, keyed: bool) -> Any:
        jobs = sorted(self.state.jobs) if known and self.state.jobs else JOB_NAMES
        job, task_id = jobs[pick % len(jobs)], self.fresh("t")
        command = SubmitTask(
            now=self.now(),
            actor=ACTORS[user],
            task_id=task_id,
            job_name=job,
            room_id=room,
            request_hash=f"h-{task_id}" if keyed else None,
        )
        if self.run(command) is None:
            return multiple()
        if keyed:  # the answer was lost and the client sends the same request again
            again = self.run(command.model_copy(update={"now": self.now()}))
            assert again is not None and again.events == ()
            other = command.model_copy(update={"payload": {"other": True}, "request_hash": "h-x"})
            self.run(other, must_fail=(err.IdempotencyKeyReusedError,))
        return task_id

    @rule(task=tasks, seconds=st.integers(0, 2 * CLAIM_TIMEOUT), pick=st.integers(-1, 7))
    def expire_claim(self, task: str, seconds: int, pick: int) -> None:
        """The claim lease: a CLAIMED task not started in time goes back to PENDING."""
        self.clock += seconds
        task = self.steer(task, self.tasks_where(lambda t: t.status is TaskStatus.CLAIMED), pick)
        before = self.state.tasks[task]
        command = ExpireClaim(now=self.now(), task_id=task, claim_timeout_seconds=CLAIM_TIMEOUT)
        decision = self.run(command)
        assert decision is not None
        due = (
            before.status is TaskStatus.CLAIMED
            and before.claimed_at is not None
            and self.now() >= before.claimed_at + timedelta(seconds=CLAIM_TIMEOUT)
        )
        assert bool(decision.events) == due
        if due:
            after = self.state.tasks[task]
            assert after.status is TaskStatus.PENDING and after.worker_id is None
            assert all(task not in w.tasks for w in self.state.workers.values())
        again = self.run(command)  # racing sweepers are harmless
        assert again is not None and again.events == ()

    @rule(task=tasks, worker=workers, pick=st.integers(-1, 7), keyed=st.booleans())
    def claim(self, task: str, worker: str, pick: int, keyed: bool) -> None:
        task = self.steer(task, self.tasks_where(lambda t: t.status is TaskStatus.PENDING), pick)
        job = self.state.tasks[task].job_name
        linked = self.workers_where(lambda w: not w.is_ended and job in w.jobs)
        worker = self.steer(worker, linked, pick)  # online, or inside its grace window
        before = self.state.tasks[task]
        command = ClaimTask(
            now=self.now(),
            actor=self.owner(worker),
            task_id=task,
            worker_id=worker,
            request_key=self.fresh("k") if keyed else None,
        )
        if self.run(command) is not None:
            after = self.state.tasks[task]
            assert (after.attempt, after.worker_id) == (before.attempt + 1, worker)
            if keyed and command.request_key is not None:  # a resend claims nothing new
                again = self.run(command.model_copy(update={"task_id": "t-any"}))
                assert again is not None and again.events == ()
                assert self.state.workers[worker].claimed_under(command.request_key) == task

    def report(self, task: str, status: TaskStatus, fenced: bool, by: str = "holder") -> None:
        current = self.state.tasks[task]
        actor = ACTORS["root"] if by == "root" else ACTORS[current.submitted_by]
        if by == "holder" and current.worker_id is not None:
            actor = self.owner(current.worker_id)
        command = UpdateTask(
            now=self.now(),
            actor=actor,
            task_id=task,
            status=status,
            worker_id=current.worker_id if fenced else None,
            attempt=current.attempt if fenced else None,
        )
        if self.run(command) is not None:  # its answer was lost: the resend changes nothing
            again = self.run(command)
            assert again is not None and again.events == ()

    @precondition(lambda self: self.tasks_where(lambda t: not t.status.is_terminal))
    @rule(
        task=tasks,
        pick=st.integers(-1, 7),
        outcome=st.sampled_from(("progress", "fail", "cancel")),
        by=st.sampled_from(("holder", "submitter", "root")),
        fenced=st.booleans(),
    )
    def report_progress(self, task: str, pick: int, outcome: str, by: str, fenced: bool) -> None:
        """Start or complete, or fail (by the holder's owner); cancel (by anyone allowed)."""
        if outcome == "cancel":
            task = self.steer(task, self.tasks_where(lambda t: not t.status.is_terminal), pick)
            self.report(task, TaskStatus.CANCELLED, fenced, by)
            return
        task = self.steer(task, self.tasks_where(lambda t: t.status.is_held), pick)
        status = TaskStatus.FAILED
        if outcome == "progress":
            running = self.state.tasks[task].status is TaskStatus.RUNNING
            status = TaskStatus.COMPLETED if running else TaskStatus.RUNNING
        self.report(task, status, fenced)

    # --- deliberately invalid commands: each must raise and change nothing ------------

    @rule(
        task=tasks,
        kind=st.sampled_from(("stale", "forged", "illegal")),
        status=st.sampled_from(REPORTS),
        pick=st.integers(-1, 7),
    )
    def report_invalid(self, task: str, kind: str, status: TaskStatus, pick: int) -> None:
        """A stale attempt, a worker id that never held the task, or an illegal transition."""
        if kind == "stale":  # preferably a task that a former holder lost
            task = self.steer(task, self.tasks_where(lambda t: t.requeues), pick)
        current, now = self.state.tasks[task], self.now()
        if kind == "illegal":
            repeat = {current.status} - {TaskStatus.PENDING, TaskStatus.CLAIMED}
            allowed = TASK_TRANSITIONS[current.status] | repeat  # a repeat is accepted
            illegal = sorted({TaskStatus.CLAIMED, *TaskStatus} - allowed)
            status = illegal[pick % len(illegal)]
            command = UpdateTask(now=now, actor=ACTORS["root"], task_id=task, status=status)
            self.run(command, must_fail=(err.InvalidTransitionError,))
        elif kind == "forged":
            actor = self.owner(current.worker_id) if current.worker_id else ACTORS["root"]
            command = UpdateTask(
                now=now, actor=actor, task_id=task, status=status, worker_id="w-forged"
            )
            self.run(command, must_fail=(err.ForbiddenError,))
        elif not current.attempt_workers:
            command = UpdateTask(
                now=now, actor=ACTORS["root"], task_id=task, status=status, attempt=1
            )
            self.run(command, must_fail=(err.StaleAttemptError,))
        else:
            index = pick % len(current.attempt_workers)
            worker, attempt = current.attempt_workers[index], index + 1
            if (worker, attempt) == (current.worker_id, current.attempt):
                attempt += 1  # the holder's current attempt is not stale; a future one is
            command = UpdateTask(
                now=now,
                actor=self.owner(worker),
                task_id=task,
                status=status,
                worker_id=worker,
                attempt=attempt,
            )
            self.run(command, must_fail=(err.StaleAttemptError,))

    @rule(worker=workers, task=tasks, kind=st.integers(0, 5), as_root=st.booleans())
    def act_as_someone_else(self, worker: str, task: str, kind: int, as_root: bool) -> None:
        """Another user (or a superuser: not exempt, except from removing) acts for a worker."""
        actor, now = self.other(worker), self.now()
        if as_root and kind < 4 and self.state.workers[worker].user != "root":
            actor = ACTORS["root"]
        current = self.state.workers[worker]
        sid = current.sid or "s-never"
        job = sorted(current.jobs)[0] if current.jobs else JOB_NAMES[0]
        commands: list[Command] = [
            RecordHeartbeat(now=now, actor=actor, worker_id=worker),
            JoinJobRoom(now=now, actor=actor, worker_id=worker, sid=sid, job_name=job),
            LeaveJobRoom(now=now, actor=actor, worker_id=worker, sid=sid, job_name=job),
            ClaimTask(now=now, actor=actor, task_id=task, worker_id=worker),
            RemoveWorker(now=now, actor=actor, worker_id=worker),
            DrainWorker(now=now, actor=actor, worker_id=worker, reason="not mine"),
        ]
        self.run(commands[kind], must_fail=(err.ForbiddenError, err.WorkerNotFoundError))

    @rule(worker=gone, kind=st.integers(0, 6))
    def use_a_removed_worker(self, worker: str, kind: int) -> None:
        actor, now = self.owner(worker), self.now()
        commands: list[Command] = [
            RecordHeartbeat(now=now, actor=actor, worker_id=worker),
            JoinJobRoom(now=now, actor=actor, worker_id=worker, sid="s-x", job_name=JOB_NAMES[0]),
            DisconnectWorker(now=now, worker_id=worker, sid="s-x", reason="x", grace_seconds=0),
            RemoveWorker(now=now, actor=SYSTEM, worker_id=worker),
            ClaimTask(now=now, actor=actor, task_id="t-any", worker_id=worker),
            self.register_job(worker, actor, 0, 0),
            DrainWorker(now=now, actor=actor, worker_id=worker, reason="gone"),
        ]
        self.run(commands[kind], must_fail=(err.WorkerNotFoundError,))

    @rule(worker=workers, kind=st.integers(0, 8))
    def use_unknown_ids(self, worker: str, kind: int) -> None:
        alice, now, ghost = ACTORS["alice"], self.now(), "w-ghost"
        sid = self.state.workers[worker].sid or "s-x"
        commands: list[Command] = [
            RecordHeartbeat(now=now, actor=alice, worker_id=ghost),
            JoinJobRoom(now=now, actor=alice, worker_id=ghost, sid="s-x", job_name=JOB_NAMES[0]),
            DisconnectWorker(now=now, worker_id=ghost, sid="s-x", reason="x", grace_seconds=0),
            SweepWorker(now=now, worker_id=ghost, heartbeat_timeout_seconds=TIMEOUT),
            RemoveWorker(now=now, actor=alice, worker_id=ghost),
            UpdateTask(now=now, actor=alice, task_id="t-ghost", status=TaskStatus.CANCELLED),
            SubmitTask(now=now, actor=alice, task_id="t-x", job_name=UNKNOWN_JOB, room_id="r1"),
            self.register_job(ghost, alice, 0, 0, create_worker=False),
            JoinJobRoom(
                now=now, actor=self.owner(worker), worker_id=worker, sid=sid, job_name=UNKNOWN_JOB
            ),
        ]
        self.run(
            commands[kind],
            must_fail=(err.WorkerNotFoundError, err.TaskNotFoundError, err.JobNotFoundError),
        )

    # --- operator commands ------------------------------------------------------------

    @rule(
        worker=workers,
        pick=st.integers(-1, 7),
        by=st.sampled_from(("owner", "other", "root")),
        deadline=st.sampled_from((None, 0, 5, 20)),
    )
    def drain(self, worker: str, pick: int, by: str, deadline: int | None) -> None:
        """Drain (preferably a worker holding tasks): no claims, ends once it holds nothing."""
        busy = self.workers_where(lambda w: not w.is_ended and w.tasks)
        worker = self.steer(worker, busy or self.workers_where(lambda w: not w.is_ended), pick)
        actor = {"owner": self.owner(worker), "other": self.other(worker), "root": ROOT}[by]
        before = self.state.workers[worker]
        command = DrainWorker(
            now=self.now(), actor=actor, worker_id=worker, reason="deploy",
            deadline_seconds=deadline,
        )  # fmt: skip
        decision = self.run(command)
        if decision is None:
            return
        after = self.state.workers[worker]
        if before.draining_since is not None:
            assert decision.events == ()  # a second drain records nothing
        elif before.tasks:
            assert after.tasks == before.tasks and after.status is before.status
            event("drained while holding")
            pending = self.tasks_where(lambda t: t.status is TaskStatus.PENDING)
            claim = ClaimTask(
                now=self.now(), actor=self.owner(worker), task_id=(pending or ["t-any"])[0],
                worker_id=worker,
            )  # fmt: skip
            self.run(claim, must_fail=(err.WorkerDrainingError, err.WorkerNotOnlineError))
        else:
            assert after.status is WorkerStatus.LEFT  # idle: ended at once
        assert after.rooms == frozenset()

    @precondition(lambda self: self.tasks_where(lambda t: t.status.is_held))
    @rule(task=tasks, pick=st.integers(-1, 7), by=st.sampled_from(("holder", "submitter", "root")))
    def requeue(self, task: str, pick: int, by: str) -> None:
        """An operator requeue: back to PENDING, the old attempt fenced."""
        task = self.steer(task, self.tasks_where(lambda t: t.status.is_held), pick)
        before = self.state.tasks[task]
        actor = ACTORS["root"] if by == "root" else ACTORS[before.submitted_by]
        if by == "holder" and before.worker_id is not None:
            actor = self.owner(before.worker_id)
        command = RequeueTask(now=self.now(), actor=actor, task_id=task, reason="stuck")
        if self.run(command) is None:
            return
        after = self.state.tasks[task]
        assert (after.status, after.worker_id) == (TaskStatus.PENDING, None)
        assert (after.attempt, after.losses) == (before.attempt, before.losses)
        if before.worker_id is not None:  # a late report of the old attempt is stale
            late = UpdateTask(
                now=self.now(), actor=self.owner(before.worker_id), task_id=task,
                status=TaskStatus.COMPLETED, worker_id=before.worker_id, attempt=before.attempt,
            )  # fmt: skip
            self.run(late, must_fail=(err.StaleAttemptError,))

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def a_draining_worker_claims_nothing_after_its_drain(self) -> None:
        drained: set[str] = set()
        for new in self.log:
            if isinstance(new, ev.WorkerDrainRequested):
                drained.add(new.worker_id)
            elif isinstance(new, ev.WorkerTaskAssigned):
                assert new.worker_id not in drained, f"{new.worker_id} claimed while draining"

    @invariant()
    def a_draining_worker_holds_something_until_it_ends(self) -> None:
        for worker in self.state.workers.values():
            if worker.draining_since is None:
                continue
            assert worker.rooms == frozenset()
            if worker.is_ended:
                assert worker.tasks == frozenset()
            else:
                assert worker.tasks, f"{worker.id} drains holding nothing but did not end"

    # --- providers --------------------------------------------------------------------

    @rule(
        worker=workers,
        provider=st.integers(0, len(PROVIDERS) - 1),
        by=st.sampled_from(("owner", "other", "root")),
        schema=st.integers(0, len(SCHEMAS) - 1),
        create=st.booleans(),
    )
    def register_provider(
        self, worker: str, provider: int, by: str, schema: int, create: bool
    ) -> None:
        actor = {"owner": self.owner(worker), "other": self.other(worker), "root": ROOT}[by]
        room, category, name = PROVIDERS[provider]
        command = RegisterProvider(
            now=self.now(), actor=actor, provider_id=self.fresh("p"), room_id=room,
            category=category, name=name, schema=SCHEMAS[schema],
            worker_id=self.fresh("w") if create else worker, create_worker=create,
        )  # fmt: skip
        before = self.state.live_provider(job_full_name(room, category, name))
        decision = self.run(command)
        if decision is not None and before is not None:
            assert decision.state.providers[before.full_name].id == before.id  # upsert keeps it

    @rule(
        provider=st.integers(0, len(PROVIDERS) - 1),
        by=st.sampled_from(("owner", "other", "root")),
        right_id=st.booleans(),
    )
    def remove_provider(self, provider: int, by: str, right_id: bool) -> None:
        name = PROVIDER_NAMES[provider]
        current = self.state.providers.get(name)
        owner = ACTORS.get(current.user, ROOT) if current else ALICE
        other = BOB if owner.user != "bob" else ALICE
        command = RemoveProvider(
            now=self.now(),
            actor={"owner": owner, "other": other, "root": ROOT}[by],
            provider_name=name,
            provider_id=current.id if current and right_id else "p-never",
        )
        self.run(command)

    def provider_for(self, worker: str, pick: int) -> str:
        served = sorted(self.state.workers[worker].providers)
        return served[pick % len(served)] if pick >= 0 and served else PROVIDER_NAMES[pick % 3]

    @rule(worker=workers, pick=st.integers(-1, 7), new_sid=st.booleans())
    def join_provider_room(self, worker: str, pick: int, new_sid: bool) -> None:
        worker = self.steer(worker, self.workers_where(lambda w: bool(w.providers)), pick)
        current = self.state.workers[worker].sid
        sid = self.connect(worker) if new_sid or current is None else current
        command = JoinProviderRoom(
            now=self.now(), actor=self.owner(worker), worker_id=worker, sid=sid,
            provider_name=self.provider_for(worker, pick),
        )  # fmt: skip
        self.run(command)

    @rule(worker=workers, pick=st.integers(-1, 7), stale=st.booleans())
    def leave_provider_room(self, worker: str, pick: int, stale: bool) -> None:
        worker = self.steer(worker, self.workers_where(lambda w: bool(w.provider_rooms)), pick)
        state = self.state.workers[worker]
        rooms = sorted(state.provider_rooms)
        name = rooms[pick % len(rooms)] if rooms and pick >= 0 else PROVIDER_NAMES[pick % 3]
        sid = self.stale_sid(worker) if stale or state.sid is None else state.sid
        command = LeaveProviderRoom(
            now=self.now(), actor=self.owner(worker), worker_id=worker, sid=sid,
            provider_name=name,
        )  # fmt: skip
        self.run(command)

    @invariant()
    def providers_live_exactly_as_long_as_their_workers(self) -> None:
        for provider in self.state.providers.values():
            worker = self.state.workers.get(provider.worker_id)
            serving = worker is not None and provider.full_name in worker.providers
            assert provider.is_live == (serving and worker is not None and not worker.is_ended)
        for worker in self.state.workers.values():
            assert worker.provider_rooms <= worker.providers
            for name in worker.providers:
                live = self.state.live_provider(name)
                assert live is not None and live.worker_id == worker.id

    @invariant()
    def replaying_the_log_rebuilds_the_state(self) -> None:
        assert fold(self.log) == self.state

    @invariant()
    def every_held_task_has_exactly_one_live_holder(self) -> None:
        holders: dict[str, list[str]] = {}
        for worker in self.state.workers.values():
            for task_id in worker.tasks:
                holders.setdefault(task_id, []).append(worker.id)
        for task in self.state.tasks.values():
            assert task.attempt == len(task.attempt_workers)
            if task.status.is_held:
                assert holders.get(task.id) == [task.worker_id]
                assert task.worker_id == task.attempt_workers[-1]
                assert not self.state.workers[task.worker_id].is_ended
            else:
                assert task.id not in holders
            if task.status is TaskStatus.PENDING:
                assert task.worker_id is None

    @invariant()
    def no_stale_completion_was_accepted(self) -> None:
        """A completed task is final, so its completion names its last attempt and worker."""
        for new in self.log:
            if isinstance(new, ev.TaskCompleted):
                task = self.state.tasks[new.task_id]
                assert task.status is TaskStatus.COMPLETED
                assert new.attempt == task.attempt
                assert new.worker_id == task.worker_id == task.attempt_workers[new.attempt - 1]

    @invariant()
    def ended_workers_hold_nothing_and_sit_nowhere(self) -> None:
        for worker in self.state.workers.values():
            assert worker.rooms <= worker.jobs
            if worker.is_ended:
                assert (worker.tasks, worker.rooms, worker.sid) == (frozenset(), frozenset(), None)
                assert worker.providers == worker.provider_rooms == frozenset()
            if worker.status is WorkerStatus.DISCONNECTED:
                assert (worker.rooms, worker.sid) == (frozenset(), None)
        for job in self.state.jobs.values():
            linked = {
                w.id
                for w in self.state.workers.values()
                if not w.is_ended and job.full_name in w.jobs
            }
            assert job.workers == linked

    @invariant()
    def emitted_room_membership_matches_the_state(self) -> None:
        expected: dict[str, set[str]] = {}
        for worker in self.state.workers.values():
            if worker.sid is not None:
                rooms = expected.setdefault(worker.sid, set())
                rooms |= {room_of_job(job) for job in worker.rooms}
                rooms |= {room_of_provider(name) for name in worker.provider_rooms}
        for sid in set(self.members) | set(expected):
            assert self.members.get(sid, set()) == expected.get(sid, set()), sid


TestLedgerMachine = LedgerMachine.TestCase
