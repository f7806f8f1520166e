"""Rules of core/decide_tasks.py, one example each.

Given events folded with `fold`, when a command is handled with `handle`, then the
exact events and emissions. A rejected command raises a DomainError and changes nothing.
"""

from __future__ import annotations

import pytest
from support.builders import (
    ALICE,
    BOB,
    CAROL,
    CLAIMED,
    JOB,
    OTHER_JOB,
    PENDING,
    ROOT,
    RUNNING,
    at,
    claimed,
    job,
    rejects,
    report,
    requeued,
    status_event,
    submit,
    worker,
)
from workerledger.core import (
    TASK_TRANSITIONS,
    Actor,
    ClaimTask,
    Emit,
    Event,
    TaskStatus,
    fold,
    handle,
)
from workerledger.core import errors as err
from workerledger.core import events as ev

# --- submit -------------------------------------------------------------------------


def test_submit_queues_a_pending_task_and_announces_it() -> None:
    decision = handle(fold([job()]), submit())
    assert decision.events == (
        ev.TaskSubmitted(
            task_id="t1", job_name=JOB, room_id="room1", payload={"n": 1}, by="bob", at=at(3)
        ),
    )
    task = decision.state.tasks["t1"]
    assert decision.emissions == (
        status_event(task),
        Emit(
            event="task_available",
            data={"job_name": JOB, "room_id": "room1", "task_id": "t1"},
            to=f"jobs:{JOB}",
        ),
    )
    assert (task.status, task.attempt, task.submitted_by) == (TaskStatus.PENDING, 0, "bob")


def test_submit_to_an_unknown_job_is_not_found() -> None:
    rejects(fold([job()]), submit(job_name=OTHER_JOB), err.JobNotFoundError)


def test_submit_from_an_invalid_room_is_refused() -> None:
    rejects(fold([job()]), submit(room="a:b"), err.InvalidRoomIdError)


def test_submit_with_a_taken_task_id_is_a_duplicate() -> None:
    rejects(fold(PENDING), submit(), err.DuplicateIdError)


# --- claim --------------------------------------------------------------------------


def claim(task: str = "t1", worker_id: str = "w1", actor: Actor = ALICE) -> ClaimTask:
    return ClaimTask(now=at(4), actor=actor, task_id=task, worker_id=worker_id)


def test_claim_takes_a_pending_task_with_attempt_one() -> None:
    decision = handle(fold(PENDING), claim())
    assert decision.events == (
        ev.TaskClaimed(task_id="t1", worker_id="w1", attempt=1, at=at(4)),
        ev.WorkerTaskAssigned(worker_id="w1", task_id="t1", attempt=1, at=at(4)),
    )
    task = decision.state.tasks["t1"]
    assert decision.emissions == (status_event(task),)
    assert (task.status, task.worker_id, task.attempt_workers) == (
        TaskStatus.CLAIMED,
        "w1",
        ("w1",),
    )
    assert decision.state.workers["w1"].tasks == {"t1"}


def test_each_claim_increments_the_attempt() -> None:
    # given t1 was claimed by w1, which was lost
    state = fold([*CLAIMED, *requeued(), *worker("w2")])
    # when w2 claims it
    decision = handle(state, claim(worker_id="w2"))
    # then it is attempt 2
    assert decision.events == (
        ev.TaskClaimed(task_id="t1", worker_id="w2", attempt=2, at=at(4)),
        ev.WorkerTaskAssigned(worker_id="w2", task_id="t1", attempt=2, at=at(4)),
    )
    assert decision.state.tasks["t1"].attempt_workers == ("w1", "w2")


def test_claim_for_another_users_worker_is_forbidden() -> None:
    rejects(fold(PENDING), claim(actor=BOB), err.ForbiddenError)
    rejects(fold(PENDING), claim(actor=ROOT), err.ForbiddenError)


def test_claim_by_a_disconnected_worker_is_refused() -> None:
    dropped = ev.WorkerDisconnected(
        worker_id="w1", sid="s1", reason="ping timeout", grace_deadline=at(30), at=at(0)
    )
    rejects(fold([*PENDING, dropped]), claim(), err.WorkerNotOnlineError)


