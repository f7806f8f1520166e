"""The pure lifecycle core: commands in, events and emissions out.

Standard library and pydantic only. No clock, no random ids, no I/O: time and ids
arrive on commands. `handle(state, command)` = `decide` + `evolve` + `emissions_for`.
"""

from .commands import (
    COMMAND_ADAPTER,
    ClaimTask,
    Command,
    DisconnectWorker,
    ExpireClaim,
    JoinJobRoom,
    LeaveJobRoom,
    RecordHeartbeat,
    RegisterJob,
    RegisterWorker,
    RemoveWorker,
    SubmitTask,
    SweepWorker,
    UpdateTask,
)
from .decide import Decision, decide, handle
from .decide_workers import IncompleteStateError
from .emissions import (
    EMISSION_ADAPTER,
    DisconnectSid,
    Emission,
    Emit,
    EnterRoom,
    LeaveRoom,
    emissions_for,
    task_status_payload,
)
from .errors import DomainError
from .events import EVENT_ADAPTER, EVENT_TYPES, Event, event_from_json, event_to_json
from .evolve import evolve, fold
from .model import (
    SYSTEM,
    TASK_TRANSITIONS,
    Actor,
    RunningTaskPolicy,
    TaskStatus,
    WorkerStatus,
    is_valid_room_id,
    job_full_name,
    room_of_job,
    room_of_watchers,
    split_job_name,
)
from .state import JobState, LedgerState, TaskState, WorkerState

__all__ = [
    "COMMAND_ADAPTER",
    "EMISSION_ADAPTER",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "SYSTEM",
    "TASK_TRANSITIONS",
    "Actor",
    "ClaimTask",
    "Command",
    "Decision",
    "DisconnectSid",
    "DisconnectWorker",
    "DomainError",
    "Emission",
    "Emit",
    "EnterRoom",
    "Event",
    "ExpireClaim",
    "IncompleteStateError",
    "JobState",
    "JoinJobRoom",
    "LeaveJobRoom",
    "LeaveRoom",
    "LedgerState",
    "RecordHeartbeat",
    "RegisterJob",
    "RegisterWorker",
    "RemoveWorker",
    "RunningTaskPolicy",
    "SubmitTask",
    "SweepWorker",
    "TaskState",
    "TaskStatus",
    "UpdateTask",
    "WorkerState",
    "WorkerStatus",
    "decide",
    "emissions_for",
    "event_from_json",
    "event_to_json",
    "evolve",
    "fold",
    "handle",
    "is_valid_room_id",
    "job_full_name",
    "room_of_job",
    "room_of_watchers",
    "split_job_name",
    "task_status_payload",
]
