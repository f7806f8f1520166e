"""Rules of core/decide_workers.py, one example each.

Given events folded with `fold`, when a command is handled with `handle`, then the
exact events and emissions. A rejected command raises a DomainError and changes nothing.
"""

from __future__ import annotations

from functools import partial

import pytest
from support.builders import (
    ALICE,
    BOB,
    JOB,
    OTHER_JOB,
    ROOT,
    at,
    claimed,
    connected,
    job,
    rejects,
    status_event,
    submitted,
    task_available,
)
from support.builders import worker as worker_linked  # `worker` names a local below
from workerledger.core import (
    Actor,
    DisconnectSid,
    DisconnectWorker,
    Emit,
    EnterRoom,
    Event,
    JoinJobRoom,
    LeaveJobRoom,
    LeaveRoom,
    RecordHeartbeat,
    RegisterJob,
    RegisterWorker,
    RemoveWorker,
    RunningTaskPolicy,
    SweepWorker,
    TaskStatus,
    WorkerStatus,
    fold,
    handle,
)
from workerledger.core import errors as err
from workerledger.core import events as ev

SCHEMA = {"type": "object"}
job_registered = partial(job, schema=SCHEMA)  # the schema `register()` sends


def register(worker: str = "w1", actor: Actor = ALICE, **fields: object) -> RegisterJob:
    values: dict[str, object] = {
        "room_id": "room1",
        "category": "modifiers",
        "name": "relax",
        "schema": SCHEMA,
        "create_worker": True,
    }
    values.update(fields)
    return RegisterJob.model_validate({"now": at(5), "actor": actor, "worker_id": worker, **values})


JOBS_INVALIDATE = Emit(event="jobs_invalidate", data={}, to="room:room1")
ONE_WORKER: list[Event] = [job_registered(), *worker_linked()]
ONLINE = [*ONE_WORKER, *connected()]


# --- registration -------------------------------------------------------------------


def test_register_worker_records_the_owner() -> None:
    # given nothing; when
    decision = handle(fold([]), RegisterWorker(now=at(1), actor=ALICE, worker_id="w1"))
    # then
    assert decision.events == (ev.WorkerRegistered(worker_id="w1", user="alice", at=at(1)),)
    assert decision.emissions == ()


def test_register_worker_with_a_taken_id_is_a_duplicate() -> None:
    state = fold(worker_linked())
    rejects(state, RegisterWorker(now=at(1), actor=ALICE, worker_id="w1"), err.DuplicateIdError)


def test_register_job_with_create_worker_creates_worker_and_job() -> None:
    # given nothing
    state = fold([])
    # when
    decision = handle(state, register())
    # then
    assert decision.events == (
        ev.WorkerRegistered(worker_id="w1", user="alice", at=at(5)),
        job_registered().model_copy(update={"at": at(5)}),
        ev.WorkerJobLinked(worker_id="w1", job_name=JOB, at=at(5)),
        ev.JobWorkerLinked(job_name=JOB, worker_id="w1", at=at(5)),
    )
    assert decision.emissions == (JOBS_INVALIDATE,)
    assert decision.state.workers["w1"].jobs == {JOB}
    assert decision.state.jobs[JOB].workers == {"w1"}


def test_register_job_retry_with_the_same_worker_id_creates_no_second_worker() -> None:
    # given the first registration went through (its response was lost)
    state = fold(ONE_WORKER)
    # when the client retries it
    decision = handle(state, register())
    # then nothing happens
    assert decision.events == ()
    assert decision.emissions == ()
    assert decision.state == state


def test_register_job_links_an_existing_worker_to_another_job() -> None:
    state = fold(ONE_WORKER)
    decision = handle(state, register(category="analysis", name="plot", create_worker=False))
    assert decision.events == (
        job_registered(OTHER_JOB).model_copy(update={"at": at(5)}),
        ev.WorkerJobLinked(worker_id="w1", job_name=OTHER_JOB, at=at(5)),
        ev.JobWorkerLinked(job_name=OTHER_JOB, worker_id="w1", at=at(5)),
    )
    assert decision.emissions == (JOBS_INVALIDATE,)


