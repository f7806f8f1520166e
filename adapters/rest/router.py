"""`create_router`: the zndraw-joblib 0.1.7 jobs/tasks/workers REST API over a Ledger.

Mount it with `app.include_router(create_router(ledger, authenticate))`; errors are
problem+json without any app-level handler. Every route needs a bearer token.
"""

from __future__ import annotations

from fastapi import APIRouter
from workerledger.core.model import DEFAULT_CATEGORIES

from ..auth import Authenticator, Clock, utc_now
from ..input_limits import DEFAULT_LIMITS, InputLimits
from ..ledger import Ledger
from ..realtime.emitter import chain_emitter
from ..task_waiters import TaskWaiters
from .context import RestContext
from .history import history_routes
from .jobs import job_routes
from .problems import include_with_allow
from .tasks import PREFIX, task_routes
from .workers import worker_routes


def create_router(
    ledger: Ledger,
    authenticate: Authenticator,
    *,
    waiters: TaskWaiters | None = None,
    clock: Clock = utc_now,
    allowed_categories: tuple[str, ...] = DEFAULT_CATEGORIES,
    long_poll_max_wait_seconds: float = 60.0,
    limits: InputLimits = DEFAULT_LIMITS,
) -> APIRouter:
    """The REST router (prefix `/v1/joblib`).

    Without `waiters`, a `TaskWaiters` is created and chained onto `ledger.emitter`
    so that long-polls wake on committed status changes; pass your own (already
    chained) to share it with a `Sweeper` for changes made by other hosts. `limits`
    bound every request before anything is decided (README, "Limits").
    """
    if waiters is None:
        waiters = TaskWaiters()
        chain_emitter(ledger, waiters)
    ctx = RestContext(
        ledger=ledger,
        authenticate=authenticate,
        waiters=waiters,
        clock=clock,
        allowed_categories=allowed_categories,
        long_poll_max_wait_seconds=long_poll_max_wait_seconds,
        limits=limits,
    )
    router = APIRouter(prefix=PREFIX)
    parts = [worker_routes(ctx), job_routes(ctx), task_routes(ctx), history_routes(ctx)]
    include_with_allow(router, parts)
    return router
