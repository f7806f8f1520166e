"""Rules 6 and 7 of core/decide_tasks.py and rule 7 of decide_workers.py: every write is
safe to resend, and claims have a lease.

A client whose answer was lost sends the same command again; the core records nothing
the second time and the adapter answers with the state the first time created.
"""

from __future__ import annotations

from support.builders import (
    ALICE,
    BOB,
    CLAIMED,
    JOB,
    PENDING,
    RUNNING,
    at,
    claimed,
    job,
    rejects,
    report,
    submit,
    worker,
)
from workerledger.core import (
    ClaimTask,
    ExpireClaim,
    RegisterJob,
    TaskStatus,
    UpdateTask,
    fold,
    handle,
)
from workerledger.core import errors as err
from workerledger.core import events as ev
from workerledger.core.state import CLAIM_KEYS_KEPT


def keyed_submit(request_hash: str = "h1", payload: dict[str, int] | None = None) -> ev.Event:
    return ev.TaskSubmitted(
        task_id="t1",
        job_name=JOB,
        room_id="room1",
        payload=payload or {"n": 1},
        by="bob",
        request_hash=request_hash,
        at=at(0),
    )


# --- submit -----------------------------------------------------------------------------


def test_a_keyed_submit_sent_again_records_nothing_and_keeps_the_task() -> None:
    state = fold([job(), *worker(), keyed_submit()])
    decision = handle(state, submit().model_copy(update={"request_hash": "h1"}))
    assert decision.events == () and decision.emissions == ()
    assert decision.state.tasks["t1"] == state.tasks["t1"]


def test_a_keyed_submit_sent_again_after_the_task_ran_still_answers_with_it() -> None:
    done = [ev.TaskStarted(task_id="t1", worker_id="w1", attempt=1, at=at(1))]
    done.append(ev.TaskCompleted(task_id="t1", worker_id="w1", attempt=1, at=at(2)))
    state = fold([job(), *worker(), keyed_submit(), *claimed(), *done])
    decision = handle(state, submit().model_copy(update={"request_hash": "h1"}))
    assert decision.events == ()
    assert decision.state.tasks["t1"].status is TaskStatus.COMPLETED


def test_a_key_reused_for_another_request_is_refused() -> None:
    state = fold([job(), *worker(), keyed_submit()])
    command = submit().model_copy(update={"request_hash": "h2", "payload": {"n": 2}})
    rejects(state, command, err.IdempotencyKeyReusedError)


def test_a_key_reused_by_another_user_is_refused() -> None:
    state = fold([job(), *worker(), keyed_submit()])
    command = submit().model_copy(update={"request_hash": "h1", "actor": ALICE})
    rejects(state, command, err.IdempotencyKeyReusedError)


def test_the_stored_request_hash_survives_a_fold() -> None:
    assert fold([job(), keyed_submit("h9")]).tasks["t1"].request_hash == "h9"


# --- claim ------------------------------------------------------------------------------


def keyed_claim(key: str = "k1", task_id: str = "t1") -> ClaimTask:
    return ClaimTask(now=at(4), actor=ALICE, task_id=task_id, worker_id="w1", request_key=key)


def test_a_keyed_claim_remembers_its_key_on_the_worker() -> None:
    decision = handle(fold(PENDING), keyed_claim())
    assigned = [e for e in decision.events if isinstance(e, ev.WorkerTaskAssigned)]
    assert [e.request_key for e in assigned] == ["k1"]
    assert decision.state.workers["w1"].claimed_under("k1") == "t1"


def test_a_keyed_claim_sent_again_claims_nothing_new() -> None:
    state = handle(fold([*PENDING, submit_second()]), keyed_claim()).state
    again = handle(state, keyed_claim(task_id="t2"))  # the next candidate by then
    assert again.events == ()
    assert again.state.tasks["t2"].status is TaskStatus.PENDING
    assert again.state.workers["w1"].claimed_under("k1") == "t1"


def test_a_keyed_claim_is_replayed_even_inside_the_grace_window() -> None:
    state = handle(fold(PENDING), keyed_claim()).state
    dropped = ev.WorkerDisconnected(
        worker_id="w1", sid="s1", reason="transport close", grace_deadline=at(60), at=at(5)
    )
    assert handle(fold([dropped], state), keyed_claim()).events == ()


def test_a_worker_remembers_only_its_latest_claim_keys() -> None:
    events: list[ev.Event] = [job(), *worker()]
    for n in range(CLAIM_KEYS_KEPT + 1):
        events.append(
            ev.WorkerTaskAssigned(
                worker_id="w1", task_id=f"t{n}", attempt=1, request_key=f"k{n}", at=at(n)
            )
        )
    remembered = fold(events).workers["w1"]
    assert remembered.claimed_under("k0") is None
    assert remembered.claimed_under(f"k{CLAIM_KEYS_KEPT}") == f"t{CLAIM_KEYS_KEPT}"
    assert len(remembered.claim_keys) == CLAIM_KEYS_KEPT