def test_register_job_for_an_unknown_worker_without_create_worker_is_not_found() -> None:
    rejects(fold([job_registered()]), register(create_worker=False), err.WorkerNotFoundError)


def test_register_job_for_an_ended_worker_is_not_found_even_with_create_worker() -> None:
    state = fold([*ONE_WORKER, ev.WorkerLeft(worker_id="w1", by="alice", at=at(1))])
    rejects(state, register(), err.WorkerNotFoundError)


def test_register_job_for_another_users_worker_is_not_found() -> None:
    rejects(fold(ONE_WORKER), register(actor=BOB), err.WorkerNotFoundError)


def test_register_job_with_another_schema_while_another_worker_is_linked_conflicts() -> None:
    # given w1 serves the job with SCHEMA
    state = fold(ONE_WORKER)
    # when w2 registers it with another schema, then
    rejects(state, register("w2", schema={"type": "array"}), err.SchemaConflictError)


def test_register_job_with_another_schema_replaces_it_when_the_job_has_no_other_workers() -> None:
    # given the job's only worker has left
    state = fold(
        [
            *ONE_WORKER,
            ev.WorkerLeft(worker_id="w1", by="alice", at=at(1)),
            ev.JobWorkerUnlinked(job_name=JOB, worker_id="w1", reason="left", at=at(1)),
        ]
    )
    # when w2 registers the job with another schema
    decision = handle(state, register("w2", actor=BOB, schema={"type": "array"}))
    # then the schema is replaced and w2 linked
    assert decision.events == (
        ev.WorkerRegistered(worker_id="w2", user="bob", at=at(5)),
        job_registered(schema={"type": "array"}).model_copy(update={"by": "bob", "at": at(5)}),
        ev.WorkerJobLinked(worker_id="w2", job_name=JOB, at=at(5)),
        ev.JobWorkerLinked(job_name=JOB, worker_id="w2", at=at(5)),
    )
    assert decision.emissions == (JOBS_INVALIDATE,)
    job = decision.state.jobs[JOB]
    assert (job.schema_, job.created_at, job.workers) == ({"type": "array"}, at(0), {"w2"})


def test_register_job_with_another_schema_by_its_only_worker_replaces_it() -> None:
    state = fold(ONE_WORKER)
    decision = handle(state, register(schema={"type": "array"}))
    assert decision.events == (
        job_registered(schema={"type": "array"}).model_copy(update={"at": at(5)}),
    )
    assert decision.emissions == (JOBS_INVALIDATE,)


@pytest.mark.parametrize("room", ["@global", "@internal"])
def test_register_job_in_a_reserved_room_needs_a_superuser(room: str) -> None:
    rejects(fold([]), register(room_id=room), err.ForbiddenError)
    decision = handle(fold([]), register(actor=ROOT, room_id=room))
    assert [type(event) for event in decision.events] == [
        ev.WorkerRegistered,
        ev.JobRegistered,
        ev.WorkerJobLinked,
        ev.JobWorkerLinked,
    ]
    assert decision.emissions == (Emit(event="jobs_invalidate", data={}, to=f"room:{room}"),)


@pytest.mark.parametrize("room", ["", "a:b", "a@b", "@other"])
def test_register_job_with_an_invalid_room_id_is_refused(room: str) -> None:
    rejects(fold([]), register(actor=ROOT, room_id=room), err.InvalidRoomIdError)


def test_register_job_with_a_category_that_is_not_allowed_is_refused() -> None:
    rejects(fold([]), register(category="misc"), err.InvalidCategoryError)
    decision = handle(fold([]), register(category="misc", allowed_categories=("misc",)))
    assert len(decision.events) == 4


# --- heartbeat ----------------------------------------------------------------------


