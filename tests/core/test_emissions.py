"""Emissions (core/emissions.py) and the JSON wire form of events, commands, emissions.

Given events folded with `fold`, when new events arrive, then the exact emissions.
Every event, command and emission type survives a JSON round trip.
"""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter
from support.builders import ALICE, JOB, OTHER_JOB, at, job, worker
from workerledger.core import (
    COMMAND_ADAPTER,
    EMISSION_ADAPTER,
    EVENT_ADAPTER,
    EVENT_TYPES,
    Actor,
    ClaimTask,
    Command,
    DisconnectSid,
    DisconnectWorker,
    DrainWorker,
    Emission,
    Emit,
    EnterRoom,
    Event,
    ExpireClaim,
    JoinJobRoom,
    JoinProviderRoom,
    LeaveJobRoom,
    LeaveProviderRoom,
    LeaveRoom,
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
    TaskStatus,
    UpdateTask,
    emissions_for,
    event_from_json,
    event_to_json,
    fold,
    handle,
    task_status_payload,
)
from workerledger.core import events as ev


def members(annotated: Any) -> set[type[BaseModel]]:
    """The classes of an `Annotated[A | B | ..., Field(discriminator=...)]` union."""
    union = typing.get_args(annotated)[0]
    return set(typing.get_args(union))


# --- samples: one of each type ------------------------------------------------------

PROVIDER = "room1:filesystem:disk"

EVENTS: list[Event] = [
    ev.WorkerRegistered(worker_id="w1", user="alice", at=at(0)),
    ev.WorkerJobLinked(worker_id="w1", job_name=JOB, at=at(0)),
    ev.HeartbeatRecorded(worker_id="w1", at=at(1.5)),
    ev.ConnectionAttached(worker_id="w1", sid="s2", previous_sid="s1", at=at(2)),
    ev.RoomJoined(worker_id="w1", sid="s2", job_name=JOB, at=at(2)),
    ev.RoomLeft(worker_id="w1", sid="s2", job_name=JOB, at=at(3)),
    ev.WorkerDisconnected(
        worker_id="w1", sid="s2", reason="ping timeout", grace_deadline=at(33), at=at(3)
    ),
    ev.WorkerResumed(worker_id="w1", sid="s3", at=at(4)),
    ev.WorkerDrainRequested(worker_id="w1", by="root", reason="deploy", deadline=at(64), at=at(4)),
    ev.WorkerLost(worker_id="w1", reason="grace expired", at=at(5)),
    ev.WorkerLeft(worker_id="w1", by="alice", at=at(5)),
    ev.WorkerDeleted(worker_id="w1", by="root", at=at(5)),
    ev.WorkerTaskAssigned(worker_id="w1", task_id="t1", attempt=2, at=at(6)),
    ev.WorkerTaskReleased(worker_id="w1", task_id="t1", status=TaskStatus.FAILED, at=at(6)),
    ev.JobRegistered(
        job_name=JOB,
        room_id="room1",
        category="modifiers",
        name="relax",
        schema={"type": "object", "properties": {"n": {"type": "integer"}}},
        on_worker_lost=RunningTaskPolicy.REQUEUE,
        max_worker_losses=2,
        by="alice",
        at=at(0),
    ),
    ev.JobWorkerLinked(job_name=JOB, worker_id="w1", at=at(0)),
    ev.JobWorkerUnlinked(job_name=JOB, worker_id="w1", reason="left", at=at(5)),
    ev.TaskSubmitted(
        task_id="t1", job_name=JOB, room_id="room2", payload={"n": [1, 2]}, by="bob", at=at(1)
    ),
    ev.TaskClaimed(task_id="t1", worker_id="w1", attempt=2, at=at(6)),
    ev.TaskStarted(task_id="t1", worker_id="w1", attempt=2, at=at(6)),
    ev.TaskCompleted(task_id="t1", worker_id="w1", attempt=2, at=at(6)),
    ev.TaskFailed(task_id="t1", worker_id=None, attempt=0, error="boom", by="root", at=at(6)),
    ev.TaskCancelled(task_id="t1", worker_id="w1", attempt=2, by="bob", at=at(6)),
    ev.TaskRequeued(
        task_id="t1", worker_id="w1", attempt=2, reason="left", was_running=True, at=at(6)
    ),
    ev.TaskReportRejected(
        task_id="t1",
        worker_id="w1",
        attempt=1,
        current_attempt=2,
        requested=TaskStatus.COMPLETED,
        by="alice",
        at=at(6),
    ),
    ev.TaskDispatched(task_id="t2", attempt=1, at=at(7)),
    ev.WorkerProviderLinked(worker_id="w1", provider_name=PROVIDER, at=at(0)),
    ev.WorkerProviderUnlinked(worker_id="w1", provider_name=PROVIDER, reason="x", at=at(5)),
    ev.ProviderRoomJoined(worker_id="w1", sid="s2", provider_name=PROVIDER, at=at(2)),
    ev.ProviderRoomLeft(worker_id="w1", sid="s2", provider_name=PROVIDER, at=at(3)),
    ev.ProviderRegistered(
        provider_name=PROVIDER,
        provider_id="p1",
        room_id="room1",
        category="filesystem",
        name="disk",
        schema={"type": "object"},
        content_type="application/octet-stream",
        worker_id="w1",
        user="alice",
        by="alice",
        at=at(0),
    ),
    ev.ProviderRemoved(
        provider_name=PROVIDER,
        provider_id="p1",
        worker_id="w1",
        reason="deleted",
        by="alice",
        at=at(5),
    ),
]

