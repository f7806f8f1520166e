"""problem+json responses and the boundary, installed per route so that mounting the
router is enough.

`ProblemRoute` admits each request through its router's `RestBoundary` (body size, strict
JSON, lengths) before FastAPI parses it, and turns the core's DomainError, store
conflicts and boundary refusals into `application/problem+json`; the host registers no
exception handler. FastAPI's own 401 `{"detail": ...}` and 422 validation bodies are kept
as zndraw-joblib 0.1.7 has them. Every route declares the responses it can give:
`BOUNDARY_RESPONSES` (401, 413, 422, 503) on each, plus the domain statuses its router
file lists with `problem_responses(...)`; a route with path parameters also declares
Starlette's own 404 body (a value that does not fit its path segment, such as one with
`/` or a newline, matches no route), and a PUT that creates with 201 declares the 200
it answers when the resource already existed (RFC 9110). `allow_methods` makes every
405 list all the methods of its path in `Allow`, which Starlette alone does not.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from workerledger.core import DomainError

from ..input_limits import InputRefused
from ..ports import StoreError
from ..problems import problem_for
from .boundary import RestBoundary, too_long
from .models import HTTPErrorBody, Problem, ValidationErrorBody

logger = logging.getLogger(__name__)
PROBLEM_MEDIA_TYPE = "application/problem+json"
_MEANING = {
    400: "malformed identifier or category not allowed",
    401: "missing or unknown bearer token",
    403: "the resource belongs to another user",
    404: "no such worker, job, task or provider",
    409: "conflicts with the current state (stale attempt or session, schema, transition)",
    413: "body over the size limit (`body-too-large`)",
    422: "invalid request: FastAPI's validation body, or problem+json naming the limit "
    "(`json-too-deep`, `invalid-json`, `invalid-unicode`, `non-finite-number`, "
    "`value-too-long`, `idempotency-key-reused`)",
    423: "the host's room policy locked the room (`room-locked`)",
    503: "store unavailable or contended; retry (Retry-After); or no internal executor "
    "for an `@internal` job (`internal-job-not-configured`)",
    504: "the provider did not answer in time (`provider-timeout`; Retry-After)",
}


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema without `$defs`, to embed in a response declaration."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    result: dict[str, Any] = resolve(schema)
    return result


_PROBLEM = {PROBLEM_MEDIA_TYPE: {"schema": _inline(Problem)}}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for problem+json statuses (a router's domain refusals)."""
    return {status: {"description": _MEANING[status], "content": _PROBLEM} for status in statuses}


BOUNDARY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **problem_responses(413, 503),
    401: {
        "description": _MEANING[401],
        "content": {"application/json": {"schema": _inline(HTTPErrorBody)}},
    },
    422: {
        "description": _MEANING[422],
        "content": {"application/json": {"schema": _inline(ValidationErrorBody)}, **_PROBLEM},
    },
}


_NO_ROUTE_DESCRIPTION = "no route matches the path (Starlette's body)"
_NO_ROUTE_CONTENT = {"application/json": {"schema": _inline(HTTPErrorBody)}}
ALL_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


def _declared(path: str, endpoint: Callable[..., Any], kwargs: dict[str, Any]) -> dict[Any, Any]:
    """The responses a route declares: the boundary's, its router's, and the two that
    follow from its shape (see the module docstring)."""
    responses: dict[Any, Any] = {**BOUNDARY_RESPONSES, **(kwargs.get("responses") or {})}
    if "{" in path:
        own = responses.get(404, {"description": _NO_ROUTE_DESCRIPTION, "content": {}})
        responses[404] = {**own, "content": {**own["content"], **_NO_ROUTE_CONTENT}}
    methods = {method.upper() for method in kwargs.get("methods") or ()}
    if methods == {"PUT"} and kwargs.get("status_code") == 201:
        model = inspect.signature(endpoint).return_annotation
        responses[200] = {"description": "already existed: updated", "model": model}
    return responses


def problem_response(error: Exception) -> JSONResponse:
    body = problem_for(error)
    if body["status"] >= 500:  # every 5xx says why in the host log (nothing was committed)
        logger.warning("answered %s %s: %r", body["status"], body["type"], error)
    headers = {"Retry-After": "1"} if body["status"] == 503 else None
    return JSONResponse(
        body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


class ProblemRoute(APIRoute):
    """A route behind the boundary of its router (`bounded_route`); alone, the defaults."""

    boundary: ClassVar[RestBoundary] = RestBoundary()

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        endpoint = self.boundary.bind(endpoint)
        kwargs["responses"] = _declared(path, endpoint, kwargs)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        boundary, reads_body = self.boundary, self.body_field is not None

        async def handle(request: Request) -> Response:
            try:
                return await handler(await boundary.admit(request, reads_body=reads_body))
            except RequestValidationError as error:
                refusal = too_long(error)
                if refusal is None:
                    raise
                return problem_response(refusal)
            except (InputRefused, DomainError, StoreError) as error:
                return problem_response(error)

        return handle


def bounded_route(boundary: RestBoundary) -> type[ProblemRoute]:
    """The route class of a router whose limits and categories are `boundary`'s."""

    class BoundedRoute(ProblemRoute):
        pass

    BoundedRoute.boundary = boundary
    return BoundedRoute


def include_with_allow(router: APIRouter, parts: Sequence[APIRouter]) -> None:
    """Include `parts` in `router` so that every method a path does not serve answers
    405 with the full `Allow` list.

    Starlette's own 405 lists only the methods of the first route of a path (`POST
    /workers` would answer `Allow: GET`), and a literal path falls through to a template
    that matches it (`PATCH /tasks/claim` would reach `PATCH /tasks/{task_id}`). So the
    405 routes of literal paths come before `parts`, those of templates after them,
    where they can never shadow a route that serves the method.
    """
    served: dict[str, set[str]] = {}
    for part in parts:
        for route in part.routes:
            if isinstance(route, APIRoute):
                served.setdefault(route.path, set()).update(route.methods or ())
    literal = {path: methods for path, methods in served.items() if "{" not in path}
    _add_not_allowed(router, literal)
    for part in parts:
        router.include_router(part)
    _add_not_allowed(router, {p: m for p, m in served.items() if p not in literal})


def _add_not_allowed(router: APIRouter, served: dict[str, set[str]]) -> None:
    for path, methods in served.items():
        others = sorted(ALL_METHODS - methods)
        allow = _not_allowed(", ".join(sorted(methods)))
        router.add_route(router.prefix + path, allow, methods=others, include_in_schema=False)


def _not_allowed(allow: str) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def not_allowed(request: Request) -> Response:
        body = {"detail": "Method Not Allowed"}
        return JSONResponse(body, status_code=405, headers={"Allow": allow})

    return not_allowed
