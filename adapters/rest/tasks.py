"""Task routes: submit, room listing, claim, read with long-poll, status update
(zndraw-joblib 0.1.7 routes 10-14)."""

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from workerledger.core import (
    INTERNAL_ROOM,
    Actor,
    ClaimTask,
    Decision,
    Emit,
    JobState,
    SubmitTask,
    TaskStatus,
    UpdateTask,
)

from ..internal import check_internal, dispatch_internal, dispatched
from ..projection import Projection
from .context import RestContext
from .idempotency import IdempotencyKey, keyed_task_id, mark_replayed, request_digest
from .jobs import check_room, check_writable, resolve_job
from .models import (
    Limit,
    Offset,
    Paginated,
    TaskClaimRequest,
    TaskClaimResponse,
    TaskResponse,
    TaskSubmitRequest,
    TaskUpdateRequest,
    task_after,
    task_response,
    task_view,
    tasks_page,
)
from .problems import problem_responses

PREFIX = "/v1/joblib"


def prefer_wait(prefer: str | None) -> int | None:
    """The `wait=N` preference of a `Prefer` header (RFC 7240), if any."""
    for item in (prefer or "").split(","):
        key, _, value = item.strip().partition("=")
        if key.strip().lower() == "wait":
            try:
                return int(value.strip().strip('"'))
            except ValueError:
                return None
    return None


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


def task_routes(ctx: RestContext) -> APIRouter:
    router = APIRouter(
        route_class=ctx.route_class,
        tags=["tasks"],
        responses=problem_responses(400, 403, 404, 409, 423, 503),
    )
    CurrentActor = Annotated[Actor, Depends(ctx.actor_dependency())]

    async def answer(decision: Decision, task_id: str) -> TaskResponse:
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

    @router.post("/rooms/{room_id}/tasks/{job_name:path}", status_code=202)
    async def submit_task(
        room_id: str,
        job_name: str,
        body: TaskSubmitRequest,
        actor: CurrentActor,
        response: Response,
        idempotency_key: IdempotencyKey = None,
    ) -> TaskResponse:
        """Queue a task. With `Idempotency-Key`, a resend answers with the same task.

        A task of an `@internal` job goes to the host's internal executor instead (503
        `internal-job-not-configured` when it has none for the job)."""
        await check_writable(ctx, room_id, actor)
        task_id = keyed_task_id(actor.user, idempotency_key) if idempotency_key else None

        def check_job(view: Projection) -> JobState | None:
            # a resend reaches its task even if the job is gone
            if task_id is None or view.task(task_id) is None:
                return resolve_job(view, job_name)
            return None

        job = await ctx.ledger.read(check_job, liveness=False)
        if job is not None and job.room_id == INTERNAL_ROOM:
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
        decision = await ctx.ledger.execute(command)
        response.headers["Location"] = f"{PREFIX}/tasks/{command.task_id}"
        response.headers["Retry-After"] = "1"
        if ctx.internal_executor is not None and dispatched(decision):
            task = decision.state.tasks[command.task_id]
            await dispatch_internal(ctx.ledger, ctx.internal_executor, task, ctx.clock)
            return await ctx.ledger.read(lambda v: task_view(v, command.task_id), liveness=False)
        if not decision.events:
            mark_replayed(response)
            return await ctx.ledger.read(lambda v: task_view(v, command.task_id), liveness=False)
        return await answer(decision, command.task_id)

    @router.get("/rooms/{room_id}/tasks")
    async def list_room_tasks(
        room_id: str,
        actor: CurrentActor,
        status: TaskStatus | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Paginated[TaskResponse]:
        check_room(room_id)

        def query(view: Projection) -> Paginated[TaskResponse]:
            return tasks_page(view, view.tasks_in_room(room_id, status), limit, offset)

        return await ctx.ledger.read(query)

    @router.post("/tasks/claim")
    async def claim_task(
        body: TaskClaimRequest,
        actor: CurrentActor,
        response: Response,
        idempotency_key: IdempotencyKey = None,
    ) -> TaskClaimResponse:
        """Claim the oldest pending task of the worker's jobs (FIFO, one decision).

        With `Idempotency-Key`, a resend answers with the task the first claim took,
        as it is now, and claims nothing new.
        """
        worker_id = str(body.worker_id)
        # the core refuses unknown and foreign workers (404 / 403, as in 0.1.7)
        command = ClaimTask(
            task_id="",
            worker_id=worker_id,
            request_key=idempotency_key or None,
            actor=actor,
            now=ctx.clock(),
        )
        claimed = await ctx.ledger.claim_next(command)
        if claimed is None:
            return TaskClaimResponse(task=None)
        if claimed.replayed:
            mark_replayed(response)
            task = await ctx.ledger.read(lambda v: task_view(v, claimed.task_id), liveness=False)
            return TaskClaimResponse(task=task)
        return TaskClaimResponse(task=await answer(claimed.decision, claimed.task_id))

    @router.get("/tasks/{task_id}")
    async def get_task(
        task_id: uuid.UUID,
        actor: CurrentActor,
        response: Response,
        prefer: Annotated[str | None, Header()] = None,
    ) -> TaskResponse:
        """Read a task; with `Prefer: wait=N` wait until it is terminal or N seconds pass."""
        key = str(task_id)
        task = await ctx.ledger.read(lambda view: task_view(view, key), liveness=False)
        wait = prefer_wait(prefer)
        if wait is None or wait <= 0 or task.status.is_terminal:
            return task
        effective = min(wait, int(ctx.long_poll_max_wait_seconds))
        response.headers["Preference-Applied"] = f"wait={effective}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + effective
        with ctx.waiters.watch(key) as changed:
            while not task.status.is_terminal and (remaining := deadline - loop.time()) > 0:
                changed.clear()
                task = await ctx.ledger.read(lambda view: task_view(view, key), liveness=False)
                if task.status.is_terminal:
                    break
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    task = await ctx.ledger.read(lambda view: task_view(view, key), liveness=False)
        return task

    @router.patch("/tasks/{task_id}")
    async def update_task(
        task_id: uuid.UUID, body: TaskUpdateRequest, actor: CurrentActor, response: Response
    ) -> TaskResponse:
        """Report a status; `worker_id` and `attempt`, when given, fence the report.

        The same report again (its answer was lost) answers 200 with the task as stored.
        """
        command = UpdateTask(
            task_id=str(task_id),
            status=body.status,
            error=body.error,
            worker_id=str(body.worker_id) if body.worker_id else None,
            attempt=body.attempt,
            actor=actor,
            now=ctx.clock(),
        )
        decision = await ctx.ledger.execute(command)
        if not decision.events:
            mark_replayed(response)
        return await answer(decision, command.task_id)

    return router
