"""The REST side of the boundary rule (input_limits.py), applied by the route class.

`RestBoundary.admit` runs before FastAPI reads anything: a declared `Content-Length`
over the limit is refused at once, a body is read with a byte cap (chunked bodies
too), and a JSON body is parsed strictly and walked once; FastAPI then gets that parsed
value instead of parsing again. `RestBoundary.bind` gives each endpoint the limits of
its router as FastAPI constraints: path parameters `room_id` and `job_name`, the
`Idempotency-Key` header and the request models (`rest/models.request_models`), so the
OpenAPI document shows them; a value over a length limit is turned from FastAPI's 422
into problem+json `value-too-long` (`too_long`). An `at` timestamp must be a date-time
as documented, not a number pydantic would read as Unix seconds.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, get_args

from fastapi import Header, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from workerledger.core import DEFAULT_CATEGORIES

from ..input_limits import (
    DEFAULT_LIMITS,
    InputLimits,
    InputRefused,
    body_too_large,
    parse_json,
)
from .models import request_models

# core.model.is_valid_room_id as a pattern: `@global`, `@internal`, or no `@` and no
# `:`; a REST path segment cannot hold `/` either.
ROOM_ID_PATTERN = r"^(@global|@internal|[^@:/]+)$"
_UNPARSED = object()
M = TypeVar("M", bound=BaseModel)
_BOUND = "__workerledger_endpoint__"
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _date_time_text(value: Any) -> Any:
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("expected a date-time (RFC 3339), not a number")
    return value


class AdmittedRequest(Request):
    """A request whose body was read within the limit and, if JSON, parsed strictly
    (FastAPI's documented way to hand a route a custom `Request`)."""

    def __init__(self, request: Request, body: bytes, parsed: Any) -> None:
        super().__init__(request.scope, request.receive)
        self._admitted_body, self._admitted_json = body, parsed

    async def body(self) -> bytes:
        return self._admitted_body

    async def json(self) -> Any:
        if self._admitted_json is _UNPARSED:
            return await super().json()
        return self._admitted_json

    async def stream(self) -> AsyncGenerator[bytes, None]:
        yield self._admitted_body
        yield b""


@dataclass(frozen=True)
class RestBoundary:
    """One router's limits and category allowlist, as checks (`admit`) and as the
    constraints FastAPI validates and documents (`bind`)."""

    limits: InputLimits = DEFAULT_LIMITS
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    _annotations: dict[str, Any] = field(init=False, repr=False, compare=False)
    _models: dict[Any, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        limits = self.limits
        room = Path(
            min_length=1,
            max_length=limits.max_room_id_length,
            description="`@global`, `@internal`, or an id without `@`, `:` and `/`",
            json_schema_extra={"pattern": ROOM_ID_PATTERN},  # refused by the core (400)
        )
        job = Path(
            min_length=1,
            max_length=limits.max_full_job_name_length,
            description="the job's full name, `room:category:name`",
        )
        annotations = {"room_id": Annotated[str, room], "job_name": Annotated[str, job]}
        object.__setattr__(self, "_annotations", annotations)
        object.__setattr__(self, "_models", request_models(limits, self.categories))

    def request_model(self, model: type[M]) -> type[M]:
        """The request model FastAPI validates a `model` body with (this boundary's
        limits in its fields)."""
        bound: type[M] = self._models.get(model, model)
        return bound

    def bind(self, endpoint: Callable[..., Any]) -> Callable[..., Any]:
        """`endpoint` with this boundary's constraints in its signature (what FastAPI
        validates and documents); calling it calls the original."""
        original: Callable[..., Any] = getattr(endpoint, _BOUND, endpoint)
        signature = inspect.signature(original, eval_str=True)
        parameters = [
            parameter.replace(annotation=self._constraint(parameter))
            for parameter in signature.parameters.values()
        ]

        @functools.wraps(original)
        async def bounded(*args: Any, **kwargs: Any) -> Any:
            return await original(*args, **kwargs)

        bounded.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        setattr(bounded, _BOUND, original)
        return bounded

    def _constraint(self, parameter: inspect.Parameter) -> Any:
        annotation = parameter.annotation
        if isinstance(annotation, type) and annotation in self._models:
            return self._models[annotation]
        if parameter.name in self._annotations and annotation in (str, str | None):
            return self._annotations[parameter.name]
        if parameter.name == "idempotency_key":
            key = Header(min_length=1, max_length=self.limits.max_key_length,
                         description=_description(annotation))  # fmt: skip
            return Annotated[str | None, key]
        if parameter.name == "at":
            return Annotated[annotation, BeforeValidator(_date_time_text)]
        return annotation

    async def admit(self, request: Request, *, reads_body: bool) -> Request:
        """Refuse an oversized or malformed body before FastAPI reads it; InputRefused."""
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
            raise body_too_large(limit)
        if not reads_body:
            return request  # the server discards a body nobody reads
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit)
            chunks.append(chunk)
        body = b"".join(chunks)
        parsed: Any = _UNPARSED
        if body and _is_json(request.headers.get("content-type")):
            parsed = parse_json(body, self.limits)
        return AdmittedRequest(request, body, parsed)


def _description(annotation: Any) -> str | None:
    """The description of an `Annotated[..., Header(description=...)]`, if any."""
    infos = [arg for arg in get_args(annotation)[1:] if isinstance(arg, FieldInfo)]
    return infos[-1].description if infos else None


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def too_long(error: RequestValidationError) -> InputRefused | None:
    """FastAPI's refusal of a value over a length limit, as problem+json `value-too-long`."""
    issues = [issue for issue in error.errors() if issue.get("type") == "string_too_long"]
    if not issues:
        return None
    detail = "; ".join(f"{'.'.join(map(str, issue['loc']))}: {issue['msg']}" for issue in issues)
    limit = issues[0].get("ctx", {}).get("max_length")
    return InputRefused("value-too-long", 422, detail, limit if isinstance(limit, int) else None)
