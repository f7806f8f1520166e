"""REST wire shapes (zndraw-joblib 0.1.7 field names) and their builders from the view.

Request bodies are strict: a field the model does not have is refused with FastAPI's
422 (`type` `extra_forbidden`, `loc` naming the field), so a payload sent without its
`{"payload": ...}` wrapper is not run with defaults. zndraw-joblib 0.1.7's client sends
only the fields modelled here (checked against its source), as does our SDK.

Extensions that old clients ignore: `attempt` on tasks (the fencing token), optional
`worker_id` / `attempt` on status updates, `on_worker_lost` / `max_worker_losses` on
job registration, `draining` / `drain_deadline` on workers. Timestamps are always UTC
with an explicit `+00:00` offset, the same format as the Socket.IO payloads.
`request_models` rebuilds the request models with one router's limits and category
allowlist, so its OpenAPI shows them; `Problem` and FastAPI's own 401/422 bodies are
the error shapes the routes declare.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, create_model
from workerledger.core import (
    DRAIN_DEADLINE_MAX_SECONDS,
    Decision,
    JobState,
    RunningTaskPolicy,
    TaskNotFoundError,
    TaskState,
    TaskStatus,
    WorkerState,
    WorkerStatus,
)

from ..input_limits import InputLimits
from ..projection import Projection

Limit = Annotated[int, Query(ge=0, le=500)]  # pagination, as in zndraw-joblib 0.1.7
Offset = Annotated[int, Query(ge=0)]

T = TypeVar("T")
K = TypeVar("K")
UtcDatetime = Annotated[
    datetime, PlainSerializer(lambda value: value.astimezone(UTC).isoformat(), return_type=str)
]
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://workerledger/ids")


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class _Request(_Wire):
    """A request body: unknown fields are refused (422 `extra_forbidden` naming them)."""

    model_config = ConfigDict(extra="forbid")


class WorkerResponse(_Wire):
    id: str
    last_heartbeat: UtcDatetime
    draining: bool = Field(default=False, description="drained: claims nothing, then leaves")
    drain_deadline: UtcDatetime | None = None


class WorkerSummary(WorkerResponse):
    job_count: int


class JobRegisterRequest(_Request):
    category: str
    name: str = Field(min_length=1)
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    worker_id: uuid.UUID | None = None
    on_worker_lost: RunningTaskPolicy = RunningTaskPolicy.FAIL
    max_worker_losses: int = Field(default=3, ge=0)


class JobSummary(_Wire):
    full_name: str
    category: str
    name: str
    workers: list[str]


class JobResponse(JobSummary):
    id: str
    room_id: str
    schema_: dict[str, Any] = Field(alias="schema")
    worker_id: str | None = None


class TaskSubmitRequest(_Request):
    payload: dict[str, Any] = Field(default_factory=dict)


class TaskResponse(_Wire):
    id: str
    job_name: str
    room_id: str
    status: TaskStatus
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    completed_at: UtcDatetime | None
    worker_id: str | None
    error: str | None
    payload: dict[str, Any]
    queue_position: int | None
    attempt: int


class TaskClaimRequest(_Request):
    worker_id: uuid.UUID


class TaskClaimResponse(_Wire):
    task: TaskResponse | None


class TaskUpdateRequest(_Request):
    status: TaskStatus
    error: str | None = None
    worker_id: uuid.UUID | None = None
    attempt: int | None = Field(default=None, ge=1)


class ReasonRequest(_Request):
    """An operator command's body: why (recorded in the log with the caller's name)."""

    reason: str = Field(min_length=1, description="why; recorded in the log with who")


class DrainRequest(ReasonRequest):
    deadline_seconds: float | None = Field(
        default=None,
        strict=True,  # a number: `false` or `"60"` is refused, not read as 0 or 60
        ge=0,
        le=DRAIN_DEADLINE_MAX_SECONDS,
        description="after this long, a sweep ends the worker and releases what it still "
        "holds per its job's policy (default: no deadline)",
    )


class WorkerDetail(_Wire):
    """One worker in any state, with its drain (an extension to 0.1.7)."""

    id: str
    user: str
    status: WorkerStatus
    created_at: UtcDatetime
    last_heartbeat: UtcDatetime
    jobs: list[str]
    tasks: list[str] = Field(description="ids of the tasks it holds (claimed or running)")
    draining: bool
    draining_since: UtcDatetime | None
    drain_deadline: UtcDatetime | None
    drain_reason: str | None
    drained_by: str | None
    ended_at: UtcDatetime | None
    end_reason: str | None


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`): every refusal but FastAPI's
    own 401 and 422 bodies."""

    type: str = Field(description="`/v1/problems/<code>`, the stable error code")
    title: str
    status: int
    detail: str | None = None
    limit: int | None = Field(
        default=None, description="the configured limit a boundary refusal names"
    )


class HTTPErrorBody(BaseModel):
    """FastAPI's `HTTPException` body (401 without a valid bearer token, as in 0.1.7)."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationErrorBody(BaseModel):
    """FastAPI's request validation body (422, as in zndraw-joblib 0.1.7)."""

    detail: list[ValidationIssue]


