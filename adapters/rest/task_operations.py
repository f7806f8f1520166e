"""The task writes behind the routes, once: submit, claim and status report.

Each takes the request's parsed parts and answers with an `Answer` (the body model and
the headers to add). The FastAPI routes (tasks.py) and the hot-request lane
(fast_lane.py) both call these, so the two can never answer differently; errors are
raised as the core's DomainError (and friends) for the caller's problem+json.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel
from workerledger.core import (
    INTERNAL_ROOM,
    Actor,
    ClaimTask,
    Decision,
    Emit,
    SubmitTask,
    TaskStatus,
    UpdateTask,
)

from ..internal import check_internal, dispatch_internal, dispatched
from ..projection import Projection
from .context import RestContext
from .idempotency import REPLAYED_HEADER, keyed_task_id, request_digest
from .jobs import check_writable, resolve_job
from .models import (
    TaskClaimRequest,
    TaskClaimResponse,
    TaskResponse,
    TaskSubmitRequest,
    TaskUpdateRequest,
    task_after,
    task_response,
    task_view,
)

PREFIX = "/v1/joblib"
M = TypeVar("M", bound=BaseModel)
_REPLAYED = {REPLAYED_HEADER: "true"}


@dataclass(frozen=True)
class Answer(Generic[M]):
    """A write's response body and the headers to send with it."""

    body: M
    headers: dict[str, str] = field(default_factory=dict)


def decided_position(decision: Decision, task_id: str) -> int | None:
    """The queue position the service filled into the decision's `task_status_event`
    of `task_id` after the commit (None when it has none)."""
    for emission in decision.emissions:
        if (
            isinstance(emission, Emit)
            and emission.event == "task_status_event"
            and emission.data.get("id") == task_id
        ):
            position = emission.data.get("queue_position")
            return position if isinstance(position, int) else None
    return None


async def decided_task(ctx: RestContext, decision: Decision, task_id: str) -> TaskResponse:
    """The task as `decision` left it; a pending one ranked in the queue of the view
    that just folded the decision's events in (no store read). Only a pending task
    has a queue position, so claims and reports skip the hop to the ledger thread;
    so does a submit, whose position the service already put in the decision's
    `task_status_event` (the hop remains for a decision without one)."""
    task = decision.state.tasks[task_id]
    if task.status is not TaskStatus.PENDING:
        return task_response(task)
    position = decided_position(decision, task_id)
    if position is not None:
        return task_response(task, position)
    return await ctx.ledger.read(lambda v: task_after(v, decision, task_id), catch_up=False)


async def submit_task(
    ctx: RestContext,
    room_id: str,
    job_name: str,
    body: TaskSubmitRequest,
    actor: Actor,
    idempotency_key: str | None,
) -> Answer[TaskResponse]:
    """Queue a task (202, `Location`, `Retry-After: 1`); see the route's description."""
    await check_writable(ctx, room_id, actor)
    task_id = keyed_task_id(actor.user, idempotency_key) if idempotency_key else None

    def check_job(view: Projection) -> None:
        # a resend reaches its task even if the job is gone
        if task_id is None or view.task(task_id) is None:
            job = resolve_job(view, job_name)
            if job.room_id == INTERNAL_ROOM:
                check_internal(ctx.internal_executor, job.full_name)

    digest = None
    if idempotency_key:
        digest = request_digest("submit", room=room_id, job=job_name, payload=body.payload)
    command = SubmitTask(
        task_id=task_id or str(uuid.uuid4()),
        job_name=job_name,
        room_id=room_id,
        payload=body.payload,
        request_hash=digest,
        actor=actor,
        now=ctx.clock(),
    )
    decision = await ctx.ledger.execute(command, check=check_job)
    headers = {"Location": f"{PREFIX}/tasks/{command.task_id}", "Retry-After": "1"}
    if ctx.internal_executor is not None and dispatched(decision):
        task = decision.state.tasks[command.task_id]
        await dispatch_internal(ctx.ledger, ctx.internal_executor, task, ctx.clock)
        stored = await ctx.ledger.read(lambda v: task_view(v, command.task_id), liveness=False)
        return Answer(stored, headers)
    if not decision.events:
        stored = await ctx.ledger.read(lambda v: task_view(v, command.task_id), liveness=False)
        return Answer(stored, {**headers, **_REPLAYED})
    return Answer(await decided_task(ctx, decision, command.task_id), headers)


async def claim_task(
    ctx: RestContext, body: TaskClaimRequest, actor: Actor, idempotency_key: str | None
) -> Answer[TaskClaimResponse]:
    """Claim the oldest pending task of the worker's jobs; see the route's description."""
    # the core refuses unknown and foreign workers (404 / 403, as in 0.1.7)
    command = ClaimTask(
        task_id="",
        worker_id=str(body.worker_id),
        request_key=idempotency_key or None,
        actor=actor,
        now=ctx.clock(),
    )
    claimed = await ctx.ledger.claim_next(command)
    if claimed is None:
        return Answer(TaskClaimResponse(task=None))
    if claimed.replayed:
        task = await ctx.ledger.read(lambda v: task_view(v, claimed.task_id), liveness=False)
        return Answer(TaskClaimResponse(task=task), dict(_REPLAYED))
    task = await decided_task(ctx, claimed.decision, claimed.task_id)
    return Answer(TaskClaimResponse(task=task))


async def update_task(
    ctx: RestContext, task_id: str, body: TaskUpdateRequest, actor: Actor
) -> Answer[TaskResponse]:
    """Report a status; see the route's description."""
    command = UpdateTask(
        task_id=task_id,
        status=body.status,
        error=body.error,
        worker_id=str(body.worker_id) if body.worker_id else None,
        attempt=body.attempt,
        actor=actor,
        now=ctx.clock(),
    )
    decision = await ctx.ledger.execute(command)
    task = await decided_task(ctx, decision, command.task_id)
    return Answer(task, {} if decision.events else dict(_REPLAYED))
