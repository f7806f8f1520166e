"""Payloads, per-connection session and acknowledgements of the Socket.IO handlers.

Acks are `{"ok": true}` or `{"error": problem}` with the same problem body as the REST
adapter (`type`, `title`, `status`, `detail`); malformed payloads are 422
`invalid-payload`. Clients that do not ask for an ack (zndraw-joblib 0.1.7) get none.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from workerledger.core import Actor, DomainError

from .ports import StoreError
from .problems import problem, problem_for

logger = logging.getLogger(__name__)
Ack = dict[str, Any]


class JobRoomPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    job_name: str = Field(min_length=1)
    worker_id: str = Field(min_length=1)


class WatchPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    room_id: str


@dataclass
class WorkerSession:
    """What a connection's Socket.IO session holds: who it is, whom it speaks for."""

    actor: Actor
    worker_ids: set[str] = field(default_factory=set)


async def answer(work: Coroutine[Any, Any, Ack]) -> Ack:
    """Run a handler body; turn every failure into an error ack (never raise)."""
    try:
        return await work
    except ValidationError as error:
        detail = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in error.errors()
        )
        return {"error": problem("invalid-payload", 422, detail or "malformed payload")}
    except (DomainError, StoreError) as error:
        return {"error": problem_for(error)}
    except Exception as error:
        logger.exception("Socket.IO handler failed")
        return {"error": problem_for(error)}