def test_claim_by_an_ended_worker_is_not_found() -> None:
    state = fold([*PENDING, ev.WorkerLeft(worker_id="w1", by="alice", at=at(0))])
    rejects(state, claim(), err.WorkerNotFoundError)


def test_claim_of_a_task_that_is_not_pending_is_refused() -> None:
    state = fold([*CLAIMED, *worker("w2")])
    rejects(state, claim(worker_id="w2"), err.TaskNotPendingError)


def test_claim_of_a_task_of_a_job_the_worker_is_not_registered_for_is_refused() -> None:
    state = fold([*PENDING, job(OTHER_JOB), *worker("w2", jobs=(OTHER_JOB,))])
    rejects(state, claim(worker_id="w2"), err.JobNotLinkedError)


def test_claim_of_an_unknown_task_is_not_found() -> None:
    rejects(fold(PENDING), claim(task="t9"), err.TaskNotFoundError)


# --- status reports -----------------------------------------------------------------


def test_claimed_to_running_starts_the_task() -> None:
    decision = handle(fold(CLAIMED), report(TaskStatus.RUNNING))
    assert decision.events == (ev.TaskStarted(task_id="t1", worker_id="w1", attempt=1, at=at(9)),)
    task = decision.state.tasks["t1"]
    assert decision.emissions == (status_event(task),)
    assert (task.status, task.started_at) == (TaskStatus.RUNNING, at(9))


def test_running_to_completed_completes_and_releases_the_task() -> None:
    decision = handle(fold(RUNNING), report(TaskStatus.COMPLETED))
    assert decision.events == (
        ev.TaskCompleted(task_id="t1", worker_id="w1", attempt=1, at=at(9)),
        ev.WorkerTaskReleased(worker_id="w1", task_id="t1", status=TaskStatus.COMPLETED, at=at(9)),
    )
    assert decision.emissions == (status_event(decision.state.tasks["t1"]),)
    assert decision.state.workers["w1"].tasks == frozenset()
    assert decision.state.tasks["t1"].worker_id == "w1"  # kept once the task ends


@pytest.mark.parametrize("given", [CLAIMED, RUNNING], ids=["claimed", "running"])
def test_a_held_task_may_fail(given: list[Event]) -> None:
    decision = handle(fold(given), report(TaskStatus.FAILED, error="boom"))
    assert decision.events == (
        ev.TaskFailed(task_id="t1", worker_id="w1", attempt=1, error="boom", by="alice", at=at(9)),
        ev.WorkerTaskReleased(worker_id="w1", task_id="t1", status=TaskStatus.FAILED, at=at(9)),
    )
    task = decision.state.tasks["t1"]
    assert decision.emissions == (status_event(task),)
    assert (task.status, task.error, task.completed_at) == (TaskStatus.FAILED, "boom", at(9))


@pytest.mark.parametrize("given", [CLAIMED, RUNNING], ids=["claimed", "running"])
def test_a_held_task_may_be_cancelled_by_its_holder(given: list[Event]) -> None:
    decision = handle(fold(given), report(TaskStatus.CANCELLED))
    assert decision.events == (
        ev.TaskCancelled(task_id="t1", worker_id="w1", attempt=1, by="alice", at=at(9)),
        ev.WorkerTaskReleased(worker_id="w1", task_id="t1", status=TaskStatus.CANCELLED, at=at(9)),
    )
    # w1 has no connection, so there is no one to tell
    assert decision.emissions == (status_event(decision.state.tasks["t1"]),)


def test_the_submitter_may_cancel_their_own_pending_task() -> None:
    decision = handle(
        fold(PENDING), report(TaskStatus.CANCELLED, BOB, worker_id=None, attempt=None)
    )
    assert decision.events == (
        ev.TaskCancelled(task_id="t1", worker_id=None, attempt=0, by="bob", at=at(9)),
    )
    assert decision.emissions == (status_event(decision.state.tasks["t1"]),)


