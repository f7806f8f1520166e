"""`HostStateMachine`: Hypothesis drives a running host through its public protocol and
checks it against `LifecycleModel` after every step.

Subclass it with a `target` (a `HostTarget`: URLs and tokens) and a `policy` (the
host's grace window, claim lease, ...) and collect `YourMachine.TestCase`. Each example
works in a fresh room of its own, so one host serves every example. The rules register
workers and jobs, submit, claim, start, complete, fail and cancel tasks, join and leave
job rooms, leave gracefully, tear a worker's socket down, reconnect within and past the
grace window, delete workers, drain workers and requeue tasks as an operator (with an
`admin` token), let a worker go silent, report with stale attempts and forged worker
ids, send hostile input, wait past the host's deadlines (grace windows, claim
leases, drain deadlines, and heartbeat timeouts up to `LONGEST_WAIT`), and let a few
seconds pass while a worker is silent or disconnected (`let_time_pass`, up to
`LONGEST_PASS`). Each rule runs the same action through the model, which says what
the host must answer. Between and during steps the machine heartbeats (REST) every live
worker it has not silenced, so only silent workers reach the heartbeat timeout.

After every step the machine waits (REST polled until a deadline, the watcher's events
awaited) until the host's REST view of the room's tasks, the workers and the room's
jobs equals the model's, and the watcher received what the model emitted to
`room:<room_id>`; otherwise it raises `Divergence` naming the step, the expectation and
what the host showed, and Hypothesis shrinks the run to a minimal failing example.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from workerledger.core import (
    TERMINAL_STATUSES,
    Actor,
    ClaimTask,
    Command,
    DrainWorker,
    JoinJobRoom,
    LeaveJobRoom,
    RecordHeartbeat,
    RegisterJob,
    RegisterWorker,
    RemoveWorker,
    RequeueTask,
    RunningTaskPolicy,
    SubmitTask,
    TaskStatus,
    UpdateTask,
    WorkerStatus,
    job_full_name,
    room_of_watchers,
)

from . import strategies as wst
from .model import LifecycleModel, ModelPolicy, Outcome, TaskView
from .protocol import Answer, HostTarget, Rest, Token, Watcher, WorkerSocket

JOBS = (("modifiers", "relax"), ("analysis", "plot"))
MARGIN = 1.0  # seconds kept clear of a host deadline, so no step races the host's timer
LONGEST_WAIT = 10.0  # the machine waits past host deadlines at most this far off
LONGEST_PASS = 3.0  # `let_time_pass` lets at most this much time pass
SLACK = 0.05  # past a deadline by this much, so the host's strict comparison holds


class Divergence(AssertionError):
    """The host's behaviour differs from the model's prediction."""


@dataclass(frozen=True)
class _Expected:
    event: str
    key: tuple[Any, ...]


def _emit_key(event: str, data: Any) -> tuple[Any, ...]:
    if event == "task_status_event" and isinstance(data, dict):
        return (data.get("id"), data.get("status"), data.get("worker_id"), data.get("attempt"))
    return ()


def _now() -> datetime:
    return datetime.now(UTC)


class HostStateMachine(RuleBasedStateMachine):
    """Drive `target` through REST + Socket.IO and compare it with `LifecycleModel`."""

    target: ClassVar[HostTarget]
    policy: ClassVar[ModelPolicy] = ModelPolicy()
    runs: ClassVar[list[int]] = []  # steps of each finished run (set a list per subclass)

    def __init__(self) -> None:
        super().__init__()
        self.model = LifecycleModel(self.policy)
        self.rest = Rest(self.target)
        self.room = f"hm-{uuid.uuid4().hex[:10]}"
        self.steps: list[str] = []
        self.sockets: dict[str, WorkerSocket] = {}
        self.all_sockets: list[WorkerSocket] = []
        self.watcher: Watcher | None = None
        self.expected: list[_Expected] = []
        self.matched = 0  # watcher events already matched against the model
        self.terminal: dict[str, str] = {}  # task id -> the first terminal status listed
        self.silent: set[str] = set()  # workers the machine no longer heartbeats
        self.turn = 0

    # --- helpers ------------------------------------------------------------------------

    @property
    def owner(self) -> Token:
        return self.target.owner

    def actor(self, token: Token) -> Actor:
        return Actor(user=token.user, superuser=token.superuser)

    def job(self, index: int) -> str:
        category, name = JOBS[index % len(JOBS)]
        return job_full_name(self.room, category, name)

    def next_url(self) -> str:
        self.turn += 1
        return self.target.urls[self.turn % len(self.target.urls)]

    # Rules pick workers and tasks by position in registration (submission) order, never
    # by id: ids are the host's, new on every run, so a replayed example (Hypothesis
    # replays a failure to confirm it) picks the same ones.

    def live(self, status: WorkerStatus | None = None) -> list[str]:
        workers = self.model.state.workers.values()
        return [w.id for w in workers if not w.is_ended and (status is None or w.status is status)]

    def tasks_in(self, *statuses: TaskStatus) -> list[str]:
        return [t.id for t in self.model.state.tasks.values() if t.status in statuses]

    def deadlines(self) -> list[tuple[datetime, str]]:
        """The model's host deadlines, but for the heartbeat timeouts of workers the
        machine keeps alive (`keep_alive` beats them long before)."""
        return [
            (at, what)
            for at, what in self.model.deadlines()
            if not what.startswith("heartbeat:") or what.partition(":")[2] in self.silent
        ]

    def keep_alive(self) -> None:
        """Heartbeat (`PATCH /workers/{id}`, as the SDK does, connected or not) every live
        worker that is not silent once a third of the heartbeat timeout passed since its
        last beat, so only the silent ones ever rely on the host's own refresh or reach
        the timeout."""
        due = timedelta(seconds=self.policy.heartbeat_timeout_seconds / 3)
        now = _now()
        ending = {  # a grace window or drain deadline ends these about now: leave them be
            what.partition(":")[2]
            for at, what in self.model.deadlines()
            if what.startswith(("worker:", "drain:"))
            and (at - now).total_seconds() <= MARGIN + self.policy.sweep_interval_seconds
        }
        for worker_id in self.live():
            worker = self.model.state.workers[worker_id]
            if worker_id in self.silent or worker_id in ending:
                continue
            if now - worker.last_heartbeat < due:
                continue
            answer = self.rest.call("PATCH", f"/workers/{worker_id}", self.owner)
            outcome = self.run(
                RecordHeartbeat(now=_now(), actor=self.actor(self.owner), worker_id=worker_id)
            )
            self.expect_answer(outcome, answer, f"keep-alive heartbeat of {worker_id}")

    def pause_until(self, at: datetime) -> None:
        """Let time pass until just after `at` (waiting for the host's clock is the point
        here, not a stand-in for an event), heartbeating the workers kept alive."""
        step = max(min(self.policy.heartbeat_timeout_seconds / 6, 0.5), 0.01)
        while (remaining := (at - _now()).total_seconds() + SLACK) > 0:
            self.keep_alive()
            time.sleep(min(remaining, step))
        self.keep_alive()

    def catch_up(self) -> None:
        """Advance the model to now: what the host's timers and sweeper must have done."""
        for outcome in self.model.advance(_now()):
            self.expected.extend(self._expected_of(outcome))

    def diverged(self, what: str, expected: Any, shown: Any) -> Divergence:
        steps = "\n".join(f"  {n}. {s}" for n, s in enumerate(self.steps, start=1))
        return Divergence(
            f"host diverged from the model after step {len(self.steps)}: {what}\n"
            f"  model expects: {expected}\n  host shows:    {shown}\n"
            f"steps of this example (room {self.room}):\n{steps}"
        )

    def record(self, description: str) -> None:
        self.steps.append(description)

    def expect_answer(self, outcome: Outcome, answer: Answer, what: str) -> None:
        """The host accepted what the model accepts and refused what it refuses."""
        if outcome.accepted and not answer.ok:
            raise self.diverged(what, "accepted (2xx)", f"{answer.status} {answer.body}")
        if not outcome.accepted:
            if answer.ok:
                raise self.diverged(what, f"refused ({outcome.refused})", answer.status)
            if self.target.problem_codes and answer.code not in (None, outcome.refused):
                raise self.diverged(what, f"refused ({outcome.refused})", answer.code)

    def expect_ack(self, outcome: Outcome, ack: dict[str, Any], what: str) -> None:
        if outcome.accepted != (ack == {"ok": True}):
            expected = "ok" if outcome.accepted else f"error {outcome.refused}"
            raise self.diverged(what, expected, ack)

    def run(self, command: Command) -> Outcome:
        outcome = self.model.apply(command)
        for emission in self.model.watcher_emissions(outcome, self.room):
            self.expected.append(
                _Expected(emission.event, _emit_key(emission.event, emission.data))
            )
        return outcome

    # --- set up and tear down -----------------------------------------------------------

    @initialize()
    def watch_the_room(self) -> None:
        if self.target.socketio:
            self.watcher = Watcher(self.target.urls[0], self.owner, self.room).start()
        self.record(f"watch room {self.room}")

    def teardown(self) -> None:
        type(self).runs.append(len(self.steps) - 1)
        try:
            for sock in self.all_sockets:
                sock.close()
            for worker_id in self.live():
                self.rest.call("DELETE", f"/workers/{worker_id}", self.owner)
        finally:
            if self.watcher is not None:
                self.watcher.close()
            self.rest.close()

    # --- workers ------------------------------------------------------------------------

    def register_job(self, worker_id: str | None, index: int) -> str | None:
        """PUT a job for `worker_id` (None: the host creates the worker); its id."""
        category, name = JOBS[index % len(JOBS)]
        body: dict[str, Any] = {"category": category, "name": name, "schema": {}}
        if worker_id is not None:
            body["worker_id"] = worker_id
        if self.policy.on_worker_lost is not RunningTaskPolicy.FAIL:
            body["on_worker_lost"] = self.policy.on_worker_lost.value
        if self.policy.max_worker_losses != 3:
            body["max_worker_losses"] = self.policy.max_worker_losses
        answer = self.rest.call("PUT", f"/rooms/{self.room}/jobs", self.owner, body)
        created = worker_id is None
        if created:
            if not answer.ok:
                raise self.diverged(f"register job {name} with a new worker", "201", answer.body)
            worker_id = str(answer.body.get("worker_id"))
        command = RegisterJob(
            now=_now(), actor=self.actor(self.owner), room_id=self.room, category=category,
            name=name, schema={}, worker_id=worker_id, create_worker=created,
            allowed_categories=self.policy.allowed_categories,
            on_worker_lost=self.policy.on_worker_lost,
            max_worker_losses=self.policy.max_worker_losses,
        )  # fmt: skip
        self.expect_answer(self.run(command), answer, f"register job {name} for {worker_id}")
        return worker_id

    def connect(self, worker_id: str) -> WorkerSocket:
        """A new connection for `worker_id`; it speaks for the worker once a join of it
        is accepted."""
        sock = WorkerSocket(self.next_url(), self.owner, self.target.wait_seconds)
        self.all_sockets.append(sock)
        return sock

    def join(self, worker_id: str, sock: WorkerSocket, job: str) -> None:
        ack = sock.emit("join_job_room", {"job_name": job, "worker_id": worker_id})
        command = JoinJobRoom(
            now=_now(), actor=self.actor(self.owner), worker_id=worker_id, sid=sock.sid,
            job_name=job,
        )  # fmt: skip
        outcome = self.run(command)
        self.expect_ack(outcome, ack, f"join_job_room {job} for {worker_id}")
        if outcome.accepted:
            self.sockets[worker_id] = sock

    @rule(jobs=st.sampled_from([(0,), (1,), (0, 1)]), by_job=st.booleans(), connect=st.booleans())
    def register_worker(self, jobs: tuple[int, ...], by_job: bool, connect: bool) -> None:
        """POST /workers then PUT its jobs, or PUT a job that creates the worker; then
        (with Socket.IO) connect and join the job rooms."""
        if by_job:
            worker_id = self.register_job(None, jobs[0])
            assert worker_id is not None
            rest = jobs[1:]
        else:
            answer = self.rest.call("POST", "/workers", self.owner)
            if not answer.ok:
                raise self.diverged("POST /workers", "201", f"{answer.status} {answer.body}")
            worker_id = str(answer.body["id"])
            outcome = self.run(
                RegisterWorker(now=_now(), actor=self.actor(self.owner), worker_id=worker_id)
            )
            self.expect_answer(outcome, answer, "POST /workers")
            rest = jobs
        for index in rest:
            self.register_job(worker_id, index)
        connected = connect and self.target.socketio
        if connected:
            sock = self.connect(worker_id)
            for index in jobs:
                self.join(worker_id, sock, self.job(index))
        self.record(
            f"register worker {worker_id[:8]} for jobs {[self.job(i) for i in jobs]}"
            f"{' (connected)' if connected else ''}"
        )

    @precondition(lambda self: self.target.socketio and self.live(WorkerStatus.ONLINE))
    @rule(pick=st.integers(0, 7), job=st.integers(0, 1), new_connection=st.booleans())
    def join_job_room(self, pick: int, job: int, new_connection: bool) -> None:
        workers = self.live(WorkerStatus.ONLINE)
        worker_id = workers[pick % len(workers)]
        sock = self.sockets.get(worker_id)
        if sock is None or new_connection or not sock.client.connected:
            sock = self.connect(worker_id)
        self.join(worker_id, sock, self.job(job))
        self.record(f"worker {worker_id[:8]} joins {self.job(job)} on {sock.sid[:8]}")

    @precondition(lambda self: self.target.socketio and self.live(WorkerStatus.ONLINE))
    @rule(pick=st.integers(0, 7), job=st.integers(0, 1))
    def leave_job_room(self, pick: int, job: int) -> None:
        workers = [w for w in self.live(WorkerStatus.ONLINE) if w in self.sockets]
        if not workers:
            return
        worker_id = workers[pick % len(workers)]
        sock = self.sockets[worker_id]
        if not sock.client.connected:
            return
        ack = sock.emit("leave_job_room", {"job_name": self.job(job), "worker_id": worker_id})
        command = LeaveJobRoom(
            now=_now(), actor=self.actor(self.owner), worker_id=worker_id, sid=sock.sid,
            job_name=self.job(job),
        )  # fmt: skip
        self.expect_ack(self.run(command), ack, f"leave_job_room {self.job(job)}")
        self.record(f"worker {worker_id[:8]} leaves {self.job(job)}")

    @precondition(lambda self: self.live())
    @rule(pick=st.integers(0, 7))
    def heartbeat(self, pick: int) -> None:
        workers = self.live()
        worker_id = workers[pick % len(workers)]
        answer = self.rest.call("PATCH", f"/workers/{worker_id}", self.owner)
        outcome = self.run(
            RecordHeartbeat(now=_now(), actor=self.actor(self.owner), worker_id=worker_id)
        )
        self.expect_answer(outcome, answer, f"heartbeat of {worker_id}")
        self.record(f"heartbeat of worker {worker_id[:8]}")

    @precondition(lambda self: self.live())
    @rule(pick=st.integers(0, 7), by_admin=st.booleans())
    def leave(self, pick: int, by_admin: bool) -> None:
        """DELETE /workers/{id}: the owner leaves; a superuser deletes."""
        workers = self.live()
        worker_id = workers[pick % len(workers)]
        token = self.target.admin if by_admin and self.target.admin else self.owner
        answer = self.rest.call("DELETE", f"/workers/{worker_id}", token)
        command = RemoveWorker(now=_now(), actor=self.actor(token), worker_id=worker_id)
        self.expect_answer(self.run(command), answer, f"DELETE /workers/{worker_id}")
        self.record(f"DELETE worker {worker_id[:8]} by {token.user}")

    @precondition(lambda self: self.live())
    @rule(pick=st.integers(0, 7), abrupt=st.booleans())
    def disconnect(self, pick: int, abrupt: bool) -> None:
        """The worker's connection goes: torn down under it (abrupt) or closed; without
        Socket.IO its process goes silent. The model applies the policy's grace window."""
        workers = [  # with Socket.IO: the workers with a connection of their own to lose
            w
            for w in self.live(WorkerStatus.ONLINE)
            if not self.target.socketio or (w in self.sockets and self.sockets[w].client.connected)
        ]
        if not workers:
            return
        worker_id = workers[pick % len(workers)]
        sock = self.sockets.pop(worker_id, None)
        connected = sock is not None and sock.client.connected
        if sock is not None and connected:
            sock.tear_down() if abrupt else sock.close()
            sharing = [w for w, s in self.sockets.items() if s is sock]
        else:
            sharing = []
        how = "torn down" if abrupt else "closed"
        self.model.disconnect(_now(), worker_id, reason=how)
        self.expected.extend(self._expected_of(self.model.outcomes[-1]))
        for other in sharing:  # one connection may speak for several workers
            self.sockets.pop(other, None)
            self.model.disconnect(_now(), other, reason=how)
            self.expected.extend(self._expected_of(self.model.outcomes[-1]))
        self.record(f"connection of worker {worker_id[:8]} {how}")

    def _expected_of(self, outcome: Outcome) -> list[_Expected]:
        return [
            _Expected(e.event, _emit_key(e.event, e.data))
            for e in self.model.watcher_emissions(outcome, self.room)
        ]

    def within_grace(self) -> list[str]:
        now = _now()
        return [
            w.id
            for w in self.model.state.workers.values()
            if w.status is WorkerStatus.DISCONNECTED
            and w.grace_deadline is not None
            and (w.grace_deadline - now).total_seconds() > MARGIN
        ]

    @precondition(lambda self: self.target.socketio and self.within_grace())
    @rule(pick=st.integers(0, 7))
    def reconnect_within_grace(self, pick: int) -> None:
        candidates = self.within_grace()
        worker_id = candidates[pick % len(candidates)]
        jobs = sorted(self.model.state.workers[worker_id].jobs)
        if not jobs:
            return
        sock = self.connect(worker_id)
        self.join(worker_id, sock, jobs[0])
        self.record(f"worker {worker_id[:8]} reconnects within its grace window")

    def next_deadline(self) -> tuple[datetime, str] | None:
        deadlines = self.deadlines()
        if not deadlines or (deadlines[0][0] - _now()).total_seconds() > LONGEST_WAIT:
            return None
        return deadlines[0]

    @precondition(lambda self: self.next_deadline())
    @rule()
    def wait_past_deadline(self) -> None:
        """Let the next host deadline pass (a grace window, a claim lease, a silent
        worker's heartbeat timeout, a drain's deadline), if it is near enough."""
        found = self.next_deadline()
        if found is None:
            return
        at, what = found
        self.pause_until(at)
        self.record(f"wait past the deadline of {what}")

    def waiting_on_time(self) -> bool:
        """A live worker is silent or disconnected: time passing is its lifecycle."""
        return any(
            w in self.silent or self.model.state.workers[w].status is WorkerStatus.DISCONNECTED
            for w in self.live()
        )

    @precondition(lambda self: self.waiting_on_time())
    @rule(seconds=st.floats(0.5, LONGEST_PASS))
    def let_time_pass(self, seconds: float) -> None:
        """Let `seconds` pass with no step (the keep-alive beats on), so host deadlines
        that are not the next one (a silent or disconnected worker's heartbeat timeout, a
        grace window an earlier resume should have cancelled) pass between other steps.
        Stops just past the nearest host deadline when the wait would end past it or
        within the margin before it (no step starts racing a deadline), else at `seconds`;
        then the model advances to now, as the check after it expects."""
        at = _now() + timedelta(seconds=seconds)
        margin = timedelta(seconds=MARGIN + self.policy.sweep_interval_seconds)
        deadlines = self.deadlines()
        what = f"{seconds:.2f} s pass"
        if deadlines and at >= deadlines[0][0] - margin:
            at, nearest = deadlines[0]
            what = f"time passes the deadline of {nearest}"
        self.pause_until(at)
        self.catch_up()
        self.record(what)

    @precondition(lambda self: self.target.socketio and self.model.state.workers)
    @rule(pick=st.integers(0, 7))
    def reconnect_past_grace(self, pick: int) -> None:
        """A worker the host ended comes back: its join is refused, nothing changes."""
        ended = [w.id for w in self.model.state.workers.values() if w.is_ended and w.jobs]
        ended = ended or [w.id for w in self.model.state.workers.values() if w.is_ended]
        if not ended:
            return
        worker_id = ended[pick % len(ended)]
        sock = WorkerSocket(self.next_url(), self.owner, self.target.wait_seconds)
        self.all_sockets.append(sock)
        self.join(worker_id, sock, self.job(0))
        self.record(f"ended worker {worker_id[:8]} tries to join again")

    def silence_candidates(self) -> list[str]:
        return [w for w in self.live(WorkerStatus.ONLINE) if w not in self.silent]

    @precondition(
        lambda self: (
            self.policy.heartbeat_timeout_seconds <= LONGEST_WAIT and self.silence_candidates()
        )
    )
    @rule(pick=st.integers(0, 7), wait=st.sampled_from([False, False, True]))
    def go_silent(self, pick: int, wait: bool) -> None:
        """A worker stops heartbeating (its process hangs). Without a connection the host
        keeps alive (`ModelPolicy.refreshes_connected`) it is lost once the heartbeat
        timeout passed; a connected one stays. `wait`: wait here until the host's
        deadline passed (else later steps run while it is silent)."""
        candidates = self.silence_candidates()
        worker_id = candidates[pick % len(candidates)]
        self.silent.add(worker_id)
        worker = self.model.state.workers[worker_id]
        kept = self.model.refreshed(worker)
        if wait:
            timeout = timedelta(seconds=self.policy.heartbeat_timeout_seconds)
            at = max(worker.last_heartbeat + timeout, _now())
            if kept:  # the host's next sweep after the deadline must keep it
                at += timedelta(seconds=self.policy.sweep_interval_seconds + 0.2)
            self.pause_until(at)
            self.catch_up()
        self.record(
            f"worker {worker_id[:8]} goes silent{' (connected)' if kept else ''}"
            f"{', wait past its heartbeat timeout' if wait else ''}"
        )

    def operator(self, by: str) -> Token | None:
        """The operator's token (`admin`); also the owner, or another user (refused)."""
        if self.target.admin is None:
            return None
        return {"owner": self.owner, "other": self.target.other}.get(by, self.target.admin)

    @precondition(lambda self: self.target.admin is not None and self.live())
    @rule(
        pick=st.integers(0, 7),
        by=st.sampled_from(["admin", "admin", "owner", "other"]),
        deadline=st.sampled_from([None, None, 2.0]),
    )
    def drain(self, pick: int, by: str, deadline: float | None) -> None:
        """POST /workers/{id}/drain: the worker claims nothing from now on and leaves once
        it holds nothing (at once when idle); past `deadline` a sweep ends it."""
        workers = self.live()
        worker_id = workers[pick % len(workers)]
        token = self.operator(by)
        if token is None:
            return
        body: dict[str, Any] = {"reason": "maintenance"}
        if deadline is not None:
            body["deadline_seconds"] = deadline
        answer = self.rest.call("POST", f"/workers/{worker_id}/drain", token, body)
        command = DrainWorker(
            now=_now(), actor=self.actor(token), worker_id=worker_id, reason="maintenance",
            deadline_seconds=deadline,
        )  # fmt: skip
        self.expect_answer(self.run(command), answer, f"drain worker {worker_id} by {token.user}")
        within = f" within {deadline:g} s" if deadline is not None else ""
        self.record(f"{token.user} drains worker {worker_id[:8]}{within}")

    @precondition(lambda self: self.target.admin is not None and self.model.state.tasks)
    @rule(
        pick=st.integers(0, 15),
        by=st.sampled_from(["admin", "admin", "owner", "other"]),
        held=st.booleans(),
    )
    def requeue(self, pick: int, by: str, held: bool) -> None:
        """POST /tasks/{id}/requeue: a claimed or running task goes back to its queue (its
        attempt fenced); any other task is refused. `held`: pick a held task if any."""
        tasks = (held and self.tasks_in(TaskStatus.CLAIMED, TaskStatus.RUNNING)) or list(
            self.model.state.tasks
        )
        task_id = tasks[pick % len(tasks)]
        token = self.operator(by)
        if token is None:
            return
        answer = self.rest.call("POST", f"/tasks/{task_id}/requeue", token, {"reason": "stuck"})
        command = RequeueTask(now=_now(), actor=self.actor(token), task_id=task_id, reason="stuck")
        self.expect_answer(self.run(command), answer, f"requeue task {task_id} by {token.user}")
        self.record(f"{token.user} requeues task {task_id[:8]}")

    # --- tasks --------------------------------------------------------------------------

    @rule(job=st.integers(0, 1), payload=wst.payloads())
    def submit(self, job: int, payload: dict[str, Any]) -> None:
        name = self.job(job)
        answer = self.rest.call("POST", f"/rooms/{self.room}/tasks/{name}", self.owner,
                                {"payload": payload})  # fmt: skip
        task_id = str(answer.body.get("id")) if answer.ok else f"never-{uuid.uuid4()}"
        command = SubmitTask(
            now=_now(), actor=self.actor(self.owner), task_id=task_id, job_name=name,
            room_id=self.room, payload=payload,
        )  # fmt: skip
        self.expect_answer(self.run(command), answer, f"submit to {name}")
        self.record(f"submit task {task_id[:8]} to {name}")

    @precondition(lambda self: self.live())
    @rule(pick=st.integers(0, 7))
    def claim(self, pick: int) -> None:
        workers = self.live()
        worker_id = workers[pick % len(workers)]
        answer = self.rest.call("POST", "/tasks/claim", self.owner, {"worker_id": worker_id})
        candidate = self.model.next_claim(worker_id)
        body = answer.body if isinstance(answer.body, dict) else {}
        got = body.get("task")
        taken = str(got["id"]) if isinstance(got, dict) else None
        command = ClaimTask(
            now=_now(), actor=self.actor(self.owner), task_id=candidate or taken or "none",
            worker_id=worker_id,
        )  # fmt: skip
        if candidate is None:
            # nothing to claim: the host answers no task (or refuses as the model does)
            outcome = self.model.apply(command) if taken is not None else None
            if taken is not None:
                raise self.diverged(f"claim by {worker_id}", "no task", got)
            self.record(f"worker {worker_id[:8]} claims: nothing pending")
            del outcome
            return
        outcome = self.run(command)
        what = f"claim by worker {worker_id}"
        if outcome.accepted:
            if taken != candidate:
                raise self.diverged(what, f"task {candidate} (oldest pending)", got)
        elif answer.ok and taken is not None:
            raise self.diverged(what, f"refused ({outcome.refused})", got)
        elif not answer.ok:
            self.expect_answer(outcome, answer, what)
        self.record(f"worker {worker_id[:8]} claims {(taken or 'nothing')[:8]}")

    def report(self, task_id: str, status: TaskStatus, worker_id: str | None,
               attempt: int | None, token: Token, error: str | None = None) -> Outcome:  # fmt: skip
        body: dict[str, Any] = {"status": status.value}
        if error is not None:
            body["error"] = error
        if self.target.fencing:
            if worker_id is not None:
                body["worker_id"] = worker_id
            if attempt is not None:
                body["attempt"] = attempt
        else:
            worker_id = attempt = None
        answer = self.rest.call("PATCH", f"/tasks/{task_id}", token, body)
        command = UpdateTask(
            now=_now(), actor=self.actor(token), task_id=task_id, status=status, error=error,
            worker_id=worker_id, attempt=attempt,
        )  # fmt: skip
        outcome = self.run(command)
        self.expect_answer(outcome, answer, f"PATCH task {task_id} {body}")
        return outcome

    @precondition(lambda self: self.tasks_in(TaskStatus.CLAIMED, TaskStatus.RUNNING))
    @rule(pick=st.integers(0, 7), status=st.sampled_from(
        [TaskStatus.RUNNING, TaskStatus.COMPLETED, TaskStatus.FAILED]))  # fmt: skip
    def report_progress(self, pick: int, status: TaskStatus) -> None:
        """The holder reports running, completed or failed for its current attempt."""
        held = self.tasks_in(TaskStatus.CLAIMED, TaskStatus.RUNNING)
        task = self.model.state.tasks[held[pick % len(held)]]
        error = "it broke" if status is TaskStatus.FAILED else None
        self.report(task.id, status, task.worker_id, task.attempt, self.owner, error)
        self.record(f"holder reports {status.value} for task {task.id[:8]}")

    @precondition(lambda self: self.model.state.tasks)
    @rule(pick=st.integers(0, 15))
    def cancel(self, pick: int) -> None:
        tasks = list(self.model.state.tasks)
        task_id = tasks[pick % len(tasks)]
        self.report(task_id, TaskStatus.CANCELLED, None, None, self.owner)
        self.record(f"submitter cancels task {task_id[:8]}")

    def stale_candidates(self) -> list[str]:
        return [
            t.id
            for t in self.model.state.tasks.values()
            if t.attempt_workers and (t.status is TaskStatus.PENDING or t.attempt > 1)
        ]

    @precondition(lambda self: self.stale_candidates())
    @rule(
        pick=st.integers(0, 7), status=st.sampled_from([TaskStatus.RUNNING, TaskStatus.COMPLETED])
    )
    def report_stale_attempt(self, pick: int, status: TaskStatus) -> None:
        """A worker reports for an attempt that is no longer the task's current one."""
        candidates = self.stale_candidates()
        task = self.model.state.tasks[candidates[pick % len(candidates)]]
        index = 0 if task.status is not TaskStatus.PENDING else len(task.attempt_workers) - 1
        old_worker = task.attempt_workers[index]
        outcome = self.report(task.id, status, old_worker, index + 1, self.owner)
        self.record(f"stale report {status.value} for task {task.id[:8]} attempt {index + 1}")
        if self.target.fencing and outcome.accepted:
            raise self.diverged("the model accepted a stale report", "refusal", outcome)

    @precondition(lambda self: self.tasks_in(TaskStatus.CLAIMED, TaskStatus.RUNNING))
    @rule(pick=st.integers(0, 7), kind=st.sampled_from(["report", "claim", "join"]))
    def forge_worker_id(self, pick: int, kind: str) -> None:
        """A worker id that never held the task, or another user's worker: refused,
        nothing changes."""
        held = self.tasks_in(TaskStatus.CLAIMED, TaskStatus.RUNNING)
        task = self.model.state.tasks[held[pick % len(held)]]
        never = [w for w in self.live() if w not in task.attempt_workers]
        forged = never[0] if never else str(uuid.uuid4())
        if kind == "report" and self.target.fencing:
            self.report(task.id, TaskStatus.COMPLETED, forged, task.attempt, self.owner)
        elif kind == "claim" and self.target.other is not None and task.worker_id:
            other = self.target.other
            answer = self.rest.call("POST", "/tasks/claim", other, {"worker_id": task.worker_id})
            command = ClaimTask(
                now=_now(), actor=self.actor(other), task_id=task.id, worker_id=task.worker_id
            )
            self.expect_answer(self.run(command), answer, "claim for another user's worker")
        elif kind == "join" and self.target.socketio and self.target.other and task.worker_id:
            sock = WorkerSocket(self.next_url(), self.target.other, self.target.wait_seconds)
            self.all_sockets.append(sock)
            ack = sock.emit("join_job_room", {"job_name": task.job_name,
                                              "worker_id": task.worker_id})  # fmt: skip
            command2 = JoinJobRoom(
                now=_now(), actor=self.actor(self.target.other), worker_id=task.worker_id,
                sid=sock.sid, job_name=task.job_name,
            )  # fmt: skip
            self.expect_ack(self.run(command2), ack, "join_job_room for another user's worker")
        else:
            return
        self.record(f"forged worker id ({kind}) against task {task.id[:8]}")

    @rule(hostile=wst.hostile_requests())
    def send_hostile_input(self, hostile: wst.HostileRequest) -> None:
        """Input beyond the boundary limits: refused with a 4xx, nothing changes."""
        path = hostile.path.replace("{room}", self.room).replace("{job}", self.job(0))
        answer = self.rest.call(hostile.method, path, self.owner, headers=hostile.headers,
                                content=hostile.body)  # fmt: skip
        if not 400 <= answer.status < 500:
            raise self.diverged(f"hostile input: {hostile.why}", "a 4xx refusal",
                                f"{answer.status} {str(answer.body)[:200]}")  # fmt: skip
        self.record(f"hostile input ({hostile.why}) refused with {answer.status}")

    # --- the check after every step -----------------------------------------------------

    @invariant()
    def host_matches_the_model(self) -> None:
        """Check, then check again while a deadline came near meanwhile, so the next step
        starts clear of every host deadline."""
        if not self.steps:
            return
        while True:
            self.keep_alive()
            self.settle()
            self.converge()
            self.check_emissions()
            if not self.near_deadlines():
                return

    def near_deadlines(self) -> list[datetime]:
        """Deadlines the next step could race: within `MARGIN` plus the host's sweep
        interval (how late the host may act on a deadline that just passed, so a check
        never waits on one while the next one passes)."""
        now, margin = _now(), MARGIN + self.policy.sweep_interval_seconds
        return [at for at, _ in self.deadlines() if (at - now).total_seconds() <= margin]

    def settle(self) -> None:
        """Deadlines at or near now: wait until they pass, then advance the model."""
        near = self.near_deadlines()
        if near:
            self.pause_until(max(near))
            self.catch_up()

    def view(self) -> dict[str, Any]:
        """The host's REST view of what the model knows: the room's tasks, the workers
        the machine made (live or not), the room's listed jobs, and (`history`) the state
        each task's and worker's history replays to."""
        tasks = self.rest.listing(f"/rooms/{self.room}/tasks", self.owner)
        workers = self.rest.listing("/workers", self.owner)
        jobs = self.rest.listing(f"/rooms/{self.room}/jobs", self.owner)
        fenced = self.target.fencing
        known = set(self.model.state.workers)
        return {
            "history": self.histories() if self.target.history else {},
            "tasks": {
                str(t["id"]): TaskView(
                    id=str(t["id"]),
                    job_name=str(t.get("job_name")),
                    room_id=str(t.get("room_id")),
                    status=str(t.get("status")),
                    worker_id=None if t.get("worker_id") is None else str(t["worker_id"]),
                    attempt=int(t.get("attempt", 0)) if fenced else 0,
                    failed=t.get("error") is not None,
                )
                for t in tasks
            },
            "workers": sorted(str(w["id"]) for w in workers if str(w["id"]) in known),
            "draining": sorted(
                str(w["id"]) for w in workers if str(w["id"]) in known and w.get("draining")
            ),
            "jobs": {
                str(j["full_name"]): sorted(str(w) for w in j.get("workers", [])) for j in jobs
            },
        }

    def predicted(self) -> dict[str, Any]:
        tasks = self.model.tasks(self.room)
        if not self.target.fencing:
            tasks = {k: _without_attempt(v) for k, v in tasks.items()}
        return {
            "history": self.predicted_histories() if self.target.history else {},
            "tasks": tasks,
            "workers": sorted(self.live()),
            "draining": sorted(w for w in self.live() if self.model.state.workers[w].draining),
            "jobs": {
                name: sorted(job.workers) for name, job in self.model.listed_jobs(self.room).items()
            },
        }

    def converge(self) -> None:
        """Poll the host's REST view until it equals the model's, or the deadline."""
        wait = self.target.wait_seconds + self.policy.sweep_interval_seconds
        deadline = time.monotonic() + wait
        while True:
            expected = self.predicted()
            shown = self.view()
            self.check_terminal_once(shown["tasks"])
            if shown == expected:
                return
            if time.monotonic() > deadline:
                raise self.diverged("REST view", *_differences(expected, shown))
            time.sleep(0.05)  # REST polled with a deadline
            self.keep_alive()

    def check_terminal_once(self, tasks: dict[str, TaskView]) -> None:
        for task in tasks.values():
            if task.status in {s.value for s in TERMINAL_STATUSES}:
                first = self.terminal.setdefault(task.id, task.status)
                if first != task.status:
                    raise self.diverged(f"task {task.id} ended twice", first, task.status)

    def check_emissions(self) -> None:
        """The watcher received every emission the model sent to the room (awaited),
        and no task event the model did not send."""
        if self.watcher is None:
            self.expected.clear()
            return
        wanted = [e for e in self.expected if e.event == "task_status_event"]
        invalidates = any(e.event == "jobs_invalidate" for e in self.expected)

        def arrived(events: list[tuple[str, Any]]) -> bool:
            got = Counter(
                _emit_key(n, d) for n, d in events[self.matched :] if n == "task_status_event"
            )
            need = Counter(e.key for e in wanted)
            ok = all(got[key] >= count for key, count in need.items())
            return ok and (not invalidates or any(n == "jobs_invalidate" for n, _ in events))

        wait = self.target.wait_seconds + self.policy.sweep_interval_seconds
        if not self.watcher.wait_until(arrived, wait):
            seen = [(n, _emit_key(n, d)) for n, d in self.watcher.events[self.matched :]]
            where = f"emissions to {room_of_watchers(self.room)}"
            raise self.diverged(where, [(e.event, e.key) for e in self.expected], seen)
        events = list(self.watcher.events)
        got = Counter(
            _emit_key(n, d) for n, d in events[self.matched :] if n == "task_status_event"
        )
        extra = got - Counter(e.key for e in wanted)
        if extra:
            also = f"also {sorted(extra.elements(), key=str)}"
            where = f"task_status_event to {room_of_watchers(self.room)}"
            raise self.diverged(where, [e.key for e in wanted], also)
        self.matched = len(events)
        self.expected.clear()

    def histories(self) -> dict[str, Any]:
        """What each task's and worker's history replays to (status, holder, attempts;
        status and held tasks)."""
        found: dict[str, Any] = {}
        for task_id in sorted(self.model.tasks(self.room)):
            state = self._history_state(f"/tasks/{task_id}/history")
            found[f"task {task_id}"] = None if state is None else (
                state.get("status"), state.get("worker_id"), state.get("attempt"),
                list(state.get("attempt_workers", [])),
            )  # fmt: skip
        for worker_id in sorted(self.model.state.workers):
            state = self._history_state(f"/workers/{worker_id}/history")
            found[f"worker {worker_id}"] = None if state is None else (
                state.get("status"), sorted(state.get("tasks", [])))  # fmt: skip
        return found

    def _history_state(self, path: str) -> dict[str, Any] | None:
        answer = self.rest.call("GET", path, self.owner)
        state = answer.body.get("state") if isinstance(answer.body, dict) else None
        return state if isinstance(state, dict) else None

    def predicted_histories(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for task_id in sorted(self.model.tasks(self.room)):
            task = self.model.state.tasks[task_id]
            found[f"task {task_id}"] = (task.status.value, task.worker_id, task.attempt,
                                        list(task.attempt_workers))  # fmt: skip
        for worker in sorted(self.model.state.workers.values(), key=lambda w: w.id):
            found[f"worker {worker.id}"] = (worker.status.value, sorted(worker.tasks))
        return found


def _without_attempt(task: TaskView) -> TaskView:
    return TaskView(task.id, task.job_name, task.room_id, task.status, task.worker_id, 0,
                    task.failed)  # fmt: skip


def _differences(expected: dict[str, Any], shown: dict[str, Any]) -> tuple[Any, Any]:
    """Only the entries that differ, to keep a divergence report short."""
    want: dict[str, Any] = {}
    got: dict[str, Any] = {}
    for part in ("history", "tasks", "workers", "draining", "jobs"):
        a, b = expected[part], shown[part]
        if a == b:
            continue
        if isinstance(a, dict):
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    want[f"{part}[{key}]"] = a.get(key, "(absent)")
                    got[f"{part}[{key}]"] = b.get(key, "(absent)")
        else:
            want[part], got[part] = a, b
    return want, got


def machine_settings(examples: int, steps: int, *, shrink: bool = True) -> settings:
    """Hypothesis settings for a live host: no deadline (a step waits for the host), no
    database of examples (a host's ids differ per run); `shrink=False` reports the first
    failing run as found (shrinking replays it many times against the host)."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
    )