def submit_second() -> ev.TaskSubmitted:
    return ev.TaskSubmitted(task_id="t2", job_name=JOB, room_id="room1", by="bob", at=at(1))


# --- reports ----------------------------------------------------------------------------


def test_a_running_report_sent_again_records_nothing() -> None:
    decision = handle(fold(RUNNING), report(TaskStatus.RUNNING))
    assert decision.events == () and decision.emissions == ()


def test_an_unfenced_running_report_sent_again_records_nothing() -> None:
    decision = handle(fold(RUNNING), report(TaskStatus.RUNNING, worker_id=None, attempt=None))
    assert decision.events == ()


def test_a_completion_sent_again_records_nothing() -> None:
    done = ev.TaskCompleted(task_id="t1", worker_id="w1", attempt=1, at=at(2))
    released = ev.WorkerTaskReleased(
        worker_id="w1", task_id="t1", status=TaskStatus.COMPLETED, at=at(2)
    )
    assert handle(fold([*RUNNING, done, released]), report(TaskStatus.COMPLETED)).events == ()


def test_a_failure_sent_again_with_another_error_is_an_illegal_transition() -> None:
    failed = ev.TaskFailed(task_id="t1", worker_id="w1", attempt=1, error="a", by="alice", at=at(2))
    state = fold([*RUNNING, failed])
    assert handle(state, report(TaskStatus.FAILED, error="a")).events == ()
    rejects(state, report(TaskStatus.FAILED, error="b"), err.InvalidTransitionError)


def test_a_resend_from_a_former_holder_is_still_stale() -> None:
    lost = ev.TaskRequeued(
        task_id="t1", worker_id="w1", attempt=1, reason="claim-timeout", was_running=False, at=at(2)
    )
    state = fold([*worker("w2"), *RUNNING, lost, *claimed(worker_id="w2", attempt=2)])
    state = fold([ev.TaskStarted(task_id="t1", worker_id="w2", attempt=2, at=at(3))], state)
    rejects(state, report(TaskStatus.RUNNING), err.StaleAttemptError)


def test_a_cancel_sent_again_by_the_submitter_records_nothing() -> None:
    cancel = UpdateTask(now=at(5), actor=BOB, task_id="t1", status=TaskStatus.CANCELLED)
    state = handle(fold(PENDING), cancel).state
    assert handle(state, cancel).events == ()


# --- claim lease ------------------------------------------------------------------------


def expire(seconds: float) -> ExpireClaim:
    return ExpireClaim(now=at(seconds), task_id="t1", claim_timeout_seconds=30)


def test_a_claim_not_started_within_the_lease_is_requeued_and_released() -> None:
    decision = handle(fold(CLAIMED), expire(30))
    assert decision.events == (
        ev.TaskRequeued(
            task_id="t1",
            worker_id="w1",
            attempt=1,
            reason="claim-timeout",
            was_running=False,
            at=at(30),
        ),
        ev.WorkerTaskReleased(worker_id="w1", task_id="t1", status=TaskStatus.PENDING, at=at(30)),
    )
    assert decision.state.tasks["t1"].status is TaskStatus.PENDING
    assert "t1" not in decision.state.workers["w1"].tasks
    assert [e.event for e in decision.emissions] == ["task_status_event", "task_available"]


def test_a_claim_inside_its_lease_is_left_alone() -> None:
    assert handle(fold(CLAIMED), expire(29.9)).events == ()


def test_a_started_task_has_no_claim_lease() -> None:
    assert handle(fold(RUNNING), expire(3600)).events == ()


def test_a_report_on_an_expired_claim_is_stale_after_the_next_claim() -> None:
    state = handle(fold(CLAIMED), expire(30)).state
    state = handle(state, ClaimTask(now=at(31), actor=ALICE, task_id="t1", worker_id="w1")).state
    assert state.tasks["t1"].attempt == 2
    rejects(state, report(TaskStatus.RUNNING, attempt=1), err.StaleAttemptError)


# --- registration -----------------------------------------------------------------------


def register(request_hash: str, name: str = "relax") -> RegisterJob:
    return RegisterJob(
        now=at(1),
        actor=ALICE,
        room_id="room1",
        category="modifiers",
        name=name,
        worker_id="w9",
        create_worker=True,
        request_hash=request_hash,
    )


def test_a_keyed_registration_sent_again_links_the_same_worker() -> None:
    state = handle(fold([]), register("r1")).state
    assert state.workers["w9"].request_hash == "r1"
    assert handle(state, register("r1")).events == ()


def test_a_registration_key_reused_for_another_job_is_refused() -> None:
    state = handle(fold([]), register("r1")).state
    rejects(state, register("r2", name="other"), err.IdempotencyKeyReusedError)
