"""`create_router`: the zndraw-joblib 0.1.7 jobs/tasks/workers REST API over a Ledger.

Mount it with `app.include_router(create_router(runtime))`; errors are problem+json
without any app-level handler. Every route needs a bearer token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload
from weakref import WeakKeyDictionary

from fastapi import APIRouter
from workerledger.core import DEFAULT_CATEGORIES

from ..auth import Authenticator, Clock, utc_now
from ..input_limits import DEFAULT_LIMITS, InputLimits
from ..ledger import Ledger
from ..task_waiters import TaskWaiters
from .context import RestContext
from .history import history_routes
from .jobs import job_routes
from .operator import operator_routes
from .problems import include_with_allow
from .providers import provider_routes
from .tasks import PREFIX, task_routes
from .workers import worker_routes

if TYPE_CHECKING:  # the runtime module builds the whole host: keep this import light
    from ..runtime import LedgerRuntime


@overload
def create_router(ledger: LedgerRuntime) -> APIRouter: ...


@overload
def create_router(
    ledger: Ledger,
    authenticate: Authenticator,
    *,
    waiters: TaskWaiters,
    clock: Clock = utc_now,
    allowed_categories: tuple[str, ...] = DEFAULT_CATEGORIES,
    long_poll_max_wait_seconds: float = 60.0,
    limits: InputLimits = DEFAULT_LIMITS,
) -> APIRouter: ...


def create_router(
    ledger: Ledger | LedgerRuntime,
    authenticate: Authenticator | None = None,
    *,
    waiters: TaskWaiters | None = None,
    clock: Clock = utc_now,
    allowed_categories: tuple[str, ...] = DEFAULT_CATEGORIES,
    long_poll_max_wait_seconds: float = 60.0,
    limits: InputLimits = DEFAULT_LIMITS,
) -> APIRouter:
    """The REST router (prefix `/v1/joblib`).

    `create_router(runtime)` takes everything from the `LedgerRuntime`: its ledger,
    authenticator, clock, policies (allowed categories, long-poll cap), limits and the
    task waiters its ledger already delivers to. The older form
    `create_router(ledger, authenticate, waiters=...)` needs the `TaskWaiters` that
    the ledger's emitter delivers to (so long-polls wake on committed changes); the
    router never changes the ledger. `limits` bound every request before anything is
    decided (README, "Limits").
    """
    if isinstance(ledger, Ledger):
        if authenticate is None or waiters is None:
            raise TypeError("with a Ledger, pass authenticate and the waiters it delivers to")
        ctx = RestContext(
            ledger=ledger,
            authenticate=authenticate,
            waiters=waiters,
            clock=clock,
            allowed_categories=allowed_categories,
            long_poll_max_wait_seconds=long_poll_max_wait_seconds,
            limits=limits,
        )
    else:
        if authenticate is not None or waiters is not None:
            raise TypeError("a LedgerRuntime holds the authenticator and the waiters")
        ctx = rest_context(ledger)
    router = APIRouter(prefix=PREFIX)
    parts = [  # routes are matched in order: the task routes, the busiest, first
        task_routes(ctx),  # (no path of theirs overlaps a path of the others)
        worker_routes(ctx),
        job_routes(ctx),
        history_routes(ctx),
        provider_routes(ctx),
        operator_routes(ctx),
    ]
    include_with_allow(router, parts)
    return router


_CONTEXTS: WeakKeyDictionary[LedgerRuntime, RestContext] = WeakKeyDictionary()


def rest_context(runtime: LedgerRuntime) -> RestContext:
    """What the routes of `runtime` share: its ledger, authenticator, waiters, clock,
    policies, limits, room policy, internal executor and provider settings. One per
    runtime: its router and the hot-request lane validate with the same models."""
    context = _CONTEXTS.get(runtime)
    if context is None:
        context = _CONTEXTS[runtime] = _new_context(runtime)
    return context


def _new_context(runtime: LedgerRuntime) -> RestContext:
    return RestContext(
        ledger=runtime.ledger,
        authenticate=runtime.authenticate,
        waiters=runtime.waiters,
        clock=runtime.clock,
        allowed_categories=runtime.policies.allowed_categories,
        long_poll_max_wait_seconds=runtime.policies.long_poll_max_wait_seconds,
        limits=runtime.limits,
        room_policy=runtime.room_policy,
        internal_executor=runtime.internal_executor,
        providers=runtime.provider_settings(),
    )
