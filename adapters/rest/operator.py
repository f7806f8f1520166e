"""Operator routes (extensions to 0.1.7): drain, remove and read a worker; requeue, fail
and cancel a task. Each route runs one core command whose events record the caller
and the `reason`, so history answers who did it, when and why.

Who may: the worker's owner or a superuser (drain, remove); the holding worker's owner
or a superuser (requeue, fail); also the submitter (cancel). A drained worker claims
nothing (its claims answer `{"task": null}`), finishes what it holds and then ends;
`GET /workers/{worker_id}` shows a live worker (404 once it ended, as after a DELETE:
its history keeps the end and its reason).
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from workerledger.core import (
    Actor,
    Command,
    Decision,
    DrainWorker,
    RemoveWorker,
    RequeueTask,
    TaskStatus,
    UpdateTask,
    WorkerNotFoundError,
)

from ..projection import Projection
from .context import RestContext
from .models import (
    DrainRequest,
    ReasonRequest,
    TaskResponse,
    WorkerDetail,
    task_after,
    task_response,
    worker_detail,
)
from .problems import problem_responses


def operator_routes(ctx: RestContext) -> APIRouter:
    router = APIRouter(
        route_class=ctx.route_class, tags=["operator"], responses=problem_responses(403, 404, 409)
    )
    CurrentActor = Annotated[Actor, Depends(ctx.actor_dependency())]

    def worker_after(decision: Decision, worker_id: str) -> WorkerDetail:
        """The worker as the decision left it (the core refused unknown ones)."""
        return worker_detail(decision.state.workers[worker_id])

    async def task_answer(command: Command, task_id: str) -> TaskResponse:
        decision = await ctx.ledger.execute(command)
        task = decision.state.tasks[task_id]
        if task.status is not TaskStatus.PENDING:
            return task_response(task)
        return await ctx.ledger.read(lambda v: task_after(v, decision, task_id), catch_up=False)

    @router.get("/workers/{worker_id}")
    async def get_worker(worker_id: uuid.UUID, actor: CurrentActor) -> WorkerDetail:
        """A live worker: status, drain, held tasks. An ended worker is 404 (like after
        `DELETE`); `GET /workers/{worker_id}/history` keeps its end and the reason."""
        key = str(worker_id)

        def query(view: Projection) -> WorkerDetail:
            worker = view.worker(key)
            if worker is None:
                raise WorkerNotFoundError(f"worker {key} not found")
            if worker.is_ended:
                raise WorkerNotFoundError(
                    f"worker {key} has ended ({worker.end_reason}); its history stays at "
                    f"/workers/{key}/history"
                )
            return worker_detail(worker)

        return await ctx.ledger.read(query)

    @router.post("/workers/{worker_id}/drain", status_code=202)
    async def drain_worker(
        worker_id: uuid.UUID, body: DrainRequest, actor: CurrentActor
    ) -> WorkerDetail:
        """Drain a worker: from now on it claims nothing and `task_available` no longer
        wakes it; it finishes what it holds and then ends (left, by the caller). An idle
        worker ends at once. Past `deadline_seconds` a sweep ends it and releases what
        it still holds per its job's policy. Draining a draining worker changes nothing."""
        command = DrainWorker(
            worker_id=str(worker_id),
            reason=body.reason,
            deadline_seconds=body.deadline_seconds,
            actor=actor,
            now=ctx.clock(),
        )
        return worker_after(await ctx.ledger.execute(command), command.worker_id)

    @router.post("/workers/{worker_id}/remove")
    async def remove_worker(
        worker_id: uuid.UUID, body: ReasonRequest, actor: CurrentActor
    ) -> WorkerDetail:
        """End a worker at once, with a reason (`DELETE /workers/{id}` without one):
        its owner leaves it, a superuser deletes it; what it holds is released per its
        job's policy."""
        command = RemoveWorker(
            worker_id=str(worker_id), reason=body.reason, actor=actor, now=ctx.clock()
        )
        return worker_after(await ctx.ledger.execute(command), command.worker_id)

    @router.post("/tasks/{task_id}/requeue")
    async def requeue_task(
        task_id: uuid.UUID, body: ReasonRequest, actor: CurrentActor
    ) -> TaskResponse:
        """Put a claimed or running task back in its queue; the old attempt is fenced
        (a late report from its worker is refused as stale) and that worker's
        connection gets `task_cancelled`."""
        command = RequeueTask(
            task_id=str(task_id), reason=body.reason, actor=actor, now=ctx.clock()
        )
        return await task_answer(command, command.task_id)

    @router.post("/tasks/{task_id}/fail")
    async def fail_task(
        task_id: uuid.UUID, body: ReasonRequest, actor: CurrentActor
    ) -> TaskResponse:
        """Fail a claimed or running task with `reason` as its error."""
        command = UpdateTask(
            task_id=str(task_id),
            status=TaskStatus.FAILED,
            error=body.reason,
            actor=actor,
            now=ctx.clock(),
        )
        return await task_answer(command, command.task_id)

    @router.post("/tasks/{task_id}/cancel")
    async def cancel_task(
        task_id: uuid.UUID, body: ReasonRequest, actor: CurrentActor
    ) -> TaskResponse:
        """Cancel a task that has not ended, with `reason` as its error; its worker's
        connection gets `task_cancelled`."""
        command = UpdateTask(
            task_id=str(task_id),
            status=TaskStatus.CANCELLED,
            error=body.reason,
            actor=actor,
            now=ctx.clock(),
        )
        return await task_answer(command, command.task_id)

    return router
