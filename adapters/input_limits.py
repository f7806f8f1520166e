"""The boundary rule: what the host accepts, it can store, read back, fold and serve forever.

REST bodies and Socket.IO payloads pass these checks before anything is decided, so a
refusal changes nothing. JSON is parsed strictly (`parse_json`): valid UTF-8 only, no
`NaN`/`Infinity` and no number that overflows a float (`1e400`); then one iterative walk
(`check_value`, also run on the payloads python-socketio decoded) refuses nesting deeper
than `max_json_depth` and strings with lone surrogates, which no UTF-8 store or encoder
can write. The depth limit stays far below the recursion limits of every parser and
serialiser a value passes through later (json, pydantic, the read-model tables).

Each refusal is an `InputRefused` naming the limit by a stable code; `problems.py` turns
it into problem+json (REST) or an error ack (Socket.IO).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class InputLimits:
    """Sizes the host accepts; every one is a `WORKERLEDGER_*` setting with this default."""

    max_body_bytes: int = MIB  # REST body and Socket.IO message
    max_json_depth: int = 64  # nested objects/arrays of a whole body or event payload
    max_room_id_length: int = 128
    max_job_name_length: int = 128  # a job's `name`; full names are room:category:name
    max_category_length: int = 64
    max_key_length: int = 255  # Idempotency-Key and other client-chosen identifiers
    max_error_length: int = 64 * 1024  # the `error` text of a task report

    @property
    def max_full_job_name_length(self) -> int:
        """`room:category:name` built from the three limits above."""
        return self.max_room_id_length + self.max_category_length + self.max_job_name_length + 2


DEFAULT_LIMITS = InputLimits()


class InputRefused(Exception):
    """A request or event refused at the boundary, before any decision."""

    def __init__(self, code: str, status: int, detail: str, limit: int | None = None) -> None:
        super().__init__(detail)
        self.code, self.status, self.detail, self.limit = code, status, detail, limit


def body_too_large(limit: int) -> InputRefused:
    return InputRefused("body-too-large", 413, f"request body exceeds {limit} bytes", limit)


def check_length(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        detail = f"{field}: {len(value)} characters, at most {limit} allowed"
        raise InputRefused("value-too-long", 422, detail, limit)


def _refuse_constant(name: str) -> Any:
    raise InputRefused("non-finite-number", 422, f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputRefused("non-finite-number", 422, f"number {text[:40]} overflows a float")
    return value


def parse_json(body: bytes, limits: InputLimits) -> Any:
    """Parse a request body strictly and check it (`check_value`); InputRefused otherwise."""
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError as error:
        raise InputRefused("invalid-unicode", 422, f"body is not valid UTF-8: {error}") from None
    except RecursionError:
        raise _too_deep(limits.max_json_depth) from None
    except ValueError as error:  # JSONDecodeError, or an integer of more than 4300 digits
        raise InputRefused("invalid-json", 422, f"body is not valid JSON: {error}") from None
    check_value(value, limits)
    return value


def check_value(value: Any, limits: InputLimits) -> None:
    """Refuse nesting beyond `max_json_depth`, lone surrogates and non-finite floats.

    Iterative, so a hostile value cannot exhaust the stack here either.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InputRefused("non-finite-number", 422, f"{item} is not a JSON number")
        elif isinstance(item, dict | list | tuple):
            if depth + 1 > limits.max_json_depth:
                raise _too_deep(limits.max_json_depth)
            if isinstance(item, dict):
                for key, member in item.items():
                    if isinstance(key, str):
                        _check_text(key)
                    stack.append((member, depth + 1))
            else:
                stack.extend((member, depth + 1) for member in item)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputRefused(
            "invalid-unicode", 422, "a string holds a lone surrogate (not valid Unicode)"
        ) from None


def _too_deep(limit: int) -> InputRefused:
    return InputRefused("json-too-deep", 422, f"JSON nested deeper than {limit} levels", limit)