def test_cancelling_a_held_task_tells_the_holders_connection() -> None:
    # given w1 runs t1 over connection s1
    given = [
        *RUNNING,
        ev.ConnectionAttached(worker_id="w1", sid="s1", at=at(0)),
        ev.RoomJoined(worker_id="w1", sid="s1", job_name=JOB, at=at(0)),
    ]
    # when the submitter cancels it
    command = report(
        TaskStatus.CANCELLED, BOB, worker_id=None, attempt=None, error="no longer needed"
    )
    decision = handle(fold(given), command)
    # then the worker's connection hears about it
    assert decision.events == (
        ev.TaskCancelled(
            task_id="t1", worker_id="w1", attempt=1, error="no longer needed", by="bob", at=at(9)
        ),
        ev.WorkerTaskReleased(worker_id="w1", task_id="t1", status=TaskStatus.CANCELLED, at=at(9)),
    )
    assert decision.emissions == (
        status_event(decision.state.tasks["t1"]),
        Emit(
            event="task_cancelled",
            data={"task_id": "t1", "attempt": 1, "error": "no longer needed"},
            to="s1",
        ),
    )


def test_a_report_without_worker_or_attempt_is_accepted_from_the_holders_owner() -> None:
    # zndraw-joblib 0.1.7 clients send neither; any worker of the same user may report
    state = fold([*CLAIMED, *worker("w2")])
    decision = handle(state, report(TaskStatus.RUNNING, worker_id=None, attempt=None))
    assert decision.events == (ev.TaskStarted(task_id="t1", worker_id="w1", attempt=1, at=at(9)),)


def test_a_superuser_may_report_on_any_task() -> None:
    decision = handle(fold(RUNNING), report(TaskStatus.FAILED, ROOT, worker_id=None, attempt=None))
    assert decision.events[0] == ev.TaskFailed(
        task_id="t1", worker_id="w1", attempt=1, by="root", at=at(9)
    )


@pytest.mark.parametrize("given", [PENDING, CLAIMED], ids=["pending", "claimed"])
def test_a_report_by_someone_else_is_forbidden(given: list[Event]) -> None:
    rejects(
        fold(given),
        report(TaskStatus.RUNNING, CAROL, worker_id=None, attempt=None),
        err.ForbiddenError,
    )
    rejects(
        fold(given),
        report(TaskStatus.CANCELLED, CAROL, worker_id=None, attempt=None),
        err.ForbiddenError,
    )


def test_a_report_on_an_unknown_task_is_not_found() -> None:
    rejects(fold([job()]), report(TaskStatus.RUNNING, ROOT), err.TaskNotFoundError)


LEGAL = sorted((before, after) for before, targets in TASK_TRANSITIONS.items() for after in targets)
ILLEGAL = sorted(
    (before, after)
    for before in TaskStatus
    for after in TaskStatus
    if (after not in TASK_TRANSITIONS[before] or after is TaskStatus.CLAIMED)
    # the stored status reported again is a resend (rule 6, test_resends.py), not a transition
    and not (after is before and before not in (TaskStatus.PENDING, TaskStatus.CLAIMED))
)


def given_status(status: TaskStatus) -> list[Event]:
    """t1 in `status`, held (or last held) by w1 at attempt 1."""
    ended: dict[TaskStatus, Event] = {
        TaskStatus.COMPLETED: ev.TaskCompleted(task_id="t1", worker_id="w1", attempt=1, at=at(1)),
        TaskStatus.FAILED: ev.TaskFailed(
            task_id="t1", worker_id="w1", attempt=1, by="alice", at=at(1)
        ),
        TaskStatus.CANCELLED: ev.TaskCancelled(
            task_id="t1", worker_id="w1", attempt=1, by="bob", at=at(1)
        ),
    }
    release = ev.WorkerTaskReleased(worker_id="w1", task_id="t1", status=status, at=at(1))
    match status:
        case TaskStatus.PENDING:
            return PENDING
        case TaskStatus.CLAIMED:
            return CLAIMED
        case TaskStatus.RUNNING:
            return RUNNING
        case _:
            return [*RUNNING, ended[status], release]


