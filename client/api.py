"""The REST side of the zndraw-joblib protocol (`/v1/joblib`), one method per route.

Every method either returns the decoded answer or raises: `ServerUnavailableError` for
transport failures and 5xx (retryable), a `ServerError` subclass for 4xx. Submit and
claim carry an `Idempotency-Key` chosen by the caller once per logical call, so that a
retry after a lost answer returns the first outcome instead of making a second one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx

from .errors import ServerUnavailableError, server_error
from .models import TaskInfo

PREFIX = "/v1/joblib"
REPLAYED = "Idempotent-Replayed"
# Raised before the request left this process: the server cannot have handled it.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def new_idempotency_key() -> str:
    """A fresh key for one logical write; every retry of that write re-sends it."""
    return f"wl-{uuid.uuid4()}"


@dataclass(frozen=True)
class Answer:
    """A decoded answer and whether the server replayed it for a repeated key."""

    body: Any
    replayed: bool


@dataclass(frozen=True)
class ClaimAnswer:
    task: TaskInfo | None
    replayed: bool


@runtime_checkable
class ApiManager(Protocol):
    """Supplies an httpx client, the server's base URL and the request headers
    (the shape of zndraw's `ApiManager`)."""

    http: httpx.Client

    @property
    def base_url(self) -> str: ...

    def get_headers(self) -> dict[str, str]: ...


class TokenApi:
    """The default `ApiManager`: a base URL and a bearer token.

    `transport` replaces httpx's own (for proxies, custom TLS, or tests that wrap the
    real transport to lose answers); None uses httpx's default.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self.http = httpx.Client(timeout=timeout, transport=transport)

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def token(self) -> str:
        return self._token

    def get_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def close(self) -> None:
        self.http.close()


def bearer_token(api: ApiManager) -> str | None:
    """The bearer token in the API's headers (used to authenticate Socket.IO)."""
    value = api.get_headers().get("Authorization", "")
    return value[7:] if value.lower().startswith("bearer ") else None


class Rest:
    """Typed calls to the routes the worker client needs."""

    def __init__(self, api: ApiManager, timeout: float = 10.0) -> None:
        self.api = api
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        return self.send(method, path, json=json, headers=headers, timeout=timeout).body

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        content: bytes | None = None,
    ) -> Answer:
        """One request: a JSON body (`json`) or a raw one (`content`)."""
        url = f"{self.api.base_url}{PREFIX}{path}"
        all_headers = {**self.api.get_headers(), **(headers or {})}
        try:
            response = self.api.http.request(
                method,
                url,
                json=json,
                content=content,
                headers=all_headers,
                timeout=timeout or self.timeout,
            )
        except httpx.HTTPError as error:
            raise ServerUnavailableError(
                f"{method} {path}: {error!r}", ambiguous=not isinstance(error, NOT_SENT)
            ) from error
        if response.status_code >= 500:
            raise ServerUnavailableError(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise server_error(response.status_code, _body(response))
        replayed = response.headers.get(REPLAYED, "").strip().lower() == "true"
        return Answer(_body(response) if response.content else None, replayed)

    def register_job(
        self,
        room_id: str,
        body: dict[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        result: dict[str, Any] = self.request(
            "PUT", f"/rooms/{room_id}/jobs", json=body, headers=headers
        )
        return result

    def register_provider(
        self, room_id: str, body: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        answer = self.request("PUT", f"/rooms/{room_id}/providers", json=body, headers=headers)
        return answer if isinstance(answer, dict) else {}

    def post_provider_result(
        self, provider_id: str, request_hash: str, body: bytes, *, content_type: str
    ) -> None:
        headers = {"X-Request-Hash": request_hash, "Content-Type": content_type}
        self.send("POST", f"/providers/{provider_id}/results", content=body, headers=headers)

    def delete_provider(self, provider_id: str, *, timeout: float | None = None) -> None:
        self.request("DELETE", f"/providers/{provider_id}", timeout=timeout)

    def heartbeat(self, worker_id: str) -> None:
        self.request("PATCH", f"/workers/{worker_id}")

    def delete_worker(self, worker_id: str, *, timeout: float) -> None:
        self.request("DELETE", f"/workers/{worker_id}", timeout=timeout)

    def claim(self, worker_id: str, *, idempotency_key: str | None = None) -> ClaimAnswer:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        answer = self.send("POST", "/tasks/claim", json={"worker_id": worker_id}, headers=headers)
        task = answer.body.get("task") if isinstance(answer.body, dict) else None
        return ClaimAnswer(TaskInfo.model_validate(task) if task else None, answer.replayed)

    def update_task(
        self,
        task_id: str,
        status: str,
        *,
        error: str | None = None,
        worker_id: str | None = None,
        attempt: int | None = None,
    ) -> TaskInfo:
        body: dict[str, Any] = {"status": status}
        if error is not None:
            body["error"] = error
        if worker_id is not None:
            body["worker_id"] = worker_id
        if attempt is not None:
            body["attempt"] = attempt
        return TaskInfo.model_validate(self.request("PATCH", f"/tasks/{task_id}", json=body))

    def get_task(self, task_id: str, *, wait_seconds: int = 0) -> TaskInfo:
        headers = {"Prefer": f"wait={wait_seconds}"} if wait_seconds > 0 else None
        timeout = self.timeout + wait_seconds if wait_seconds > 0 else None
        answer = self.request("GET", f"/tasks/{task_id}", headers=headers, timeout=timeout)
        return TaskInfo.model_validate(answer)

    def submit(
        self,
        room_id: str,
        job_name: str,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> TaskInfo:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        answer = self.request(
            "POST", f"/rooms/{room_id}/tasks/{job_name}", json={"payload": payload}, headers=headers
        )
        return TaskInfo.model_validate(answer)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
