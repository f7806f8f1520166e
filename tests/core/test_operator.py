"""Operator commands of the core: drain (decide_workers rule 9), requeue (decide_tasks
rule 10), remove with a reason (decide_workers rule 10); one example each.

Given events folded with `fold`, when a command is handled with `handle`, then the
exact events and emissions. A rejected command raises a DomainError and changes nothing.
"""

from __future__ import annotations

import pytest
from support.builders import (
    ALICE,
    BOB,
    CAROL,
    JOB,
    ROOM,
    ROOT,
    at,
    claimed,
    connected,
    job,
    rejects,
    report,
    status_event,
    submitted,
    task_available,
    worker,
)
from workerledger.core import (
    DRAIN_DEADLINE_PASSED,
    ClaimTask,
    DisconnectSid,
    DrainWorker,
    Emit,
    Event,
    ExpireClaim,
    JoinJobRoom,
    LeaveRoom,
    RemoveWorker,
    RequeueTask,
    RunningTaskPolicy,
    SweepWorker,
    TaskStatus,
    WorkerStatus,
    fold,
    handle,
)
from workerledger.core import errors as err
from workerledger.core import events as ev

ONLINE: list[Event] = [job(), *worker(), *connected()]
JOBS_INVALIDATE = Emit(event="jobs_invalidate", data={}, to=f"room:{ROOM}")


def drain(actor: object = ROOT, deadline: float | None = None, now: float = 5) -> DrainWorker:
    return DrainWorker.model_validate(
        {"now": at(now), "actor": actor, "worker_id": "w1", "reason": "deploy",
         "deadline_seconds": deadline}
    )  # fmt: skip


def drain_notice(deadline: str | None = None) -> Emit:
    data = {"worker_id": "w1", "reason": "deploy", "deadline": deadline, "by": "root"}
    return Emit(event="worker_drain", data=data, to="s1")


def draining(now: float = 2, reason: str = "deploy") -> ev.WorkerDrainRequested:
    """The drain of w1 by root (no deadline)."""
    return ev.WorkerDrainRequested(worker_id="w1", by="root", reason=reason, at=at(now))


def drained_left(now: float) -> list[Event]:
    return [
        ev.WorkerLeft(worker_id="w1", by="root", reason="drained: deploy", at=at(now)),
        ev.JobWorkerUnlinked(job_name=JOB, worker_id="w1", reason="left: drained: deploy",
                             at=at(now)),
    ]  # fmt: skip


# --- drain ----------------------------------------------------------------------------


def test_draining_an_idle_worker_ends_it_at_once_as_left_by_the_drainer() -> None:
    # given an idle connected worker; when a superuser drains it
    decision = handle(fold(ONLINE), drain())
    # then the drain and the end (by the drainer, with the reason) in one decision
    assert decision.events == (
        ev.WorkerDrainRequested(worker_id="w1", by="root", reason="deploy", at=at(5)),
        *drained_left(5),
    )
    after = decision.state.workers["w1"]
    assert (
        after.status is WorkerStatus.LEFT and after.end_reason == "left (by root): drained: deploy"
    )
    assert (after.draining_since, after.drained_by, after.drain_reason) == (at(5), "root", "deploy")
    # its connection leaves the job room and is told; the job's watchers see the unlink
    assert decision.emissions == (
        LeaveRoom(sid="s1", room=f"jobs:{JOB}"),
        drain_notice(),
        JOBS_INVALIDATE,
    )


def test_a_busy_worker_drains_keeps_its_task_and_claims_nothing() -> None:
    # given a worker running t1 with t2 pending; when its owner drains it, deadline 60 s
    state = fold([*ONLINE, submitted(), submitted("t2"), *claimed(running=True)])
    decision = handle(state, drain(ALICE, deadline=60))
    # then only the drain: it still holds t1
    assert decision.events == (
        ev.WorkerDrainRequested(
            worker_id="w1", by="alice", reason="deploy", deadline=at(65), at=at(5)
        ),
    )
    drained = decision.state.workers["w1"]
    assert drained.status is WorkerStatus.ONLINE and drained.tasks == frozenset({"t1"})
    assert drained.rooms == frozenset() and drained.drain_deadline == at(65)
    notice = Emit(
        event="worker_drain",
        data={"worker_id": "w1", "reason": "deploy", "deadline": at(65).isoformat(), "by": "alice"},
        to="s1",
    )
    assert decision.emissions == (LeaveRoom(sid="s1", room=f"jobs:{JOB}"), notice)
    # and a claim is refused as draining (the REST claim answers "no task")
    claim = ClaimTask(now=at(6), actor=ALICE, task_id="t2", worker_id="w1")
    rejects(decision.state, claim, err.WorkerDrainingError)


