"""Idempotency-Key on REST writes (after the IETF Idempotency-Key header draft).

A key names one request of one user. The id of what the request creates derives from
(user, key) (uuid5), so a resend, on any host, reaches the same entity, and the
request's digest travels on the command so the core can tell a resend of the same
request (answered with what the first one created) from a reuse of the key for
another request (422 `idempotency-key-reused`). Keys of submits and registrations
are kept for as long as the task or worker they created (the log keeps them); a
worker remembers the keys of its last 16 claims.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Any

from fastapi import Header

from .models import ID_NAMESPACE

REPLAYED_HEADER = "Idempotent-Replayed"

# The router's boundary (rest/boundary.py) swaps in the configured maximum length.
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        description="Makes the write safe to resend: the same key answers with what the "
        "first request created (header `Idempotent-Replayed: true`); the same key with "
        "another request is refused (422 idempotency-key-reused).",
    ),
]


def request_digest(kind: str, **parts: Any) -> str:
    """A stable digest of a request's meaning: its kind and its canonical JSON parts."""
    canonical = json.dumps([kind, parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def idempotent_id(user: str, key: str) -> str:
    """The id of the worker a keyed registration creates (and every resend names again)."""
    return _keyed_id(f"{user}\x1f{key}")


def keyed_task_id(user: str, key: str) -> str:
    """The id of the task a keyed submit creates (and every resend names again)."""
    return _keyed_id(f"task\x1f{user}\x1f{key}")


def keyed_provider_id(user: str, key: str) -> str:
    """The provider id a keyed provider registration gives a new provider (a resend
    finds the provider it made)."""
    return _keyed_id(f"provider\x1f{user}\x1f{key}")


def _keyed_id(name: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, name))