COMMANDS: list[Command] = [
    RegisterWorker(now=at(0), actor=ALICE, worker_id="w1"),
    RegisterJob(
        now=at(0),
        actor=Actor(user="root", superuser=True),
        room_id="@global",
        category="analysis",
        name="a:b",
        schema={"type": "object"},
        worker_id="w1",
        create_worker=True,
        allowed_categories=("analysis",),
        on_worker_lost=RunningTaskPolicy.REQUEUE,
        max_worker_losses=0,
    ),
    RecordHeartbeat(now=at(1), actor=ALICE, worker_id="w1"),
    JoinJobRoom(now=at(1), actor=ALICE, worker_id="w1", sid="s1", job_name=JOB),
    LeaveJobRoom(now=at(1), actor=ALICE, worker_id="w1", sid="s1", job_name=JOB),
    DisconnectWorker(now=at(1), worker_id="w1", sid="s1", reason="x", grace_seconds=2.5),
    SweepWorker(now=at(1), worker_id="w1", heartbeat_timeout_seconds=60),
    RemoveWorker(now=at(1), actor=ALICE, worker_id="w1", reason="retired"),
    DrainWorker(now=at(1), actor=ALICE, worker_id="w1", reason="deploy", deadline_seconds=60),
    SubmitTask(now=at(1), actor=ALICE, task_id="t1", job_name=JOB, room_id="r", payload={"a": 1}),
    ClaimTask(now=at(1), actor=ALICE, task_id="t1", worker_id="w1", request_key="k1"),
    ExpireClaim(now=at(1), task_id="t1", claim_timeout_seconds=30),
    RequeueTask(now=at(1), actor=ALICE, task_id="t1", reason="stuck"),
    UpdateTask(
        now=at(1),
        actor=ALICE,
        task_id="t1",
        status=TaskStatus.FAILED,
        error="boom",
        worker_id="w1",
        attempt=3,
    ),
    RegisterProvider(
        now=at(0),
        actor=ALICE,
        provider_id="p1",
        room_id="room1",
        category="filesystem",
        name="disk",
        schema={"type": "object"},
        content_type="application/octet-stream",
        worker_id="w1",
        create_worker=True,
        allowed_categories=("filesystem",),
    ),
    RemoveProvider(now=at(1), actor=ALICE, provider_name=PROVIDER, provider_id="p1"),
    JoinProviderRoom(now=at(1), actor=ALICE, worker_id="w1", sid="s1", provider_name=PROVIDER),
    LeaveProviderRoom(now=at(1), actor=ALICE, worker_id="w1", sid="s1", provider_name=PROVIDER),
]

EMISSIONS: list[Emission] = [
    EnterRoom(sid="s1", room=f"jobs:{JOB}"),
    LeaveRoom(sid="s1", room=f"jobs:{JOB}"),
    Emit(event="task_status_event", data={"id": "t1", "queue_position": None}, to="room:r"),
    DisconnectSid(sid="s1"),
]


def round_trip(adapter: TypeAdapter[Any], value: BaseModel) -> Any:
    return adapter.validate_json(value.model_dump_json(by_alias=True))