def test_heartbeat_by_the_owner_is_recorded() -> None:
    decision = handle(fold(ONE_WORKER), RecordHeartbeat(now=at(7), actor=ALICE, worker_id="w1"))
    assert decision.events == (ev.HeartbeatRecorded(worker_id="w1", at=at(7)),)
    assert decision.emissions == ()
    assert decision.state.workers["w1"].last_heartbeat == at(7)


@pytest.mark.parametrize("actor", [BOB, ROOT], ids=["other-user", "superuser"])
def test_heartbeat_by_anyone_but_the_owner_is_forbidden(actor: Actor) -> None:
    rejects(
        fold(ONE_WORKER),
        RecordHeartbeat(now=at(7), actor=actor, worker_id="w1"),
        err.ForbiddenError,
    )


@pytest.mark.parametrize("worker", ["w1", "nobody"], ids=["ended", "unknown"])
def test_heartbeat_of_an_ended_or_unknown_worker_is_not_found(worker: str) -> None:
    state = fold([*ONE_WORKER, ev.WorkerLost(worker_id="w1", reason="heartbeat timeout", at=at(1))])
    rejects(
        state, RecordHeartbeat(now=at(7), actor=ALICE, worker_id=worker), err.WorkerNotFoundError
    )


# --- join and leave job rooms -------------------------------------------------------


def join(sid: str = "s1", job: str = JOB, actor: Actor = ALICE, worker: str = "w1") -> JoinJobRoom:
    return JoinJobRoom(now=at(5), actor=actor, worker_id=worker, sid=sid, job_name=job)


def test_first_join_attaches_the_connection_and_enters_the_room() -> None:
    decision = handle(fold(ONE_WORKER), join())
    assert decision.events == (
        ev.ConnectionAttached(worker_id="w1", sid="s1", previous_sid=None, at=at(5)),
        ev.RoomJoined(worker_id="w1", sid="s1", job_name=JOB, at=at(5)),
    )
    assert decision.emissions == (EnterRoom(sid="s1", room=f"jobs:{JOB}"),)


def test_joining_a_room_the_connection_is_already_in_changes_nothing() -> None:
    decision = handle(fold(ONLINE), join())
    assert (decision.events, decision.emissions) == ((), ())


def test_join_with_the_worker_id_of_another_user_is_forbidden() -> None:
    rejects(fold(ONE_WORKER), join(actor=BOB), err.ForbiddenError)


def test_join_of_an_unknown_job_is_not_found() -> None:
    rejects(fold(ONE_WORKER), join(job="room1:modifiers:nope"), err.JobNotFoundError)


def test_join_of_a_job_the_worker_is_not_registered_for_is_not_linked() -> None:
    state = fold([*ONE_WORKER, job_registered(OTHER_JOB)])
    rejects(state, join(job=OTHER_JOB), err.JobNotLinkedError)


def test_join_from_a_new_sid_replaces_the_old_one_and_leaves_its_rooms() -> None:
    # given w1 speaks over s1 in two job rooms
    given = [
        *ONE_WORKER,
        job_registered(OTHER_JOB),
        *worker_linked(jobs=(OTHER_JOB,))[1:],
        *connected(jobs=(JOB, OTHER_JOB)),
    ]
    # when it joins one room from s2
    decision = handle(fold(given), join("s2"))
    # then s2 replaces s1, which leaves both rooms
    assert decision.events == (
        ev.ConnectionAttached(worker_id="w1", sid="s2", previous_sid="s1", at=at(5)),
        ev.RoomJoined(worker_id="w1", sid="s2", job_name=JOB, at=at(5)),
    )
    assert decision.emissions == (
        LeaveRoom(sid="s1", room=f"jobs:{OTHER_JOB}"),
        LeaveRoom(sid="s1", room=f"jobs:{JOB}"),
        EnterRoom(sid="s2", room=f"jobs:{JOB}"),
    )
    worker = decision.state.workers["w1"]
    assert (worker.sid, worker.rooms) == ("s2", {JOB})


