"""What the REST routes share: the ledger, authentication, clock and view helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from workerledger.core import DEFAULT_CATEGORIES, GLOBAL_ROOM, INTERNAL_ROOM, Actor, JobState

from ..auth import Authenticator, Clock, utc_now
from ..input_limits import DEFAULT_LIMITS, InputLimits
from ..internal import InternalExecutor
from ..ledger import Ledger
from ..projection import Projection
from ..providers.results import MemoryResultCache, ResultCache
from ..room_policy import OpenRooms, RoomPolicy
from ..task_waiters import TaskWaiters
from .boundary import RestBoundary
from .problems import ProblemRoute, bounded_route

bearer = HTTPBearer(auto_error=False, description="workerledger bearer token")


@dataclass(frozen=True)
class ProviderSettings:
    """Provider reads: where results are cached and for how long (LedgerPolicies' fields
    of the same names)."""

    results: ResultCache = field(default_factory=MemoryResultCache)
    allowed_categories: tuple[str, ...] | None = None  # None: any provider category
    result_ttl_seconds: float = 300.0
    inflight_ttl_seconds: float = 30.0
    long_poll_default_seconds: float = 5.0
    long_poll_max_seconds: float = 30.0


@dataclass
class RestContext:
    ledger: Ledger
    authenticate: Authenticator
    waiters: TaskWaiters = field(default_factory=TaskWaiters)
    clock: Clock = utc_now
    allowed_categories: tuple[str, ...] = DEFAULT_CATEGORIES
    long_poll_max_wait_seconds: float = 60.0
    limits: InputLimits = DEFAULT_LIMITS
    room_policy: RoomPolicy = field(default_factory=OpenRooms)
    internal_executor: InternalExecutor | None = None
    providers: ProviderSettings = field(default_factory=lambda: ProviderSettings())

    @cached_property
    def route_class(self) -> type[ProblemRoute]:
        """The route class of every router built on this context (limits, categories)."""
        return bounded_route(RestBoundary(self.limits, self.allowed_categories))

    def actor_dependency(self) -> Callable[..., Awaitable[Actor]]:
        async def current_actor(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> Actor:
            actor = self.authenticate(credentials.credentials) if credentials else None
            if actor is None:
                raise HTTPException(401, "Unauthorized", headers={"WWW-Authenticate": "Bearer"})
            return actor

        return current_actor


def visible_rooms(room_id: str) -> frozenset[str]:
    """zndraw-joblib visibility: a plain room also sees `@global` and `@internal` jobs."""
    if room_id in (GLOBAL_ROOM, INTERNAL_ROOM):
        return frozenset({room_id})
    return frozenset({GLOBAL_ROOM, INTERNAL_ROOM, room_id})


def job_listed(view: Projection, job: JobState) -> bool:
    """A job without workers and without pending tasks is hidden (0.1.7's orphan rule)."""
    return (
        bool(job.workers) or job.room_id == INTERNAL_ROOM or view.pending_count(job.full_name) > 0
    )