def request_models(
    limits: InputLimits, categories: Sequence[str]
) -> dict[type[BaseModel], type[BaseModel]]:
    """The request models with these limits and this category allowlist in their fields.

    The allowlist is documented (an `enum` in the schema), not validated here: the core
    refuses other categories with 400 `invalid-category`, as zndraw-joblib does.
    """
    register = create_model(
        "JobRegisterRequest",
        __base__=JobRegisterRequest,
        category=(
            str,
            Field(max_length=limits.max_category_length, json_schema_extra={"enum": [*categories]}),
        ),
        name=(
            str,
            Field(
                min_length=1,
                max_length=limits.max_job_name_length,
                pattern=r"^[^\n]+$",
                description="one line: a job is addressed by its name in URL paths",
            ),
        ),
    )
    update = create_model(
        "TaskUpdateRequest",
        __base__=TaskUpdateRequest,
        error=(str | None, Field(default=None, max_length=limits.max_error_length)),
    )
    reason = (str, Field(min_length=1, max_length=limits.max_error_length,
                         description="why; recorded in the log with who"))  # fmt: skip
    because = create_model("ReasonRequest", __base__=ReasonRequest, reason=reason)
    drain = create_model("DrainRequest", __base__=DrainRequest, reason=reason)
    return {
        JobRegisterRequest: register,
        TaskUpdateRequest: update,
        ReasonRequest: because,
        DrainRequest: drain,
    }


class Paginated(_Wire, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def page(items: Sequence[T], limit: int, offset: int) -> Paginated[T]:
    return Paginated[T](
        items=list(items[offset : offset + limit]), total=len(items), limit=limit, offset=offset
    )


def page_of(keys: Sequence[K], limit: int, offset: int, build: Callable[[K], T]) -> Paginated[T]:
    """Paginate `keys` and build only the items on the page."""
    items = [build(key) for key in keys[offset : offset + limit]]
    return Paginated[T](items=items, total=len(keys), limit=limit, offset=offset)


def worker_response(worker: WorkerState) -> WorkerResponse:
    return WorkerResponse(
        id=worker.id,
        last_heartbeat=worker.last_heartbeat,
        draining=worker.draining,
        drain_deadline=worker.drain_deadline,
    )


def worker_summary(worker: WorkerState) -> WorkerSummary:
    return WorkerSummary(
        id=worker.id,
        last_heartbeat=worker.last_heartbeat,
        job_count=len(worker.jobs),
        draining=worker.draining,
        drain_deadline=worker.drain_deadline,
    )


def worker_detail(worker: WorkerState) -> WorkerDetail:
    return WorkerDetail(
        id=worker.id,
        user=worker.user,
        status=worker.status,
        created_at=worker.created_at,
        last_heartbeat=worker.last_heartbeat,
        jobs=sorted(worker.jobs),
        tasks=sorted(worker.tasks),
        draining=worker.draining,
        draining_since=worker.draining_since,
        drain_deadline=worker.drain_deadline,
        drain_reason=worker.drain_reason,
        drained_by=worker.drained_by,
        ended_at=worker.ended_at,
        end_reason=worker.end_reason,
    )


def job_summary(job: JobState) -> JobSummary:
    return JobSummary(
        full_name=job.full_name, category=job.category, name=job.name, workers=sorted(job.workers)
    )


def job_response(job: JobState, worker_id: str | None = None) -> JobResponse:
    return JobResponse(
        id=str(uuid.uuid5(ID_NAMESPACE, job.full_name)),
        room_id=job.room_id,
        category=job.category,
        name=job.name,
        full_name=job.full_name,
        schema_=job.schema_,
        workers=sorted(job.workers),
        worker_id=worker_id,
    )


def task_response(task: TaskState, queue_position: int | None = None) -> TaskResponse:
    return TaskResponse(
        id=task.id,
        job_name=task.job_name,
        room_id=task.room_id,
        status=task.status,
        created_at=task.created_at,
        started_at=task.started_at,
        completed_at=task.completed_at,
        worker_id=task.worker_id,
        error=task.error,
        payload=task.payload,
        queue_position=queue_position if task.status is TaskStatus.PENDING else None,
        attempt=task.attempt,
    )


def task_view(view: Projection, task_id: str) -> TaskResponse:
    """A task as the view holds it now; TaskNotFoundError if unknown."""
    task = view.task(task_id)
    if task is None:
        raise TaskNotFoundError(f"task {task_id} not found")
    return task_response(task, view.queue_position(task_id))


def tasks_page(
    view: Projection, tasks: Sequence[TaskState], limit: int, offset: int
) -> Paginated[TaskResponse]:
    """One page of `tasks`, each with its queue position in the view."""
    return page_of(
        tasks, limit, offset, lambda task: task_response(task, view.queue_position(task.id))
    )


def task_after(view: Projection, decision: Decision, task_id: str) -> TaskResponse:
    """The task as the decision left it, ranked in the view's queue (a named query, not
    the emissions): run it right after the command, whose events the service has
    folded into the view."""
    return task_response(decision.state.tasks[task_id], view.queue_position(task_id))