def test_join_from_a_new_sid_within_the_grace_window_resumes_with_claims_intact() -> None:
    # given w1 held t1 and dropped with a 30 s grace window
    given = [
        *ONLINE,
        submitted(),
        *claimed(),
        ev.WorkerDisconnected(
            worker_id="w1", sid="s1", reason="transport close", grace_deadline=at(30), at=at(0)
        ),
    ]
    # when it reconnects as s2 at 10 s
    decision = handle(fold(given), join("s2"))
    # then it is online again and still holds t1
    assert decision.events == (
        ev.ConnectionAttached(worker_id="w1", sid="s2", previous_sid=None, at=at(5)),
        ev.WorkerResumed(worker_id="w1", sid="s2", at=at(5)),
        ev.RoomJoined(worker_id="w1", sid="s2", job_name=JOB, at=at(5)),
    )
    assert decision.emissions == (EnterRoom(sid="s2", room=f"jobs:{JOB}"),)
    worker = decision.state.workers["w1"]
    assert (worker.status, worker.tasks, worker.grace_deadline) == (
        WorkerStatus.ONLINE,
        {"t1"},
        None,
    )
    assert decision.state.tasks["t1"].status is TaskStatus.CLAIMED


def test_a_resume_is_a_sign_of_life_for_the_heartbeat_timeout() -> None:
    """Found by workerledger.testing: a worker silent past the heartbeat timeout that
    resumes within a longer grace window must not be lost by the next sweep."""
    given = [
        *ONLINE,
        ev.WorkerDisconnected(
            worker_id="w1", sid="s1", reason="transport close", grace_deadline=at(100), at=at(0)
        ),
    ]
    resumed = handle(fold(given), join("s2"))  # at 5 s
    assert resumed.state.workers["w1"].last_heartbeat == at(5)
    # 32 s after its last heartbeat, 27 s after the resume, timeout 30 s: alive
    assert handle(resumed.state, sweep(32, timeout=30)).events == ()
    lost = handle(resumed.state, sweep(40, timeout=30)).events  # 35 s after the resume
    assert any(isinstance(e, ev.WorkerLost) for e in lost)


def leave(sid: str = "s1", job: str = JOB, actor: Actor = ALICE) -> LeaveJobRoom:
    return LeaveJobRoom(now=at(5), actor=actor, worker_id="w1", sid=sid, job_name=job)


def test_leave_by_the_current_connection_leaves_the_room() -> None:
    decision = handle(fold(ONLINE), leave())
    assert decision.events == (ev.RoomLeft(worker_id="w1", sid="s1", job_name=JOB, at=at(5)),)
    assert decision.emissions == (LeaveRoom(sid="s1", room=f"jobs:{JOB}"),)
    assert decision.state.workers["w1"].rooms == frozenset()


def test_leave_with_the_worker_id_of_another_user_is_forbidden() -> None:
    rejects(fold(ONLINE), leave(actor=BOB), err.ForbiddenError)


def test_leave_from_an_old_sid_is_stale() -> None:
    given = [*ONLINE, *connected(sid="s2", previous="s1")]
    rejects(fold(given), leave("s1"), err.StaleSessionError)


def test_leave_of_a_room_the_connection_is_not_in_is_refused() -> None:
    rejects(fold(ONLINE), leave(job=OTHER_JOB), err.NotInRoomError)


# --- disconnect ---------------------------------------------------------------------


def disconnect(sid: str = "s1", grace: float = 30) -> DisconnectWorker:
    return DisconnectWorker(
        now=at(5), worker_id="w1", sid=sid, reason="transport close", grace_seconds=grace
    )


def test_disconnect_of_an_old_sid_is_stale_and_leaves_the_newer_session_alone() -> None:
    # given s2 replaced s1
    state = fold([*ONLINE, *connected(sid="s2", previous="s1")])
    # when s1's disconnect arrives late, then it is refused and s2 keeps its room
    rejects(state, disconnect("s1", grace=0), err.StaleSessionError)
    worker = state.workers["w1"]
    assert (worker.status, worker.sid, worker.rooms) == (WorkerStatus.ONLINE, "s2", {JOB})


