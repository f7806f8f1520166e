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
6. Every write is safe to resend. A keyed submit (its task id derives from the key)
   sent again with the same request records nothing; with another request it is
   refused (IdempotencyKeyReusedError). A keyed claim sent again by the same worker
   records nothing and names the task of the first claim (`WorkerState.claimed_under`).
   A report that repeats what is stored (same status and error, from the current
   holder at the current attempt) records nothing.
7. Claim lease: a CLAIMED task not started within the claim timeout goes back to
   PENDING (TaskRequeued, reason `claim-timeout`); the next claim raises the attempt,
   so a late report on the expired claim is stale.
8. A task of an `@internal` job is claimed by the server when it is submitted
   (TaskDispatched, attempt 1, no worker): no worker is woken, and the host's internal
   executor reports its status as a superuser. (The host refuses the submit first
   when it has no executor for the job.)
9. A draining worker claims nothing (WorkerDrainingError; the claim route answers "no
   task"); a resend of a claim it made before the drain still names that claim.
10. An operator requeue (the holder's owner or a superuser) takes a CLAIMED or RUNNING
    task back to PENDING (TaskRequeued with `by` and the reason, not counted as a
    worker loss); the next claim raises the attempt, so the old holder's late report
    is stale. A task run by the internal executor has no holder and cannot be requeued.
11. A report, cancel, requeue or lease expiry that releases a draining worker's last
    task ends that worker in the same decision (decide_workers rule 9).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from . import commands as c
from . import errors as e
from . import events as ev
from .decide_workers import IncompleteStateError, drained_end, live_worker, require_owner
from .model import (
    INTERNAL_ROOM,
    TASK_TRANSITIONS,
    TaskStatus,
    WorkerStatus,
    invalid_room_detail,
    is_valid_room_id,
)
from .state import LedgerState, TaskState


def submit_task(state: LedgerState, cmd: c.SubmitTask) -> list[ev.Event]:
    if not is_valid_room_id(cmd.room_id):
        raise e.InvalidRoomIdError(invalid_room_detail(cmd.room_id))
    existing = state.tasks.get(cmd.task_id)
    if existing is not None:
        return _resubmit(existing, cmd)
    job = state.jobs.get(cmd.job_name)
    if job is None:
        raise e.JobNotFoundError(f"job {cmd.job_name} not found")
    submitted = ev.TaskSubmitted(
        task_id=cmd.task_id,
        job_name=cmd.job_name,
        room_id=cmd.room_id,
        payload=cmd.payload,
        by=cmd.actor.user,
        request_hash=cmd.request_hash,
        at=cmd.now,
    )
    if job.room_id == INTERNAL_ROOM:  # rule 8: the server claims it for its executor
        return [submitted, ev.TaskDispatched(task_id=cmd.task_id, attempt=1, at=cmd.now)]
    return [submitted]


def _resubmit(task: TaskState, cmd: c.SubmitTask) -> list[ev.Event]:
    if cmd.request_hash is None:
        raise e.DuplicateIdError(f"task {cmd.task_id} already exists")
    if task.request_hash != cmd.request_hash or task.submitted_by != cmd.actor.user:
        raise e.IdempotencyKeyReusedError(
            f"the Idempotency-Key of task {task.id} was sent again with a different request"
        )
    return []  # the same request again: the task it created stands


def claim_task(state: LedgerState, cmd: c.ClaimTask) -> list[ev.Event]:
    worker = live_worker(state, cmd.worker_id)
    require_owner(cmd.actor, worker)
    if cmd.request_key is not None and worker.claimed_under(cmd.request_key) is not None:
        return []  # a resend of a claim that was made: it stands, nothing new is claimed
    if worker.status is not WorkerStatus.ONLINE:
        raise e.WorkerNotOnlineError(f"worker {worker.id} is disconnected")
    if worker.draining:
        raise e.WorkerDrainingError(f"worker {worker.id} is draining: it claims nothing")
    task = _task(state, cmd.task_id)
    if task.status is not TaskStatus.PENDING:
        raise e.TaskNotPendingError(f"task {task.id} is {task.status.value}")
    if task.job_name not in worker.jobs:
        raise e.JobNotLinkedError(f"worker {worker.id} is not registered for {task.job_name}")
    attempt = task.attempt + 1
    return [
        ev.TaskClaimed(task_id=task.id, worker_id=worker.id, attempt=attempt, at=cmd.now),
        ev.WorkerTaskAssigned(
            worker_id=worker.id,
            task_id=task.id,
            attempt=attempt,
            request_key=cmd.request_key,
            at=cmd.now,
        ),
    ]


def expire_claim(state: LedgerState, cmd: c.ExpireClaim) -> list[ev.Event]:
    task = _task(state, cmd.task_id)
    if claim_expired(task, cmd.now, cmd.claim_timeout_seconds) is None or task.worker_id is None:
        return []
    out: list[ev.Event] = [
        ev.TaskRequeued(
            task_id=task.id,
            worker_id=task.worker_id,
            attempt=task.attempt,
            reason="claim-timeout",
            was_running=False,
            at=cmd.now,
        )
    ]
    worker = state.workers.get(task.worker_id)
    if worker is not None and task.id in worker.tasks:
        out.append(
            ev.WorkerTaskReleased(
                worker_id=worker.id, task_id=task.id, status=TaskStatus.PENDING, at=cmd.now
            )
        )
        out += drained_end(state, worker, frozenset({task.id}), cmd.now)
    return out


def requeue_task(state: LedgerState, cmd: c.RequeueTask) -> list[ev.Event]:
    task = _task(state, cmd.task_id)
    if not task.status.is_held or task.worker_id is None:
        where = "run by the internal executor" if task.status.is_held else task.status.value
        raise e.InvalidTransitionError(
            f"task {task.id} is {where}: only a claimed or running task can be requeued"
        )
    worker = state.workers.get(task.worker_id)
    if worker is None:
        raise IncompleteStateError(f"worker {task.worker_id} of task {task.id} was not loaded")
    if not cmd.actor.superuser:
        require_owner(cmd.actor, worker)
    requeued = ev.TaskRequeued(
        task_id=task.id,
        worker_id=worker.id,
        attempt=task.attempt,
        reason=f"requeued by {cmd.actor.user}: {cmd.reason}",
        was_running=task.status is TaskStatus.RUNNING,
        by=cmd.actor.user,
        at=cmd.now,
    )
    released = ev.WorkerTaskReleased(
        worker_id=worker.id, task_id=task.id, status=TaskStatus.PENDING, at=cmd.now
    )
    return [requeued, released, *drained_end(state, worker, frozenset({task.id}), cmd.now)]


def claim_expired(task: TaskState, now: datetime, timeout_seconds: float) -> datetime | None:
    """When the claim lease of `task` ran out, if it is CLAIMED and it has; else None."""
    if task.status is not TaskStatus.CLAIMED or task.claimed_at is None:
        return None
    deadline = task.claimed_at + timedelta(seconds=timeout_seconds)
    return deadline if now >= deadline else None


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
    if _repeats_stored(task, cmd):
        return []  # the same report again (its answer was lost): it stands
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


def _repeats_stored(task: TaskState, cmd: c.UpdateTask) -> bool:
    """True when `cmd` reports exactly what the task already records (not stale)."""
    if cmd.status is not task.status or cmd.status in (TaskStatus.PENDING, TaskStatus.CLAIMED):
        return False
    if cmd.status.is_terminal and cmd.error != task.error:
        return False
    return task.worker_id is not None or cmd.status is TaskStatus.CANCELLED


def _is_stale(task: TaskState, cmd: c.UpdateTask) -> bool:
    wrong_attempt = cmd.attempt is not None and cmd.attempt != task.attempt
    wrong_worker = cmd.worker_id is not None and cmd.worker_id != task.worker_id
    return wrong_attempt or wrong_worker


def _status_event(task: TaskState, cmd: c.UpdateTask) -> ev.Event:
    tid, attempt, at, by = task.id, task.attempt, cmd.now, cmd.actor.user
    if cmd.status is TaskStatus.RUNNING:
        return ev.TaskStarted(task_id=tid, worker_id=task.worker_id, attempt=attempt, at=at)
    if cmd.status is TaskStatus.COMPLETED:
        return ev.TaskCompleted(task_id=tid, worker_id=task.worker_id, attempt=attempt, at=at)
    if cmd.status is TaskStatus.FAILED:
        return ev.TaskFailed(
            task_id=tid, worker_id=task.worker_id, attempt=attempt, error=cmd.error, by=by, at=at
        )
    return ev.TaskCancelled(
        task_id=tid, worker_id=task.worker_id, attempt=attempt, error=cmd.error, by=by, at=at
    )


def _release_from_worker(state: LedgerState, task: TaskState, cmd: c.UpdateTask) -> list[ev.Event]:
    if not cmd.status.is_terminal or not task.status.is_held or task.worker_id is None:
        return []
    worker = live_worker(state, task.worker_id)
    return [
        ev.WorkerTaskReleased(worker_id=worker.id, task_id=task.id, status=cmd.status, at=cmd.now),
        *drained_end(state, worker, frozenset({task.id}), cmd.now),
    ]