def test_draining_again_records_nothing() -> None:
    state = fold([*ONLINE, submitted(), *claimed(), draining()])
    decision = handle(state, drain(ALICE, deadline=1))
    assert (decision.events, decision.emissions) == ((), ())
    assert decision.state.workers["w1"].drain_deadline is None  # the first drain stands


@pytest.mark.parametrize("actor", [BOB, CAROL])
def test_only_the_owner_or_a_superuser_drains(actor: object) -> None:
    rejects(fold(ONLINE), drain(actor), err.ForbiddenError)


def test_draining_an_ended_or_unknown_worker_is_not_found() -> None:
    left = fold([*ONLINE, ev.WorkerLeft(worker_id="w1", by="alice", at=at(1))])
    rejects(left, drain(), err.WorkerNotFoundError)
    rejects(fold([job()]), drain(), err.WorkerNotFoundError)


def test_the_report_releasing_the_last_task_ends_the_draining_worker() -> None:
    # given a draining worker running t1
    state = fold([*ONLINE, submitted(), *claimed(running=True), draining()])
    # when its completion arrives
    decision = handle(state, report(TaskStatus.COMPLETED))
    # then the completion, the release and the drained end, in one decision
    assert decision.events == (
        ev.TaskCompleted(task_id="t1", worker_id="w1", attempt=1, at=at(9)),
        ev.WorkerTaskReleased(worker_id="w1", task_id="t1", status=TaskStatus.COMPLETED, at=at(9)),
        *drained_left(9),
    )
    assert decision.state.workers["w1"].status is WorkerStatus.LEFT
    assert decision.state.tasks["t1"].status is TaskStatus.COMPLETED


def test_a_report_that_leaves_a_task_held_does_not_end_the_draining_worker() -> None:
    holding = [*claimed(), *claimed("t2", attempt=1)]
    state = fold([*ONLINE, submitted(), submitted("t2"), *holding, draining()])
    decision = handle(state, report(TaskStatus.RUNNING))
    assert [type(e) for e in decision.events] == [ev.TaskStarted]
    decision = handle(decision.state, report(TaskStatus.FAILED, error="boom"))
    assert [type(e) for e in decision.events] == [ev.TaskFailed, ev.WorkerTaskReleased]
    assert decision.state.workers["w1"].tasks == frozenset({"t2"})


def test_a_claim_lease_expiry_of_the_last_task_ends_the_draining_worker() -> None:
    state = fold([*ONLINE, submitted(), *claimed(), draining()])
    decision = handle(state, ExpireClaim(now=at(40), task_id="t1", claim_timeout_seconds=30))
    assert [type(e) for e in decision.events] == [
        ev.TaskRequeued, ev.WorkerTaskReleased, ev.WorkerLeft, ev.JobWorkerUnlinked,
    ]  # fmt: skip
    assert decision.state.workers["w1"].is_ended


def test_a_drain_past_its_deadline_is_swept_and_releases_by_policy() -> None:
    # given a draining worker (deadline at 65) running t1 of a requeue job
    events = [job(policy=RunningTaskPolicy.REQUEUE), *worker(), *connected(), submitted(),
              *claimed(running=True)]  # fmt: skip
    state = handle(fold(events), drain(deadline=60)).state
    sweep = SweepWorker(now=at(64), worker_id="w1", heartbeat_timeout_seconds=3600)
    assert handle(state, sweep).events == ()  # before the deadline
    # when a sweep runs at the deadline
    decision = handle(state, sweep.model_copy(update={"now": at(65)}))
    # then lost with the drain's reason; t1 requeued (policy), the socket kicked
    assert decision.events[:2] == (
        ev.WorkerLost(worker_id="w1", reason=DRAIN_DEADLINE_PASSED, at=at(65)),
        ev.TaskRequeued(task_id="t1", worker_id="w1", attempt=1, reason=DRAIN_DEADLINE_PASSED,
                        was_running=True, at=at(65)),
    )  # fmt: skip
    assert DisconnectSid(sid="s1") in decision.emissions
    assert decision.state.tasks["t1"].losses == 1


def test_a_draining_worker_that_reconnects_resumes_without_a_job_room_and_is_told_again() -> None:
    dropped = ev.WorkerDisconnected(
        worker_id="w1", sid="s1", reason="ping", grace_deadline=at(30), at=at(3)
    )
    state = fold([*ONLINE, submitted(), *claimed(running=True), draining(), dropped])
    join = JoinJobRoom(now=at(4), actor=ALICE, worker_id="w1", sid="s2", job_name=JOB)
    decision = handle(state, join)
    assert [type(e) for e in decision.events] == [ev.ConnectionAttached, ev.WorkerResumed]
    after = decision.state.workers["w1"]
    assert (after.status, after.rooms, after.tasks) == (WorkerStatus.ONLINE, frozenset(), {"t1"})
    data = {"worker_id": "w1", "reason": "deploy", "deadline": None, "by": "root"}
    assert decision.emissions == (Emit(event="worker_drain", data=data, to="s2"),)
    # the same connection joining again records nothing
    assert handle(decision.state, join).events == ()