def test_disconnect_with_grace_marks_the_worker_disconnected_and_releases_nothing() -> None:
    # given w1 holds a claimed and a running task
    given = [
        *ONLINE,
        submitted("t1"),
        submitted("t2"),
        *claimed("t1"),
        *claimed("t2", running=True),
    ]
    # when its connection drops with 30 s grace
    decision = handle(fold(given), disconnect(grace=30))
    # then only the connection goes
    assert decision.events == (
        ev.WorkerDisconnected(
            worker_id="w1", sid="s1", reason="transport close", grace_deadline=at(35), at=at(5)
        ),
    )
    assert decision.emissions == (LeaveRoom(sid="s1", room=f"jobs:{JOB}"),)
    worker = decision.state.workers["w1"]
    assert (worker.status, worker.sid, worker.rooms, worker.tasks) == (
        WorkerStatus.DISCONNECTED,
        None,
        frozenset(),
        {"t1", "t2"},
    )
    assert decision.state.jobs[JOB].workers == {"w1"}


def test_disconnect_with_zero_grace_loses_the_worker_and_requeues_its_claim() -> None:
    # given w1 holds a claimed task
    state = fold([*ONLINE, submitted(), *claimed()])
    # when its connection drops with no grace
    decision = handle(state, disconnect(grace=0))
    # then it is lost at once and t1 is pending again
    reason = "disconnected (transport close)"
    assert decision.events == (
        ev.WorkerDisconnected(
            worker_id="w1", sid="s1", reason="transport close", grace_deadline=at(5), at=at(5)
        ),
        ev.WorkerLost(worker_id="w1", reason=reason, at=at(5)),
        ev.TaskRequeued(
            task_id="t1", worker_id="w1", attempt=1, reason=reason, was_running=False, at=at(5)
        ),
        ev.JobWorkerUnlinked(job_name=JOB, worker_id="w1", reason=reason, at=at(5)),
    )
    task = decision.state.tasks["t1"]
    assert decision.emissions == (
        LeaveRoom(sid="s1", room=f"jobs:{JOB}"),
        status_event(task),
        task_available(),
        JOBS_INVALIDATE,
    )
    assert (task.status, task.worker_id, task.attempt) == (TaskStatus.PENDING, None, 1)
    assert decision.state.workers["w1"].status is WorkerStatus.LOST


# --- sweep --------------------------------------------------------------------------


def sweep(seconds: float, timeout: float = 60) -> SweepWorker:
    return SweepWorker(now=at(seconds), worker_id="w1", heartbeat_timeout_seconds=timeout)


DROPPED = [
    *ONLINE,
    submitted(),
    *claimed(),
    ev.WorkerDisconnected(
        worker_id="w1", sid="s1", reason="transport close", grace_deadline=at(30), at=at(0)
    ),
]


def test_sweep_after_the_grace_deadline_loses_the_worker() -> None:
    decision = handle(fold(DROPPED), sweep(30))
    assert decision.events == (
        ev.WorkerLost(worker_id="w1", reason="grace expired", at=at(30)),
        ev.TaskRequeued(
            task_id="t1",
            worker_id="w1",
            attempt=1,
            reason="grace expired",
            was_running=False,
            at=at(30),
        ),
        ev.JobWorkerUnlinked(job_name=JOB, worker_id="w1", reason="grace expired", at=at(30)),
    )
    assert decision.emissions == (
        status_event(decision.state.tasks["t1"]),
        task_available(),
        JOBS_INVALIDATE,
    )


def test_sweep_inside_the_grace_window_yields_nothing_even_if_the_heartbeat_is_old() -> None:
    # given the last beat was at 0 s and the grace window lasts until 30 s
    state = fold(DROPPED)
    # when swept at 29 s with a 10 s heartbeat timeout, then the window still protects it
    decision = handle(state, sweep(29, timeout=10))
    assert (decision.events, decision.emissions) == ((), ())


