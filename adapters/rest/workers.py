"""Worker routes: register, list, heartbeat, leave (zndraw-joblib 0.1.7 routes 1-4)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from workerledger.core import (
    Actor,
    DuplicateIdError,
    RecordHeartbeat,
    RegisterWorker,
    RemoveWorker,
)

from ..projection import Projection
from .context import RestContext
from .idempotency import idempotent_id
from .models import (
    Limit,
    Offset,
    Paginated,
    WorkerResponse,
    WorkerSummary,
    page,
    worker_response,
    worker_summary,
)
from .problems import problem_responses


async def record_heartbeat(ctx: RestContext, worker_id: str, actor: Actor) -> WorkerResponse:
    """A heartbeat of `worker_id` (the route and the hot-request lane both call this)."""
    command = RecordHeartbeat(worker_id=worker_id, actor=actor, now=ctx.clock())
    decision = await ctx.ledger.execute(command)
    return worker_response(decision.state.workers[command.worker_id])


def worker_routes(ctx: RestContext) -> APIRouter:
    router = APIRouter(
        route_class=ctx.route_class, tags=["workers"], responses=problem_responses(403, 404, 409)
    )
    CurrentActor = Annotated[Actor, Depends(ctx.actor_dependency())]

    @router.post("/workers", status_code=201)
    async def register_worker(
        actor: CurrentActor, idempotency_key: Annotated[str | None, Header()] = None
    ) -> WorkerResponse:
        """Create a worker owned by the caller; a retry with the same Idempotency-Key
        returns the worker the first attempt created."""
        worker_id = idempotent_id(actor.user, idempotency_key) if idempotency_key else None
        command = RegisterWorker(
            worker_id=worker_id or str(uuid.uuid4()), actor=actor, now=ctx.clock()
        )
        try:
            decision = await ctx.ledger.execute(command)
        except DuplicateIdError:
            existing = await ctx.ledger.read(lambda view: view.worker(command.worker_id))
            if idempotency_key is None or existing is None or existing.is_ended:
                raise
            return worker_response(existing)
        return worker_response(decision.state.workers[command.worker_id])

    @router.get("/workers")
    async def list_workers(
        actor: CurrentActor, limit: Limit = 50, offset: Offset = 0
    ) -> Paginated[WorkerSummary]:
        def query(view: Projection) -> Paginated[WorkerSummary]:
            return page([worker_summary(w) for w in view.live_workers()], limit, offset)

        return await ctx.ledger.read(query)

    @router.patch("/workers/{worker_id}")
    async def heartbeat(worker_id: uuid.UUID, actor: CurrentActor) -> WorkerResponse:
        return await record_heartbeat(ctx, str(worker_id), actor)

    @router.delete("/workers/{worker_id}", status_code=204)
    async def remove_worker(worker_id: uuid.UUID, actor: CurrentActor) -> Response:
        """Graceful leave (owner) or removal (superuser): releases the worker's tasks."""
        await ctx.ledger.execute(
            RemoveWorker(worker_id=str(worker_id), actor=actor, now=ctx.clock())
        )
        return Response(status_code=204)

    return router
