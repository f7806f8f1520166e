"""History routes: a worker's or a task's replayed timeline (extensions to 0.1.7).

`GET /workers/{worker_id}/history[?at=TIMESTAMP]` and `GET /tasks/{task_id}/history`
read single streams from the log, so they answer for deleted and lost workers too.
Bodies are written by `history_json` (no depth limit), so any payload the log holds
can be shown; `response_model` keeps the OpenAPI schema.
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from workerledger.core import Actor, TaskNotFoundError, WorkerNotFoundError

from ..store.history import (
    HistoryNotFoundError,
    TaskHistory,
    WorkerHistory,
    history_json,
    task_history,
    worker_history,
)
from .context import RestContext
from .problems import problem_responses


def history_routes(ctx: RestContext) -> APIRouter:
    router = APIRouter(
        route_class=ctx.route_class, tags=["history"], responses=problem_responses(404)
    )
    CurrentActor = Annotated[Actor, Depends(ctx.actor_dependency())]
    store = ctx.ledger.service.store

    @router.get("/workers/{worker_id}/history", response_model=WorkerHistory)
    async def get_worker_history(
        worker_id: uuid.UUID,
        actor: CurrentActor,
        at: Annotated[datetime | None, Query(description="state as at this instant")] = None,
    ) -> Response:
        """The worker's timeline (joined, rooms, claims, disconnect, resumed/lost, left),
        the claims it made, the requeues its end caused; with `at`, its state then."""
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        try:
            history = await ctx.ledger.call(lambda: worker_history(store, str(worker_id), at))
        except HistoryNotFoundError as error:
            raise WorkerNotFoundError(f"worker {worker_id} has no history") from error
        return _json(history)

    @router.get("/tasks/{task_id}/history", response_model=TaskHistory)
    async def get_task_history(task_id: uuid.UUID, actor: CurrentActor) -> Response:
        """Every attempt of the task: who claimed it, and why it was requeued or failed."""
        try:
            history = await ctx.ledger.call(lambda: task_history(store, str(task_id)))
        except HistoryNotFoundError as error:
            raise TaskNotFoundError(f"task {task_id} has no history") from error
        return _json(history)

    return router


def _json(history: WorkerHistory | TaskHistory) -> Response:
    return Response(history_json(history), media_type="application/json")