def test_sweep_after_the_heartbeat_timeout_loses_a_connected_worker() -> None:
    # given w1 is connected, last beat at 0 s
    state = fold(ONLINE)
    # when swept after 60 s, then it is lost and kicked off its connection
    decision = handle(state, sweep(60.5))
    assert decision.events == (
        ev.WorkerLost(worker_id="w1", reason="heartbeat timeout", at=at(60.5)),
        ev.JobWorkerUnlinked(job_name=JOB, worker_id="w1", reason="heartbeat timeout", at=at(60.5)),
    )
    assert decision.emissions == (
        LeaveRoom(sid="s1", room=f"jobs:{JOB}"),
        DisconnectSid(sid="s1"),
        JOBS_INVALIDATE,
    )


def test_sweep_of_an_alive_worker_yields_nothing() -> None:
    state = fold([*ONLINE, ev.HeartbeatRecorded(worker_id="w1", at=at(50))])
    decision = handle(state, sweep(60))  # 60 s since registration, 10 s since the beat
    assert (decision.events, decision.emissions) == ((), ())
    decision = handle(fold(ONLINE), sweep(60))  # exactly at the timeout: still alive
    assert decision.events == ()


def test_sweep_of_an_ended_worker_yields_nothing() -> None:
    state = fold([*ONE_WORKER, ev.WorkerLeft(worker_id="w1", by="alice", at=at(1))])
    decision = handle(state, sweep(1000))
    assert (decision.events, decision.emissions) == ((), ())


def test_sweeping_twice_loses_the_worker_once() -> None:
    state = fold(DROPPED)
    first = handle(state, sweep(40))
    second = handle(first.state, sweep(40))
    log = [*first.events, *second.events]
    assert [type(event) for event in log].count(ev.WorkerLost) == 1
    assert [type(event) for event in log].count(ev.TaskRequeued) == 1
    assert second.state == first.state


def test_sweep_of_an_unknown_worker_is_not_found() -> None:
    rejects(fold([]), sweep(1), err.WorkerNotFoundError)


# --- remove -------------------------------------------------------------------------


def remove(actor: Actor) -> RemoveWorker:
    return RemoveWorker(now=at(5), actor=actor, worker_id="w1")


def test_remove_by_the_owner_is_a_leave() -> None:
    decision = handle(fold(ONLINE), remove(ALICE))
    assert decision.events == (
        ev.WorkerLeft(worker_id="w1", by="alice", at=at(5)),
        ev.JobWorkerUnlinked(job_name=JOB, worker_id="w1", reason="left", at=at(5)),
    )
    # the client disconnects itself: no DisconnectSid
    assert decision.emissions == (LeaveRoom(sid="s1", room=f"jobs:{JOB}"), JOBS_INVALIDATE)
    worker = decision.state.workers["w1"]
    assert (worker.status, worker.end_reason, worker.sid) == (
        WorkerStatus.LEFT,
        "left (by alice)",
        None,
    )


def test_remove_by_a_superuser_is_a_delete() -> None:
    decision = handle(fold(ONLINE), remove(ROOT))
    assert decision.events == (
        ev.WorkerDeleted(worker_id="w1", by="root", at=at(5)),
        ev.JobWorkerUnlinked(job_name=JOB, worker_id="w1", reason="deleted", at=at(5)),
    )
    assert decision.emissions == (
        LeaveRoom(sid="s1", room=f"jobs:{JOB}"),
        DisconnectSid(sid="s1"),
        JOBS_INVALIDATE,
    )
    assert decision.state.workers["w1"].status is WorkerStatus.DELETED


def test_remove_by_another_user_is_forbidden() -> None:
    rejects(fold(ONLINE), remove(BOB), err.ForbiddenError)


def test_remove_of_an_ended_worker_is_not_found() -> None:
    state = fold([*ONE_WORKER, ev.WorkerLeft(worker_id="w1", by="alice", at=at(1))])
    rejects(state, remove(ALICE), err.WorkerNotFoundError)