def test_the_transition_table_is_the_zndraw_joblib_one() -> None:
    table = {a.value: sorted(b.value for b in targets) for a, targets in TASK_TRANSITIONS.items()}
    assert table == {
        "pending": ["cancelled", "claimed"],
        "claimed": ["cancelled", "failed", "running"],
        "running": ["cancelled", "completed", "failed"],
        "completed": [],
        "failed": [],
        "cancelled": [],
    }


@pytest.mark.parametrize(("before", "after"), ILLEGAL, ids=lambda s: s.value)
def test_every_illegal_transition_is_refused(before: TaskStatus, after: TaskStatus) -> None:
    # given t1 is in `before`; when even a superuser asks for `after`, then
    state = fold(given_status(before))
    assert state.tasks["t1"].status is before
    rejects(state, report(after, ROOT, worker_id=None, attempt=None), err.InvalidTransitionError)


@pytest.mark.parametrize(
    ("before", "after"), [p for p in LEGAL if p[1] is not TaskStatus.CLAIMED], ids=lambda s: s.value
)
def test_every_legal_report_is_accepted(before: TaskStatus, after: TaskStatus) -> None:
    decision = handle(fold(given_status(before)), report(after, ROOT, worker_id=None, attempt=None))
    assert decision.state.tasks["t1"].status is after


# --- fencing ------------------------------------------------------------------------


def test_a_report_on_an_old_attempt_is_stale_and_recorded() -> None:
    # given w1 held attempt 1, was lost, and w2 (same user) holds attempt 2
    state = fold([*CLAIMED, *requeued(), *worker("w2"), *claimed(worker_id="w2", attempt=2)])
    # when w1 reports completion of attempt 1
    error = rejects(state, report(TaskStatus.COMPLETED), err.StaleAttemptError)
    # then the refusal is recorded and w2's claim is intact
    assert error.record == (
        ev.TaskReportRejected(
            task_id="t1",
            worker_id="w1",
            attempt=1,
            current_attempt=2,
            requested=TaskStatus.COMPLETED,
            by="alice",
            at=at(9),
        ),
    )
    assert state.tasks["t1"].worker_id == "w2"


def test_a_report_from_a_former_holder_of_a_requeued_task_is_stale() -> None:
    # given w1 held attempt 1 and was lost; t1 is pending again
    state = fold([*CLAIMED, *requeued()])
    # when w1 reports completion of attempt 1, then it is stale, not forbidden
    error = rejects(state, report(TaskStatus.COMPLETED), err.StaleAttemptError)
    assert [type(event) for event in error.record] == [ev.TaskReportRejected]


def test_a_report_from_a_former_holder_is_stale_when_another_user_holds_the_task() -> None:
    state = fold(
        [*CLAIMED, *requeued(), *worker("w2", user="dave"), *claimed(worker_id="w2", attempt=2)]
    )
    rejects(state, report(TaskStatus.FAILED), err.StaleAttemptError)


def test_a_report_with_the_right_worker_and_a_wrong_attempt_is_stale() -> None:
    error = rejects(fold(CLAIMED), report(TaskStatus.RUNNING, attempt=7), err.StaleAttemptError)
    assert error.record[0] == ev.TaskReportRejected(
        task_id="t1",
        worker_id="w1",
        attempt=7,
        current_attempt=1,
        requested=TaskStatus.RUNNING,
        by="alice",
        at=at(9),
    )


def test_a_report_naming_a_worker_that_never_held_the_task_is_forbidden() -> None:
    state = fold([*CLAIMED, *worker("w2")])
    error = rejects(state, report(TaskStatus.COMPLETED, worker_id="w2"), err.ForbiddenError)
    assert error.record == ()


def test_a_report_naming_another_users_former_worker_is_forbidden() -> None:
    state = fold(
        [*CLAIMED, *requeued(), *worker("w2", user="dave"), *claimed(worker_id="w2", attempt=2)]
    )
    rejects(state, report(TaskStatus.COMPLETED, Actor(user="dave")), err.ForbiddenError)
