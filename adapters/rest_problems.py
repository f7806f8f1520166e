"""problem+json responses, installed per route so that mounting the router is enough.

`ProblemRoute` turns the core's DomainError (and store conflicts) raised by a handler
into `application/problem+json`; the host registers no exception handler. FastAPI's
own 401 `{"detail": ...}` and 422 validation bodies are kept as zndraw-joblib has them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from workerledger.core import DomainError

from .ports import StoreError
from .problems import problem_for

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_response(error: Exception) -> JSONResponse:
    body = problem_for(error)
    headers = {"Retry-After": "1"} if body["status"] == 503 else None
    return JSONResponse(
        body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


class ProblemRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (DomainError, StoreError) as error:
                return problem_response(error)

        return handle