# --- what ending a worker does to its tasks -----------------------------------------


def test_ending_a_worker_requeues_a_claimed_task_whatever_the_policy() -> None:
    state = fold([*ONE_WORKER, submitted(), *claimed()])
    decision = handle(state, remove(ALICE))
    assert decision.events[1] == ev.TaskRequeued(
        task_id="t1", worker_id="w1", attempt=1, reason="left", was_running=False, at=at(5)
    )
    task = decision.state.tasks["t1"]
    assert (task.status, task.losses, task.requeues) == (TaskStatus.PENDING, 0, 1)


def test_ending_a_worker_fails_a_running_task_by_default() -> None:
    state = fold([*ONE_WORKER, submitted(), *claimed(running=True)])
    decision = handle(state, remove(ALICE))
    assert decision.events[1] == ev.TaskFailed(
        task_id="t1",
        worker_id="w1",
        attempt=1,
        error="Worker disconnected (worker left)",
        by="@system",
        at=at(5),
    )
    assert decision.state.tasks["t1"].status is TaskStatus.FAILED
    assert decision.emissions == (status_event(decision.state.tasks["t1"]), JOBS_INVALIDATE)


def test_requeue_policy_requeues_a_running_task_until_its_loss_budget_is_used_up() -> None:
    # given a job that requeues running tasks once, and t1 running on w1
    given = [
        job_registered(policy=RunningTaskPolicy.REQUEUE, max_losses=1),
        *worker_linked("w1"),
        *worker_linked("w2"),
        submitted(),
        *claimed(running=True),
    ]
    # when w1 is lost, then t1 is requeued and counts one loss
    first = handle(fold(given), sweep(61))
    assert first.events[1] == ev.TaskRequeued(
        task_id="t1",
        worker_id="w1",
        attempt=1,
        reason="heartbeat timeout",
        was_running=True,
        at=at(61),
    )
    assert first.state.tasks["t1"].losses == 1
    # when w2 runs it next and is lost too, then the budget is used up and t1 fails
    state = fold(claimed(worker_id="w2", attempt=2, running=True), first.state)
    second = handle(state, SweepWorker(now=at(200), worker_id="w2", heartbeat_timeout_seconds=60))
    assert second.events[1] == ev.TaskFailed(
        task_id="t1",
        worker_id="w2",
        attempt=2,
        error="Worker disconnected (worker heartbeat timeout; lost 2 times, budget exhausted)",
        by="@system",
        at=at(200),
    )
    assert second.state.tasks["t1"].status is TaskStatus.FAILED


def test_requeue_policy_with_no_loss_budget_fails_a_running_task() -> None:
    given = [
        job_registered(policy=RunningTaskPolicy.REQUEUE, max_losses=0),
        *worker_linked(),
        submitted(),
        *claimed(running=True),
    ]
    decision = handle(fold(given), remove(ALICE))
    assert decision.events[1] == ev.TaskFailed(
        task_id="t1",
        worker_id="w1",
        attempt=1,
        error="Worker disconnected (worker left; lost 1 times, budget exhausted)",
        by="@system",
        at=at(5),
    )


def test_ending_a_worker_releases_every_held_task_exactly_once() -> None:
    given = [
        *ONE_WORKER,
        *(submitted(task) for task in ("t1", "t2", "t3")),
        *claimed("t1"),
        *claimed("t2", running=True),
    ]
    decision = handle(fold(given), remove(ROOT))
    released = [e for e in decision.events if isinstance(e, ev.TaskRequeued | ev.TaskFailed)]
    assert [(type(e), e.task_id) for e in released] == [
        (ev.TaskRequeued, "t1"),
        (ev.TaskFailed, "t2"),
    ]
    assert decision.state.tasks["t3"].status is TaskStatus.PENDING
    assert decision.state.workers["w1"].tasks == frozenset()