def test_the_samples_cover_every_type() -> None:
    assert {type(event) for event in EVENTS} == members(Event) == set(EVENT_TYPES.values())
    assert {type(command) for command in COMMANDS} == members(Command)
    assert {type(emission) for emission in EMISSIONS} == members(Emission)


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: event.type)
def test_every_event_type_survives_a_json_round_trip(event: Event) -> None:
    back = round_trip(EVENT_ADAPTER, event)
    assert (type(back), back) == (type(event), event)
    assert event_from_json(event_to_json(event)) == event
    assert EVENT_TYPES[event.type] is type(event)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.type)
def test_every_command_type_survives_a_json_round_trip(command: Command) -> None:
    back = round_trip(COMMAND_ADAPTER, command)
    assert (type(back), back) == (type(command), command)


@pytest.mark.parametrize("emission", EMISSIONS, ids=lambda emission: emission.type)
def test_every_emission_type_survives_a_json_round_trip(emission: Emission) -> None:
    back = round_trip(EMISSION_ADAPTER, emission)
    assert (type(back), back) == (type(emission), emission)


def test_job_schemas_travel_under_the_name_schema() -> None:
    job = next(event for event in EVENTS if isinstance(event, ev.JobRegistered))
    assert '"schema":{"type":"object"' in event_to_json(job)
    assert '"schema":{"type":"object"}' in COMMANDS[1].model_dump_json(by_alias=True)


# --- emissions from events ----------------------------------------------------------


def registered(worker_id: str = "w1", jobs: tuple[str, ...] = (JOB,)) -> list[Event]:
    """The jobs, then the worker linked to them."""
    return [*map(job, jobs), *worker(worker_id, jobs=jobs)]


IN_TWO_ROOMS = [
    *registered(jobs=(JOB, OTHER_JOB)),
    ev.ConnectionAttached(worker_id="w1", sid="s1", at=at(0)),
    ev.RoomJoined(worker_id="w1", sid="s1", job_name=OTHER_JOB, at=at(0)),
    ev.RoomJoined(worker_id="w1", sid="s1", job_name=JOB, at=at(0)),
]


def test_no_new_events_means_no_emissions() -> None:
    assert emissions_for(fold(IN_TWO_ROOMS), []) == ()


def test_emissions_come_from_the_new_events_only() -> None:
    # given a log that joined rooms and registered jobs; when a heartbeat is handled
    state = fold(IN_TWO_ROOMS)
    decision = handle(state, RecordHeartbeat(now=at(1), actor=ALICE, worker_id="w1"))
    # then nothing from the log is emitted again
    assert decision.emissions == ()
    assert emissions_for(state, decision.events) == decision.emissions


def test_a_lost_connected_worker_leaves_every_room_then_is_kicked() -> None:
    lost = ev.WorkerLost(worker_id="w1", reason="heartbeat timeout", at=at(9))
    assert emissions_for(fold(IN_TWO_ROOMS), [lost]) == (
        LeaveRoom(sid="s1", room=f"jobs:{OTHER_JOB}"),
        LeaveRoom(sid="s1", room=f"jobs:{JOB}"),
        DisconnectSid(sid="s1"),
    )


def test_a_worker_without_a_connection_emits_no_room_changes_when_it_ends() -> None:
    deleted = ev.WorkerDeleted(worker_id="w1", by="root", at=at(9))
    assert emissions_for(fold(registered()), [deleted]) == ()


def test_jobs_invalidate_goes_once_per_room_within_a_decision() -> None:
    state = fold(IN_TWO_ROOMS)
    unlinked = [
        ev.JobWorkerUnlinked(job_name=job, worker_id="w1", reason="left", at=at(9))
        for job in (JOB, OTHER_JOB)
    ]
    assert emissions_for(state, unlinked) == (
        Emit(event="jobs_invalidate", data={}, to="room:room1"),
    )


