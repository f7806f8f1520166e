"""`GET /metrics`: the runtime's metrics in the Prometheus text format.

Mount it beside the REST router (not under `/v1/joblib`, and not part of
`create_router`): `app.include_router(create_metrics_route(runtime))`. With
`require_token=True` a scrape needs a bearer token the runtime's authenticator accepts
(any user); without it the route is open, as Prometheus scrapes usually are.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..auth import bearer_token
from .metrics import ViewEntities

if TYPE_CHECKING:  # the runtime module builds the whole host: keep this import light
    from ..runtime import LedgerRuntime


def create_metrics_route(runtime: LedgerRuntime, *, require_token: bool = False) -> APIRouter:
    """A router with `GET /metrics` for `runtime` (see the module docstring)."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if require_token:
            token = bearer_token(request.headers.get("authorization"))
            if token is None or runtime.authenticate(token) is None:
                return JSONResponse(
                    {"detail": "Unauthorized"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        entities = await runtime.ledger.read(ViewEntities.of, liveness=False)
        runtime.metrics.set_view(await asyncio.to_thread(entities.counts))
        provider_reads = getattr(runtime.provider_results, "blocked_waiters", 0)
        waiting = provider_reads if isinstance(provider_reads, int) else 0
        runtime.metrics.set_waiting(len(runtime.waiters.watched()), waiting)
        return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
