"""Bearer-token authentication shared by the REST and Socket.IO adapters.

An `Authenticator` maps a bearer token to the core's `Actor` (or None when the token
is unknown). `StaticTokens` is the reference host's table; a host app plugs in its
own function (JWT, sessions, ...) with the same signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from workerledger.core import Actor

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The adapters' clock: always timezone-aware UTC."""
    return datetime.now(UTC)


class Authenticator(Protocol):
    def __call__(self, token: str) -> Actor | None: ...


class StaticTokens:
    """A fixed token table, e.g. from `WORKERLEDGER_AUTH_TOKENS`."""

    def __init__(self, tokens: Mapping[str, Actor]) -> None:
        self._tokens = dict(tokens)

    def __call__(self, token: str) -> Actor | None:
        return self._tokens.get(token)


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def socketio_token(environ: Mapping[str, Any], auth: object) -> str | None:
    """The token of a Socket.IO connect: `auth={"token": ...}` or an Authorization header."""
    if isinstance(auth, Mapping):
        token = auth.get("token")
        if isinstance(token, str) and token:
            return token
    header = environ.get("HTTP_AUTHORIZATION")
    return bearer_token(header if isinstance(header, str) else None)
