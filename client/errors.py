"""Errors raised by the worker client.

The server answers domain errors as problem+json with a type `/v1/problems/<code>`;
`ServerError.code` is that `<code>` (or `http-<status>` for other error bodies).
Transport failures (server unreachable, timeouts, 5xx) are `ServerUnavailableError`
and are the only errors the client retries; `ambiguous` says whether the server may
have handled the request anyway (its answer was lost), which decides whether a later
refusal of the retry has to be settled by reading the task back.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error raised by `workerledger.client`."""


class ServerUnavailableError(ClientError):
    """The server could not be reached or answered 5xx; worth retrying later.

    `ambiguous` is False only when the request certainly never reached the server
    (connection refused, connect timeout); a lost answer or a 5xx may follow a commit.
    """

    def __init__(self, message: str, *, ambiguous: bool = True) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous


class ServerError(ClientError):
    """The server refused a request with a 4xx answer."""

    def __init__(self, status: int, code: str, detail: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body


class WorkerGoneError(ServerError):
    """The server no longer knows this worker (404 worker-not-found)."""


class StaleAttemptError(ServerError):
    """A report on a claim that is no longer this worker's (409 stale-attempt)."""


class TaskCancelledError(ClientError):
    """Raised by `ClaimedTask.raise_if_cancelled()` once the task was cancelled."""


class NotRegisteredError(ClientError):
    """The manager has no worker yet: register a job first."""


def server_error(status: int, body: Any) -> ServerError:
    """Build the most specific `ServerError` for a 4xx answer."""
    code, detail = _code_and_detail(status, body)
    if code == "worker-not-found":
        return WorkerGoneError(status, code, detail, body)
    if code == "stale-attempt":
        return StaleAttemptError(status, code, detail, body)
    return ServerError(status, code, detail, body)


def _code_and_detail(status: int, body: Any) -> tuple[str, str]:
    if isinstance(body, dict):
        problem_type = body.get("type")
        if isinstance(problem_type, str) and problem_type:
            detail = body.get("detail") or body.get("title") or ""
            return problem_type.rsplit("/", 1)[-1], str(detail)
        if "detail" in body:
            return f"http-{status}", str(body["detail"])
    return f"http-{status}", "" if body is None else str(body)[:500]
