"""Job routes and room listings (zndraw-joblib 0.1.7 routes 5-9; 8 stays before 9)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from workerledger.core import (
    Actor,
    InvalidRoomIdError,
    JobNotFoundError,
    JobRegistered,
    JobState,
    RegisterJob,
    TaskStatus,
    invalid_job_name_detail,
    invalid_room_detail,
    is_valid_room_id,
    job_full_name,
    split_job_name,
)

from ..projection import Projection
from .context import RestContext, job_listed, visible_rooms
from .idempotency import IdempotencyKey, idempotent_id, request_digest
from .models import (
    JobRegisterRequest,
    JobResponse,
    JobSummary,
    Limit,
    Offset,
    Paginated,
    TaskResponse,
    WorkerSummary,
    job_response,
    job_summary,
    page,
    tasks_page,
    worker_summary,
)
from .problems import problem_responses


def check_room(room_id: str) -> None:
    if not is_valid_room_id(room_id):
        raise InvalidRoomIdError(invalid_room_detail(room_id))


async def check_writable(ctx: RestContext, room_id: str, actor: Actor) -> None:
    """The room id is valid and the host's room policy lets `actor` write to it (423)."""
    check_room(room_id)
    await ctx.room_policy.check_writable(room_id, actor)


def resolve_job(view: Projection, job_name: str, *, listed_only: bool = True) -> JobState:
    if split_job_name(job_name) is None:
        raise JobNotFoundError(invalid_job_name_detail(job_name))
    job = view.job(job_name)
    if job is None or (listed_only and not job_listed(view, job)):
        raise JobNotFoundError(f"job {job_name} not found")
    return job


def _listed_jobs(view: Projection, room_id: str) -> list[JobState]:
    listed = [job for job in view.jobs_in(visible_rooms(room_id)) if job_listed(view, job)]
    return sorted(listed, key=lambda job: job.created_at, reverse=True)


def job_routes(ctx: RestContext) -> APIRouter:
    router = APIRouter(
        route_class=ctx.route_class,
        tags=["jobs"],
        responses=problem_responses(400, 403, 404, 409, 423),
    )
    CurrentActor = Annotated[Actor, Depends(ctx.actor_dependency())]

    @router.get("/rooms/{room_id}/workers")
    async def list_room_workers(
        room_id: str, actor: CurrentActor, limit: Limit = 50, offset: Offset = 0
    ) -> Paginated[WorkerSummary]:
        check_room(room_id)

        def query(view: Projection) -> Paginated[WorkerSummary]:
            linked = {w for job in _listed_jobs(view, room_id) for w in job.workers}
            items = [worker_summary(w) for w in view.live_workers() if w.id in linked]
            return page(items, limit, offset)

        return await ctx.ledger.read(query)

    @router.put("/rooms/{room_id}/jobs", status_code=201)
    async def register_job(
        room_id: str,
        body: JobRegisterRequest,
        actor: CurrentActor,
        response: Response,
        idempotency_key: IdempotencyKey = None,
    ) -> JobResponse:
        """Register (or re-register) a job and link a worker, created when not given."""
        await check_writable(ctx, room_id, actor)
        full_name = job_full_name(room_id, body.category, body.name)

        def was_listed(view: Projection) -> bool:
            job = view.job(full_name)
            return job is not None and job_listed(view, job)

        listed_before = await ctx.ledger.read(was_listed)
        digest = None
        if body.worker_id is not None:
            worker_id = str(body.worker_id)
        elif idempotency_key:
            worker_id = idempotent_id(actor.user, idempotency_key)
            digest = request_digest("register", room=room_id, body=body.model_dump(mode="json"))
        else:
            worker_id = str(uuid.uuid4())
        command = RegisterJob(
            room_id=room_id,
            category=body.category,
            name=body.name,
            schema=body.schema_,
            worker_id=worker_id,
            create_worker=body.worker_id is None,
            allowed_categories=ctx.allowed_categories,
            on_worker_lost=body.on_worker_lost,
            max_worker_losses=body.max_worker_losses,
            request_hash=digest,
            actor=actor,
            now=ctx.clock(),
        )
        decision = await ctx.ledger.execute(command)
        if listed_before and not any(isinstance(e, JobRegistered) for e in decision.events):
            response.status_code = 200
        return job_response(decision.state.jobs[full_name], worker_id=worker_id)

    @router.get("/rooms/{room_id}/jobs")
    async def list_jobs(
        room_id: str, actor: CurrentActor, limit: Limit = 50, offset: Offset = 0
    ) -> Paginated[JobSummary]:
        check_room(room_id)

        def query(view: Projection) -> Paginated[JobSummary]:
            return page([job_summary(job) for job in _listed_jobs(view, room_id)], limit, offset)

        return await ctx.ledger.read(query)

    @router.get("/rooms/{room_id}/jobs/{job_name:path}/tasks")
    async def list_job_tasks(
        room_id: str,
        job_name: str,
        actor: CurrentActor,
        status: TaskStatus | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Paginated[TaskResponse]:
        check_room(room_id)

        def query(view: Projection) -> Paginated[TaskResponse]:
            job = resolve_job(view, job_name, listed_only=False)
            tasks = view.tasks_of_job_in_room(room_id, job.full_name, status)
            return tasks_page(view, tasks, limit, offset)

        return await ctx.ledger.read(query)

    @router.get("/rooms/{room_id}/jobs/{job_name:path}")
    async def get_job(room_id: str, job_name: str, actor: CurrentActor) -> JobResponse:
        check_room(room_id)
        return await ctx.ledger.read(lambda view: job_response(resolve_job(view, job_name)))

    return router
