"""Providers and `@internal` jobs in the pure core (core/decide_providers.py, rule 8 of
core/decide_tasks.py): given events, when a command, then events and emissions."""

from __future__ import annotations

from support.builders import ALICE, BOB, JOB, ROOM, ROOT, at, connected, job, rejects, worker
from workerledger.core import (
    DisconnectWorker,
    Emit,
    EnterRoom,
    Event,
    ForbiddenError,
    InvalidCategoryError,
    InvalidRoomIdError,
    JoinProviderRoom,
    LeaveProviderRoom,
    LeaveRoom,
    NotInRoomError,
    ProviderNotFoundError,
    RegisterProvider,
    RemoveProvider,
    RemoveWorker,
    SubmitTask,
    SweepWorker,
    TaskStatus,
    UpdateTask,
    WorkerNotFoundError,
    fold,
    handle,
)
from workerledger.core import events as ev

PROVIDER = f"{ROOM}:filesystem:disk"
INVALIDATE = Emit(event="providers_invalidate", data={}, to=f"room:{ROOM}")


def register(
    worker_id: str = "w1",
    *,
    actor: object = ALICE,
    room: str = ROOM,
    schema: dict[str, object] | None = None,
    create: bool = False,
    provider_id: str = "p1",
    categories: tuple[str, ...] | None = None,
) -> RegisterProvider:
    return RegisterProvider(
        now=at(1), actor=actor, provider_id=provider_id, room_id=room, category="filesystem",
        name="disk", schema=schema or {}, worker_id=worker_id, create_worker=create,
        allowed_categories=categories,
    )  # fmt: skip


def registered(worker_id: str = "w1", provider_id: str = "p1") -> list[Event]:
    return list(
        handle(fold(worker(worker_id)), register(worker_id, provider_id=provider_id)).events
    )


SERVING = [job(), *worker(), *registered()]


def test_registering_a_provider_for_a_new_worker_creates_both_and_invalidates_the_room() -> None:
    decision = handle(fold([]), register("w9", create=True))
    assert [type(event) for event in decision.events] == [
        ev.WorkerRegistered, ev.ProviderRegistered, ev.WorkerProviderLinked,
    ]  # fmt: skip
    provider = decision.state.providers[PROVIDER]
    assert (provider.id, provider.worker_id, provider.user) == ("p1", "w9", "alice")
    assert decision.state.workers["w9"].providers == {PROVIDER}
    assert decision.emissions == (INVALIDATE,)


def test_reregistering_keeps_the_id_and_records_nothing_when_nothing_changed() -> None:
    state = fold(SERVING)
    assert handle(state, register(provider_id="p2")).events == ()
    changed = handle(state, register(provider_id="p2", schema={"type": "object"}))
    assert [type(event) for event in changed.events] == [ev.ProviderRegistered]
    assert changed.state.providers[PROVIDER].id == "p1"
    assert changed.state.providers[PROVIDER].created_at == state.providers[PROVIDER].created_at


def test_moving_a_provider_to_another_worker_unlinks_it_from_the_first() -> None:
    state = fold([*SERVING, *worker("w2", jobs=())])
    decision = handle(state, register("w2"))
    assert [type(event) for event in decision.events] == [
        ev.WorkerProviderUnlinked, ev.ProviderRegistered, ev.WorkerProviderLinked,
    ]  # fmt: skip
    assert decision.state.workers["w1"].providers == frozenset()
    assert decision.state.workers["w2"].providers == {PROVIDER}


def test_registration_refusals_change_nothing() -> None:
    state = fold([*SERVING, *worker("w2", user="bob", jobs=())])
    rejects(state, register(room="a:b"), InvalidRoomIdError)
    rejects(state, register(room="@global"), ForbiddenError)
    rejects(state, register(categories=("frames",)), InvalidCategoryError)
    rejects(state, register("w2", actor=BOB), ForbiddenError)  # alice's provider
    rejects(state, register("w2"), WorkerNotFoundError)  # bob's worker
    rejects(state, register("nope"), WorkerNotFoundError)
    error = rejects(state, register(room="a@b"), InvalidRoomIdError)
    assert error.detail == "Room ID 'a@b' contains invalid characters (@ or :)"


def test_a_superuser_takes_over_another_users_provider() -> None:
    state = fold([*SERVING, *worker("w2", user="root", jobs=())])
    decision = handle(state, register("w2", actor=ROOT))
    assert decision.state.providers[PROVIDER].user == "root"


def test_removal_by_id_by_the_owner_or_a_superuser() -> None:
    state = fold(SERVING)
    remove = RemoveProvider(now=at(2), actor=ALICE, provider_name=PROVIDER, provider_id="p1")
    rejects(state, remove.model_copy(update={"provider_id": "p0"}), ProviderNotFoundError)
    rejects(state, remove.model_copy(update={"actor": BOB}), ForbiddenError)
    decision = handle(state, remove.model_copy(update={"actor": ROOT}))
    assert [type(event) for event in decision.events] == [
        ev.ProviderRemoved, ev.WorkerProviderUnlinked,
    ]  # fmt: skip
    assert not decision.state.providers[PROVIDER].is_live
    assert decision.emissions == (INVALIDATE,)
    rejects(decision.state, remove, ProviderNotFoundError)  # its id is gone for good
    again = handle(decision.state, register(provider_id="p3"))
    assert again.state.providers[PROVIDER].id == "p3"


