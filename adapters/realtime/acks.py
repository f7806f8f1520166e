"""Payloads, per-connection session and acknowledgements of the Socket.IO handlers.

Acks are `{"ok": true}` or `{"error": problem}` with the same problem body as the REST
adapter (`type`, `title`, `status`, `detail`); malformed payloads are 422
`invalid-payload` (a field the event does not have is refused and named in the
detail: zndraw-joblib 0.1.7 sends only the fields modelled here), payloads over a
limit name it as REST does (input_limits.py), and events beyond a connection's rate
are 429 `rate-limited`. Clients that do not ask for an ack (zndraw-joblib 0.1.7) get
none.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from workerledger.core import Actor, DomainError

from ..input_limits import InputRefused
from ..ports import StoreError
from ..problems import problem, problem_for

logger = logging.getLogger(__name__)
Ack = dict[str, Any]
EVENTS_PER_SECOND = 20.0  # a worker sends a few events per job; a flood is refused
EVENT_BURST = 40  # a worker joining many job rooms right after connecting


class StrictPayload(BaseModel):
    """An event payload: a field it does not declare is refused (`invalid-payload`)."""

    model_config = ConfigDict(extra="forbid")


class JobRoomPayload(StrictPayload):
    job_name: str = Field(min_length=1)
    worker_id: str = Field(min_length=1)


class WatchPayload(StrictPayload):
    room_id: str


@dataclass
class TokenBucket:
    """Events a connection may send: `burst` at once, refilled at `rate` per second."""

    rate: float
    burst: int
    tokens: float  # starts full: `burst`
    updated: float  # loop time of the last refill

    def take(self, now: float) -> bool:
        """Spend one token if there is one (refilled for the time since the last call)."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def rate_limited(bucket: TokenBucket) -> InputRefused:
    detail = f"more than {bucket.rate:g} events/s (burst {bucket.burst}) on this connection"
    return InputRefused("rate-limited", 429, detail, bucket.burst)


@dataclass
class WorkerSession:
    """What a connection's Socket.IO session holds: who it is, whom it speaks for, and
    how many events it may still send."""

    actor: Actor
    bucket: TokenBucket
    worker_ids: set[str] = field(default_factory=set)


async def answer(work: Coroutine[Any, Any, Ack]) -> Ack:
    """Run a handler body; turn every failure into an error ack (never raise)."""
    try:
        return await work
    except ValidationError as error:
        detail = "; ".join(_issue(e) for e in error.errors())
        return {"error": problem("invalid-payload", 422, detail or "malformed payload")}
    except (InputRefused, DomainError, StoreError) as error:
        return {"error": problem_for(error)}
    except Exception as error:
        logger.exception("Socket.IO handler failed")
        return {"error": problem_for(error)}


def _issue(error: Any) -> str:
    where = ".".join(map(str, error["loc"])) or "payload"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field (not part of this event)"
    return f"{where}: {error['msg']}"
