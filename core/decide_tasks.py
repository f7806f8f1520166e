"""Decisions about tasks: submit, claim and status reports.

Rules:
1. A claim takes one PENDING task for a worker that is ONLINE, owned by the caller
   and registered for the task's job. Each claim increments `attempt`, the fencing
   token; the claiming worker's stream records the assignment in the same decision.
2. Status reports follow the zndraw-joblib table (pending -> cancelled;
   claimed -> running|failed|cancelled; running -> completed|failed|cancelled;
   terminal states are final). `claimed` is only reachable through a claim.
3. A report that names a worker or attempt other than the current claim is stale:
   it is refused with StaleAttemptError and the refusal is recorded. A worker id that
   never held the task is forged and refused as forbidden.
4. Without worker id or attempt (zndraw-joblib 0.1.7 clients) a report is accepted
   from the owner of the holding worker, or from a superuser.
5. The submitter (or a superuser, or the holder's owner) may cancel a task at any
   non-terminal status.
"""

from __future__ import annotations

from . import commands as c
from . import errors as e
from . import events as ev
from .decide_workers import IncompleteStateError, live_worker, require_owner
from .model import TASK_TRANSITIONS, TaskStatus, WorkerStatus, is_valid_room_id
from .state import LedgerState, TaskState


def submit_task(state: LedgerState, cmd: c.SubmitTask) -> list[ev.Event]:
    if not is_valid_room_id(cmd.room_id):
        raise e.InvalidRoomIdError(f"invalid room id {cmd.room_id!r}")
    if cmd.job_name not in state.jobs:
        raise e.JobNotFoundError(f"job {cmd.job_name} not found")
    if cmd.task_id in state.tasks:
        raise e.DuplicateIdError(f"task {cmd.task_id} already exists")
    return [
        ev.TaskSubmitted(
            task_id=cmd.task_id,
            job_name=cmd.job_name,
            room_id=cmd.room_id,
            payload=cmd.payload,
            by=cmd.actor.user,
            at=cmd.now,
        )
    ]


def claim_task(state: LedgerState, cmd: c.ClaimTask) -> list[ev.Event]:
    worker = live_worker(state, cmd.worker_id)
    require_owner(cmd.actor, worker)
    if worker.status is not WorkerStatus.ONLINE:
        raise e.WorkerNotOnlineError(f"worker {worker.id} is disconnected")
    task = _task(state, cmd.task_id)
    if task.status is not TaskStatus.PENDING:
        raise e.TaskNotPendingError(f"task {task.id} is {task.status.value}")
    if task.job_name not in worker.jobs:
        raise e.JobNotLinkedError(f"worker {worker.id} is not registered for {task.job_name}")
    attempt = task.attempt + 1
    return [
        ev.TaskClaimed(task_id=task.id, worker_id=worker.id, attempt=attempt, at=cmd.now),
        ev.WorkerTaskAssigned(worker_id=worker.id, task_id=task.id, attempt=attempt, at=cmd.now),
    ]


def update_task(state: LedgerState, cmd: c.UpdateTask) -> list[ev.Event]:
    task = _task(state, cmd.task_id)
    _authorize_report(state, task, cmd)
    if _is_stale(task, cmd):
        if cmd.worker_id is not None and cmd.worker_id not in task.attempt_workers:
            raise e.ForbiddenError(f"worker {cmd.worker_id} never held task {task.id}")
        rejected = ev.TaskReportRejected(
            task_id=task.id,
            worker_id=cmd.worker_id,
            attempt=cmd.attempt,
            current_attempt=task.attempt,
            requested=cmd.status,
            by=cmd.actor.user,
            at=cmd.now,
        )
        raise e.StaleAttemptError(
            f"task {task.id} is at attempt {task.attempt} held by {task.worker_id}; "
            f"the report for attempt {cmd.attempt} by {cmd.worker_id} is stale",
            record=[rejected],
        )
    if cmd.status is TaskStatus.CLAIMED or cmd.status not in TASK_TRANSITIONS[task.status]:
        raise e.InvalidTransitionError(
            f"task {task.id} cannot go from {task.status.value} to {cmd.status.value}"
        )
    return [_status_event(task, cmd), *_release_from_worker(state, task, cmd)]


def _task(state: LedgerState, task_id: str) -> TaskState:
    task = state.tasks.get(task_id)
    if task is None:
        raise e.TaskNotFoundError(f"task {task_id} not found")
    return task


def _authorize_report(state: LedgerState, task: TaskState, cmd: c.UpdateTask) -> None:
    if cmd.actor.superuser:
        return
    if cmd.status is TaskStatus.CANCELLED and cmd.actor.user == task.submitted_by:
        return
    # A former holder's owner may report (and be refused as stale); else the holder's owner.
    reporter = cmd.worker_id if cmd.worker_id in task.attempt_workers else task.worker_id
    if reporter is None:
        raise e.ForbiddenError(f"task {task.id} is not claimed by any worker")
    worker = state.workers.get(reporter)
    if worker is None:
        raise IncompleteStateError(f"worker {reporter} of task {task.id} was not loaded")
    require_owner(cmd.actor, worker)


def _is_stale(task: TaskState, cmd: c.UpdateTask) -> bool:
    wrong_attempt = cmd.attempt is not None and cmd.attempt != task.attempt
    wrong_worker = cmd.worker_id is not None and cmd.worker_id != task.worker_id
    return wrong_attempt or wrong_worker


def _status_event(task: TaskState, cmd: c.UpdateTask) -> ev.Event:
    tid, attempt, at, by = task.id, task.attempt, cmd.now, cmd.actor.user
    if cmd.status is TaskStatus.RUNNING:
        return ev.TaskStarted(task_id=tid, worker_id=_held_by(task), attempt=attempt, at=at)
    if cmd.status is TaskStatus.COMPLETED:
        return ev.TaskCompleted(task_id=tid, worker_id=_held_by(task), attempt=attempt, at=at)
    if cmd.status is TaskStatus.FAILED:
        return ev.TaskFailed(
            task_id=tid, worker_id=task.worker_id, attempt=attempt, error=cmd.error, by=by, at=at
        )
    return ev.TaskCancelled(
        task_id=tid, worker_id=task.worker_id, attempt=attempt, error=cmd.error, by=by, at=at
    )


def _held_by(task: TaskState) -> str:
    if task.worker_id is None:  # unreachable: running/completed need a claim first
        raise IncompleteStateError(f"task {task.id} has no holder")
    return task.worker_id


def _release_from_worker(state: LedgerState, task: TaskState, cmd: c.UpdateTask) -> list[ev.Event]:
    if not cmd.status.is_terminal or not task.status.is_held or task.worker_id is None:
        return []
    worker = live_worker(state, task.worker_id)
    return [
        ev.WorkerTaskReleased(worker_id=worker.id, task_id=task.id, status=cmd.status, at=cmd.now)
    ]
