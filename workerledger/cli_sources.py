"""Where the state commands read from: a running host's REST API or the database.

`HostApi` calls the host's 0.1.7 listing routes with a bearer token; a host that
cannot be reached, a refused token or a refused request is a ConfigError naming the
flag to fix. `read_view` reads the state from the database the way a host starts
(the read-model tables, the log beyond them, the latest heartbeats) and writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx

from workerledger.adapters.ports import EventStore
from workerledger.adapters.projection import Projection
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.read_models import load_view

from .cli_errors import ConfigError

PREFIX = "/v1/joblib"
PAGE = 500  # the routes' largest page
TIMEOUT = 15.0
ENV_TOKEN = "WORKERLEDGER_TOKEN"


def read_view(store: EventStore) -> Projection:
    """The current state in `store`: read-model tables, then the log and heartbeats beyond."""
    service = LedgerService(store, view=load_view(store).view)
    service.catch_up()
    return service.view


def host_url(text: str) -> str:
    """The host's base URL from `--url` (a trailing `/` or `/v1/joblib` is dropped)."""
    url = text.strip().rstrip("/").removesuffix(PREFIX)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {text!r}: give the host's base URL, e.g. http://127.0.0.1:8000")
    return url


class HostApi:
    """GET requests to a host's REST API, failures as ConfigError."""

    def __init__(self, url: str, token: str | None) -> None:
        token = token or os.environ.get(ENV_TOKEN)
        if not token:
            raise ConfigError(
                f"--url needs a token: pass --token or set {ENV_TOKEN} (one of the host's "
                "WORKERLEDGER_AUTH_TOKENS, or the admin token `serve` printed)"
            )
        self.url = host_url(url)
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT
        )

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **params: Any) -> Any:
        """The JSON answer of GET `path` (under /v1/joblib unless it starts with `/`)."""
        target = path if path.startswith("/") else f"{PREFIX}/{path}"
        query = {k: v for k, v in params.items() if v is not None}
        try:
            response = self.http.get(target, params=query)
        except httpx.HTTPError as error:
            raise ConfigError(
                f"--url {self.url}: cannot reach the host ({error or type(error).__name__}): "
                "is `workerledger serve` running there?"
            ) from error
        if response.status_code == 401:
            raise ConfigError(
                f"--token / {ENV_TOKEN}: the host at {self.url} refused the token (401): give "
                "one of its WORKERLEDGER_AUTH_TOKENS, or the admin token `serve` printed"
            )
        if response.status_code != 200:
            raise ConfigError(f"GET {target} answered {response.status_code}: {_reason(response)}")
        return response.json()

    def healthy(self) -> bool:
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def pages(self, path: str, *, offset: int = 0, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated listing from `offset` on."""
        while True:
            page = self.get(path, limit=PAGE, offset=offset, **params)
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    def total(self, path: str, **params: Any) -> int:
        """How many items a paginated listing has (one request, no items)."""
        return int(self.get(path, limit=0, **params)["total"])


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
        if isinstance(detail, list):  # FastAPI's validation body
            return "; ".join(str(issue.get("msg")) for issue in detail if isinstance(issue, dict))
        return str(detail)
    return str(body)[:200]