def test_a_worker_joins_its_provider_room_and_leaves_it_when_the_provider_goes() -> None:
    state = fold(SERVING)
    join = JoinProviderRoom(
        now=at(2), actor=ALICE, worker_id="w1", sid="s1", provider_name=PROVIDER
    )
    joined = handle(state, join)
    assert joined.emissions == (EnterRoom(sid="s1", room=f"providers:{PROVIDER}"),)
    assert handle(joined.state, join).events == ()  # already in the room
    rejects(state, join.model_copy(update={"actor": BOB}), ForbiddenError)
    rejects(state, join.model_copy(update={"provider_name": "r:c:n"}), ProviderNotFoundError)
    leave = LeaveProviderRoom(**join.model_dump(exclude={"type"}))
    rejects(fold([*SERVING, *connected(jobs=())]), leave, NotInRoomError)
    assert handle(joined.state, leave).emissions == (
        LeaveRoom(sid="s1", room=f"providers:{PROVIDER}"),
    )
    remove = RemoveProvider(now=at(3), actor=ALICE, provider_name=PROVIDER, provider_id="p1")
    assert (
        LeaveRoom(sid="s1", room=f"providers:{PROVIDER}") in handle(joined.state, remove).emissions
    )


def test_a_worker_that_serves_only_providers_resumes_within_grace() -> None:
    state = fold([*worker(jobs=()), *registered(), *connected(jobs=())])
    dropped = handle(
        state, DisconnectWorker(now=at(2), worker_id="w1", sid="s1", reason="x", grace_seconds=5)
    )
    join = JoinProviderRoom(
        now=at(3), actor=ALICE, worker_id="w1", sid="s2", provider_name=PROVIDER
    )
    resumed = handle(dropped.state, join)
    assert [type(event) for event in resumed.events] == [
        ev.ConnectionAttached, ev.WorkerResumed, ev.ProviderRoomJoined,
    ]  # fmt: skip
    assert resumed.state.providers[PROVIDER].is_live


def test_the_end_of_a_worker_removes_its_providers_in_the_same_decision() -> None:
    joined = handle(
        fold(SERVING),
        JoinProviderRoom(now=at(2), actor=ALICE, worker_id="w1", sid="s1", provider_name=PROVIDER),
    ).state
    for command in (
        RemoveWorker(now=at(3), actor=ALICE, worker_id="w1"),
        RemoveWorker(now=at(3), actor=ROOT, worker_id="w1"),
        DisconnectWorker(now=at(3), worker_id="w1", sid="s1", reason="x", grace_seconds=0),
        SweepWorker(now=at(999), worker_id="w1", heartbeat_timeout_seconds=60),
    ):
        decision = handle(joined, command)
        removed = [event for event in decision.events if isinstance(event, ev.ProviderRemoved)]
        assert [(event.provider_id, event.worker_id) for event in removed] == [("p1", "w1")]
        assert not decision.state.providers[PROVIDER].is_live
        assert decision.state.workers["w1"].providers == frozenset()
        assert INVALIDATE in decision.emissions
        assert LeaveRoom(sid="s1", room=f"providers:{PROVIDER}") in decision.emissions


def test_a_task_failed_by_its_workers_end_says_worker_disconnected() -> None:
    from support.builders import RUNNING

    decision = handle(fold(RUNNING), RemoveWorker(now=at(3), actor=ALICE, worker_id="w1"))
    task = decision.state.tasks["t1"]
    assert (task.status, task.error) == (TaskStatus.FAILED, "Worker disconnected (worker left)")


INTERNAL_JOB = "@internal:modifiers:compute"


def test_an_internal_task_is_claimed_by_the_server_and_wakes_no_worker() -> None:
    state = fold([job(INTERNAL_JOB)])
    submit = SubmitTask(now=at(1), actor=BOB, task_id="t1", job_name=INTERNAL_JOB, room_id=ROOM)
    decision = handle(state, submit)
    assert [type(event) for event in decision.events] == [ev.TaskSubmitted, ev.TaskDispatched]
    task = decision.state.tasks["t1"]
    assert (task.status, task.worker_id, task.attempt) == (TaskStatus.CLAIMED, None, 1)
    assert [e.event for e in decision.emissions if isinstance(e, Emit)] == ["task_status_event"]
    report = UpdateTask(now=at(2), actor=ROOT, task_id="t1", status=TaskStatus.RUNNING)
    rejects(decision.state, report.model_copy(update={"actor": BOB}), ForbiddenError)
    running = handle(decision.state, report)
    done = handle(running.state, report.model_copy(update={"status": TaskStatus.COMPLETED}))
    assert done.state.tasks["t1"].status is TaskStatus.COMPLETED
    failed = handle(
        decision.state,
        report.model_copy(update={"status": TaskStatus.FAILED, "error": "dispatch failed"}),
    )
    assert failed.state.tasks["t1"].error == "dispatch failed"
    assert JOB != INTERNAL_JOB