def test_the_task_status_payload_carries_the_zndraw_fields_and_the_attempt() -> None:
    # given t1 submitted from room2 and claimed by w1
    state = fold(
        [
            *registered(),
            ev.TaskSubmitted(task_id="t1", job_name=JOB, room_id="room2", by="bob", at=at(1)),
            ev.TaskClaimed(task_id="t1", worker_id="w1", attempt=1, at=at(2)),
        ]
    )
    # when it starts
    started = ev.TaskStarted(task_id="t1", worker_id="w1", attempt=1, at=at(3))
    # then the submitting room hears the full status
    assert emissions_for(state, [started]) == (
        Emit(
            event="task_status_event",
            data={
                "id": "t1",
                "name": JOB,
                "room_id": "room2",
                "status": "running",
                "created_at": "2026-01-01T00:00:01+00:00",
                "started_at": "2026-01-01T00:00:03+00:00",
                "completed_at": None,
                "queue_position": None,
                "worker_id": "w1",
                "error": None,
                "attempt": 1,
            },
            to="room:room2",
        ),
    )


def test_the_queue_position_is_only_given_for_pending_tasks() -> None:
    state = fold(
        [
            *registered(),
            ev.TaskSubmitted(task_id="t1", job_name=JOB, room_id="room1", by="bob", at=at(1)),
        ]
    )
    assert task_status_payload(state.tasks["t1"], 4)["queue_position"] == 4
    claimed = fold([ev.TaskClaimed(task_id="t1", worker_id="w1", attempt=1, at=at(2))], state)
    assert task_status_payload(claimed.tasks["t1"], 4)["queue_position"] is None


def test_cancelling_an_unheld_task_tells_no_worker() -> None:
    state = fold(
        [
            *registered(),
            ev.TaskSubmitted(task_id="t1", job_name=JOB, room_id="room1", by="bob", at=at(1)),
        ]
    )
    cancelled = ev.TaskCancelled(task_id="t1", worker_id=None, attempt=0, by="bob", at=at(2))
    emissions = emissions_for(state, [cancelled])
    assert [emission.event for emission in emissions if isinstance(emission, Emit)] == [
        "task_status_event"
    ]


@pytest.mark.parametrize(
    "event",
    [
        ev.HeartbeatRecorded(worker_id="w1", at=at(9)),
        ev.WorkerJobLinked(worker_id="w1", job_name=JOB, at=at(9)),
        ev.WorkerResumed(worker_id="w1", sid="s1", at=at(9)),
        ev.WorkerTaskAssigned(worker_id="w1", task_id="t1", attempt=1, at=at(9)),
        ev.TaskReportRejected(
            task_id="t1",
            worker_id="w1",
            attempt=1,
            current_attempt=2,
            requested=TaskStatus.COMPLETED,
            by="alice",
            at=at(9),
        ),
    ],
    ids=lambda event: event.type,
)
def test_bookkeeping_events_emit_nothing(event: Event) -> None:
    assert emissions_for(fold(IN_TWO_ROOMS), [event]) == ()


def test_task_events_for_a_task_outside_a_partial_state_emit_nothing() -> None:
    started = ev.TaskStarted(task_id="t9", worker_id="w1", attempt=1, at=at(3))
    assert emissions_for(fold(IN_TWO_ROOMS), [started]) == ()


def test_a_worker_ending_with_many_claims_wakes_its_job_once_and_reports_each_task() -> None:
    # given a worker holding three claimed tasks of one job
    given = fold(
        [
            ev.JobRegistered(job_name=JOB, room_id="room1", category="modifiers", name="relax",
                             by="alice", at=at(0)),
            ev.WorkerRegistered(worker_id="w1", user="alice", at=at(0)),
            ev.WorkerJobLinked(worker_id="w1", job_name=JOB, at=at(0)),
            ev.JobWorkerLinked(job_name=JOB, worker_id="w1", at=at(0)),
        ]
        + [
            event
            for task in ("t1", "t2", "t3")
            for event in (
                ev.TaskSubmitted(task_id=task, job_name=JOB, room_id="room1", by="alice", at=at(1)),
                ev.TaskClaimed(task_id=task, worker_id="w1", attempt=1, at=at(2)),
                ev.WorkerTaskAssigned(worker_id="w1", task_id=task, attempt=1, at=at(2)),
            )
        ]
    )  # fmt: skip

    # when its owner removes it
    decision = handle(given, RemoveWorker(worker_id="w1", actor=ALICE, now=at(3)))

    # then one task_status_event per task, but a single task_available for the job
    emits = [e for e in decision.emissions if isinstance(e, Emit)]
    assert sorted(e.data["id"] for e in emits if e.event == "task_status_event") == [
        "t1", "t2", "t3"
    ]  # fmt: skip
    assert [e.to for e in emits if e.event == "task_available"] == [f"jobs:{JOB}"]
