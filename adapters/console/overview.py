"""The console's overview: workers, jobs and recent tasks, filtered and paginated.

`overview(view, query)` runs on the ledger's thread (`ledger.read`) and copies what the
page shows out of the view; serialising happens on the event loop. Its `token` names
the view it was computed from (log position and liveness counter): nothing it shows
changed while the token is the same, so a poll that sends the token it has (`since`)
gets `changed: false` and no body to render. Nothing in it depends on the clock: the
page computes grace countdowns and heartbeat ages from the timestamps and `now`.

Every list walks the view once at most: workers (all, ended too) newest registration
first, jobs newest first, tasks newest submission first, stopping at the page's end; a
task list filtered by user or status walks at most TASK_SCAN_LIMIT tasks, so no poll
holds the ledger's thread for long (an `OverviewCache` lets consoles polling the same
view share one walk).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, PlainSerializer
from workerledger.core import JobState, TaskState, TaskStatus, WorkerState, WorkerStatus

from ..projection import Projection

T = TypeVar("T")
Utc = Annotated[
    datetime, PlainSerializer(lambda value: value.astimezone(UTC).isoformat(), return_type=str)
]
ERROR_SHOWN = 300  # characters of a task's error in the overview (the task page has it all)
HELD_SHOWN = 20  # held tasks listed per worker (the count is always whole)
TASK_SCAN_LIMIT = 10_000  # tasks a filtered task list walks at most, newest first
WORKER_GROUPS = {
    "live": frozenset(s for s in WorkerStatus if not s.is_ended),
    "ended": frozenset(s for s in WorkerStatus if s.is_ended),
}
WORKER_STATES = ("all", *WORKER_GROUPS, *(s.value for s in WorkerStatus))


class HeldTask(BaseModel):
    id: str
    status: TaskStatus
    job_name: str


class ConsoleWorker(BaseModel):
    id: str
    user: str
    state: WorkerStatus
    connected: bool  # a Socket.IO connection speaks for it
    created_at: Utc
    last_heartbeat: Utc
    disconnected_at: Utc | None
    disconnect_reason: str | None
    grace_deadline: Utc | None  # while disconnected: when it will be lost
    ended_at: Utc | None
    end_reason: str | None  # lost / left / deleted: why
    jobs: list[str]  # job full names it is registered for
    rooms: list[str]  # rooms of its jobs and providers
    joined: list[str]  # job rooms its connection joined
    providers: list[str]
    held_count: int
    held: list[HeldTask]  # the first HELD_SHOWN


class ConsoleJob(BaseModel):
    full_name: str
    room_id: str
    category: str
    name: str
    queue_depth: int  # pending tasks
    workers: int  # linked live workers
    on_worker_lost: str


class ConsoleTask(BaseModel):
    id: str
    job_name: str
    room_id: str
    submitted_by: str
    status: TaskStatus
    attempt: int
    worker_id: str | None
    queue_position: int | None
    created_at: Utc
    claimed_at: Utc | None
    started_at: Utc | None
    completed_at: Utc | None
    error: str | None
    requeues: int
    losses: int


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class TaskPage(BaseModel):
    """Newest first; `has_more` instead of a total, so a page never walks every task."""

    items: list[ConsoleTask]
    limit: int
    offset: int
    has_more: bool
    truncated: bool  # a filtered walk stopped after TASK_SCAN_LIMIT tasks
    searched: int  # tasks walked


class Overview(BaseModel):
    token: str
    changed: bool
    now: Utc
    grace_seconds: float = 0.0
    counts: dict[str, int] = {}  # workers by state (room and user filters applied)
    held: int = 0  # tasks held by the counted workers
    queued: int = 0  # pending tasks of the listed jobs
    workers: Page[ConsoleWorker] | None = None
    jobs: Page[ConsoleJob] | None = None
    tasks: TaskPage | None = None


@dataclass(frozen=True)
class OverviewQuery:
    room: str | None = None
    user: str | None = None
    state: str = "all"  # one of WORKER_STATES
    status: TaskStatus | None = None
    limit: int = 100
    offset: int = 0
    job_limit: int = 100
    job_offset: int = 0
    task_limit: int = 50
    task_offset: int = 0
    since: str | None = None


def view_token(view: Projection, query: OverviewQuery) -> str:
    """Names what an overview shows: the view's log position and liveness counter (both
    the shared log's, so every host of a deployment names a view alike) and the query."""
    asked = replace(query, since=None)
    digest = hashlib.sha256(repr(asked).encode()).hexdigest()[:12]
    return f"{view.position}.{view.liveness_counter}.{digest}"


