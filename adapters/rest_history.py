"""History routes: a worker's or a task's replayed timeline (extensions to 0.1.7).

`GET /workers/{worker_id}/history[?at=TIMESTAMP]` and `GET /tasks/{task_id}/history`
read single streams from the log, so they answer for deleted and lost workers too.
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from workerledger.core import Actor
from workerledger.core.errors import TaskNotFoundError, WorkerNotFoundError

from .history import HistoryNotFoundError, TaskHistory, WorkerHistory, task_history, worker_history
from .rest_context import RestContext
from .rest_problems import ProblemRoute


def history_routes(ctx: RestContext) -> APIRouter:
    router = APIRouter(route_class=ProblemRoute, tags=["history"])
    CurrentActor = Annotated[Actor, Depends(ctx.actor_dependency())]
    store = ctx.ledger.service.store

    @router.get("/workers/{worker_id}/history")
    async def get_worker_history(
        worker_id: uuid.UUID,
        actor: CurrentActor,
        at: Annotated[datetime | None, Query(description="state as at this instant")] = None,
    ) -> WorkerHistory:
        """The worker's timeline (joined, rooms, claims, disconnect, resumed/lost, left),
        the claims it made, the requeues its end caused; with `at`, its state then."""
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        try:
            return await ctx.ledger.call(lambda: worker_history(store, str(worker_id), at))
        except HistoryNotFoundError as error:
            raise WorkerNotFoundError(f"worker {worker_id} has no history") from error

    @router.get("/tasks/{task_id}/history")
    async def get_task_history(task_id: uuid.UUID, actor: CurrentActor) -> TaskHistory:
        """Every attempt of the task: who claimed it, and why it was requeued or failed."""
        try:
            return await ctx.ledger.call(lambda: task_history(store, str(task_id)))
        except HistoryNotFoundError as error:
            raise TaskNotFoundError(f"task {task_id} has no history") from error

    return router
