"""Task routes: submit, room listing, claim, read with long-poll, status update
(zndraw-joblib 0.1.7 routes 10-14)."""

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from workerledger.core import Actor, TaskStatus

from ..projection import Projection
from . import task_operations as operations
from .context import RestContext
from .idempotency import IdempotencyKey
from .jobs import check_room
from .models import (
    Limit,
    Offset,
    Paginated,
    TaskClaimRequest,
    TaskClaimResponse,
    TaskResponse,
    TaskSubmitRequest,
    TaskUpdateRequest,
    task_view,
    tasks_page,
)
from .problems import problem_responses
from .task_operations import PREFIX

__all__ = ["PREFIX", "prefer_wait", "task_routes"]


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


def task_routes(ctx: RestContext) -> APIRouter:
    router = APIRouter(
        route_class=ctx.route_class,
        tags=["tasks"],
        responses=problem_responses(400, 403, 404, 409, 423, 503),
    )
    CurrentActor = Annotated[Actor, Depends(ctx.actor_dependency())]

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
        answer = await operations.submit_task(ctx, room_id, job_name, body, actor, idempotency_key)
        response.headers.update(answer.headers)
        return answer.body

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
        answer = await operations.claim_task(ctx, body, actor, idempotency_key)
        response.headers.update(answer.headers)
        return answer.body

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
        answer = await operations.update_task(ctx, str(task_id), body, actor)
        response.headers.update(answer.headers)
        return answer.body

    return router