class OverviewCache:
    """The last overviews computed, by token: consoles polling the same view with the
    same filters share one computation. Used on the ledger's thread only."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[str, Overview] = OrderedDict()

    def get(self, token: str) -> Overview | None:
        return self._items.get(token)

    def put(self, token: str, value: Overview) -> None:
        self._items[token] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def overview(
    view: Projection,
    query: OverviewQuery,
    now: datetime,
    grace: float,
    cache: OverviewCache | None = None,
) -> Overview:
    """The overview of `view` for `query` (or `changed=False` if `query.since` names it)."""
    token = view_token(view, query)
    if query.since == token:
        return Overview(token=token, changed=False, now=now)
    cached = cache.get(token) if cache is not None else None
    if cached is not None:
        return cached.model_copy(update={"now": now})
    result = _Reader(view, query).overview(token, now, grace)
    if cache is not None:
        cache.put(token, result)
    return result


class _Reader:
    """One overview's walk of the view (models built without validation: the view's
    states are already valid)."""

    def __init__(self, view: Projection, query: OverviewQuery) -> None:
        self.view, self.query = view, query
        self.job_rooms = {name: job.room_id for name, job in view.jobs.items()}

    def overview(self, token: str, now: datetime, grace: float) -> Overview:
        query = self.query
        counts = dict.fromkeys(WorkerStatus, 0)
        states = _states(query.state)
        matching: list[WorkerState] = []
        held = 0
        for worker in self.view.workers_newest_first():
            if not self.worker_matches(worker):
                continue
            status = worker.status
            counts[status] += 1
            held += len(worker.tasks)
            if status in states:
                matching.append(worker)
        window = matching[query.offset : query.offset + query.limit]
        jobs = [job for job in reversed(self.view.jobs.values()) if self.job_matches(job)]
        job_window = jobs[query.job_offset : query.job_offset + query.job_limit]
        return Overview.model_construct(
            token=token,
            changed=True,
            now=now,
            grace_seconds=grace,
            counts={status.value: n for status, n in counts.items()},
            held=held,
            queued=sum(self.view.pending_count(job.full_name) for job in jobs),
            workers=Page[ConsoleWorker].model_construct(
                items=[self.worker(w) for w in window],
                total=len(matching),
                limit=query.limit,
                offset=query.offset,
            ),
            jobs=Page[ConsoleJob].model_construct(
                items=[self.job(job) for job in job_window],
                total=len(jobs),
                limit=query.job_limit,
                offset=query.job_offset,
            ),
            tasks=self.tasks(),
        )

    def rooms_of(self, worker: WorkerState) -> set[str]:
        rooms = {self.job_rooms[name] for name in worker.jobs if name in self.job_rooms}
        for name in worker.providers:
            provider = self.view.providers.get(name)
            if provider is not None:
                rooms.add(provider.room_id)
        return rooms

    def worker_matches(self, worker: WorkerState) -> bool:
        query = self.query
        if query.user is not None and worker.user != query.user:
            return False
        return query.room is None or query.room in self.rooms_of(worker)

    def job_matches(self, job: JobState) -> bool:
        query = self.query
        if query.room is not None and job.room_id != query.room:
            return False
        if query.user is None:
            return True
        linked = (self.view.worker(worker_id) for worker_id in job.workers)
        return any(worker is not None and worker.user == query.user for worker in linked)

    def worker(self, worker: WorkerState) -> ConsoleWorker:
        held = sorted(worker.tasks)
        return ConsoleWorker.model_construct(
            id=worker.id,
            user=worker.user,
            state=worker.status,
            connected=worker.sid is not None,
            created_at=worker.created_at,
            last_heartbeat=worker.last_heartbeat,
            disconnected_at=worker.disconnected_at,
            disconnect_reason=worker.disconnect_reason,
            grace_deadline=worker.grace_deadline,
            ended_at=worker.ended_at,
            end_reason=worker.end_reason,
            jobs=sorted(worker.jobs),
            rooms=sorted(self.rooms_of(worker)),
            joined=sorted(worker.rooms),
            providers=sorted(worker.providers),
            held_count=len(held),
            held=[
                HeldTask.model_construct(id=task.id, status=task.status, job_name=task.job_name)
                for task_id in held[:HELD_SHOWN]
                if (task := self.view.task(task_id)) is not None
            ],
        )

    def job(self, job: JobState) -> ConsoleJob:
        return ConsoleJob.model_construct(
            full_name=job.full_name,
            room_id=job.room_id,
            category=job.category,
            name=job.name,
            queue_depth=self.view.pending_count(job.full_name),
            workers=len(job.workers),
            on_worker_lost=job.on_worker_lost.value,
        )

    def tasks(self) -> TaskPage:
        """Newest first; a filtered walk stops after TASK_SCAN_LIMIT tasks (`truncated`)."""
        query = self.query
        filtered = query.user is not None or query.status is not None
        wanted = query.task_offset + query.task_limit + 1  # one more: is there a next page?
        found: list[TaskState] = []
        searched, truncated = 0, False
        for task in self.view.tasks_newest_first(query.room):
            if filtered and searched == TASK_SCAN_LIMIT:
                truncated = True
                break
            searched += 1
            if query.user is not None and task.submitted_by != query.user:
                continue
            if query.status is not None and task.status is not query.status:
                continue
            found.append(task)
            if len(found) == wanted:
                break
        window = found[query.task_offset : query.task_offset + query.task_limit]
        return TaskPage.model_construct(
            items=[self.task(task) for task in window],
            limit=query.task_limit,
            offset=query.task_offset,
            has_more=len(found) == wanted or truncated,
            truncated=truncated,
            searched=searched,
        )

    def task(self, task: TaskState) -> ConsoleTask:
        error = task.error
        if error is not None and len(error) > ERROR_SHOWN:
            error = error[:ERROR_SHOWN] + "…"
        return ConsoleTask.model_construct(
            id=task.id,
            job_name=task.job_name,
            room_id=task.room_id,
            submitted_by=task.submitted_by,
            status=task.status,
            attempt=task.attempt,
            worker_id=task.worker_id,
            queue_position=self.view.queue_position(task.id),
            created_at=task.created_at,
            claimed_at=task.claimed_at,
            started_at=task.started_at,
            completed_at=task.completed_at,
            error=error,
            requeues=task.requeues,
            losses=task.losses,
        )


def _states(state: str) -> frozenset[WorkerStatus]:
    if state == "all":
        return frozenset(WorkerStatus)
    return WORKER_GROUPS.get(state) or frozenset({WorkerStatus(state)})