# --- requeue --------------------------------------------------------------------------


@pytest.mark.parametrize("running", [False, True])
def test_requeue_puts_a_held_task_back_and_fences_the_old_attempt(running: bool) -> None:
    # given w1 holds t1; when a superuser requeues it
    state = fold([*ONLINE, submitted(), *claimed(running=running)])
    decision = handle(state, RequeueTask(now=at(5), actor=ROOT, task_id="t1", reason="stuck"))
    # then requeued by root with the reason, released by w1
    assert decision.events == (
        ev.TaskRequeued(task_id="t1", worker_id="w1", attempt=1, reason="requeued by root: stuck",
                        was_running=running, by="root", at=at(5)),
        ev.WorkerTaskReleased(worker_id="w1", task_id="t1", status=TaskStatus.PENDING, at=at(5)),
    )  # fmt: skip
    task = decision.state.tasks["t1"]
    assert (task.status, task.worker_id, task.losses, task.requeues) == (
        TaskStatus.PENDING,
        None,
        0,
        1,
    )
    # the watchers see it pending, its job's workers are woken, the old holder is told
    cancelled = {"task_id": "t1", "attempt": 1, "error": "requeued by root: stuck"}
    assert decision.emissions == (
        status_event(task),
        task_available(),
        Emit(event="task_cancelled", data=cancelled, to="s1"),
    )
    # the next claim raises the attempt; the old holder's late report is stale
    claim = ClaimTask(now=at(6), actor=ALICE, task_id="t1", worker_id="w1")
    state = handle(decision.state, claim).state
    assert state.tasks["t1"].attempt == 2
    refusal = rejects(state, report(TaskStatus.COMPLETED), err.StaleAttemptError)
    assert [type(e) for e in refusal.record] == [ev.TaskReportRejected]


def test_the_holders_owner_may_requeue_but_not_another_user() -> None:
    state = fold([*ONLINE, submitted(), *claimed()])
    assert handle(state, RequeueTask(now=at(5), actor=ALICE, task_id="t1", reason="x")).events
    # bob submitted it: he may cancel it, not requeue it
    rejects(state, RequeueTask(now=at(5), actor=BOB, task_id="t1", reason="x"), err.ForbiddenError)


@pytest.mark.parametrize("status", [None, TaskStatus.COMPLETED])
def test_only_a_held_task_can_be_requeued(status: TaskStatus | None) -> None:
    events: list[Event] = [*ONLINE, submitted()]
    if status is not None:
        events += [*claimed(running=True), ev.TaskCompleted(task_id="t1", worker_id="w1",
                                                            attempt=1, at=at(1))]  # fmt: skip
    command = RequeueTask(now=at(5), actor=ROOT, task_id="t1", reason="x")
    rejects(fold(events), command, err.InvalidTransitionError)
    rejects(fold(events), command.model_copy(update={"task_id": "t9"}), err.TaskNotFoundError)


def test_requeueing_a_draining_workers_last_task_ends_the_worker() -> None:
    state = fold([*ONLINE, submitted(), *claimed(running=True), draining()])
    decision = handle(state, RequeueTask(now=at(5), actor=ROOT, task_id="t1", reason="move"))
    assert [type(e) for e in decision.events] == [
        ev.TaskRequeued, ev.WorkerTaskReleased, ev.WorkerLeft, ev.JobWorkerUnlinked,
    ]  # fmt: skip


# --- remove with a reason -------------------------------------------------------------


def test_remove_records_the_operators_reason() -> None:
    state = fold([*ONLINE, submitted(), *claimed(running=True)])
    command = RemoveWorker(now=at(5), actor=ROOT, worker_id="w1", reason="bad disk")
    decision = handle(state, command)
    assert decision.events[0] == ev.WorkerDeleted(
        worker_id="w1", by="root", reason="bad disk", at=at(5)
    )
    failed = decision.events[1]
    assert isinstance(failed, ev.TaskFailed)
    assert failed.error == "Worker disconnected (worker deleted: bad disk)"
    assert decision.state.workers["w1"].end_reason == "deleted (by root): bad disk"
    owner = handle(state, command.model_copy(update={"actor": ALICE}))
    assert owner.events[0] == ev.WorkerLeft(worker_id="w1", by="alice", reason="bad disk", at=at(5))


def test_a_task_run_by_the_internal_executor_cannot_be_requeued() -> None:
    internal = "@internal:modifiers:calc"
    dispatched = ev.TaskDispatched(task_id="t1", attempt=1, at=at(1))
    state = fold([job(internal), submitted(job=internal), dispatched])
    command = RequeueTask(now=at(5), actor=ROOT, task_id="t1", reason="x")
    refusal = rejects(state, command, err.InvalidTransitionError)
    assert "internal executor" in refusal.detail
