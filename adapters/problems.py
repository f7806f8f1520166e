"""RFC 9457 problem details for domain errors, shared by REST and Socket.IO acks.

Types are `/v1/problems/<code>` with the core error's stable `code`; statuses follow
zndraw-joblib 0.1.7 where it defines the type, and 409 for the fencing and session
errors it lacks. Conflicts the store could not resolve are a retryable 503. Input
refused at the boundary (input_limits.py) names the limit in its type and carries the
configured value as the `limit` extension member.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from workerledger.core import DomainError

from .input_limits import InputRefused
from .ports import StoreError
from .service import ConflictRetriesExhaustedError

STATUS_BY_CODE: dict[str, int] = {
    "invalid-room-id": 400,
    "invalid-category": 400,
    "forbidden": 403,
    "job-not-found": 404,
    "worker-not-found": 404,
    "task-not-found": 404,
    "schema-conflict": 409,
    "invalid-task-transition": 409,
    "stale-attempt": 409,
    "task-not-pending": 409,
    "worker-not-online": 409,
    "worker-draining": 409,
    "job-not-linked": 409,
    "stale-session": 409,
    "not-in-room": 409,
    "duplicate-id": 409,
    "idempotency-key-reused": 422,
    "provider-not-found": 404,
    "provider-timeout": 504,
    "room-locked": 423,
    "internal-job-not-configured": 503,
}


def problem(code: str, status: int, detail: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"/v1/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    return body


def problem_for(error: Exception) -> dict[str, Any]:
    """The problem body of a domain, boundary or store error (anything else is a 500)."""
    if isinstance(error, InputRefused):
        body = problem(error.code, error.status, error.detail)
        return body if error.limit is None else body | {"limit": error.limit}
    if isinstance(error, DomainError):
        return problem(error.code, STATUS_BY_CODE.get(error.code, 400), error.detail)
    if isinstance(error, ConflictRetriesExhaustedError):
        return problem("service-conflict", 503, str(error))
    if isinstance(error, StoreError):
        return problem("store-unavailable", 503, str(error))
    return problem("internal-error", 500, "unexpected server error")
