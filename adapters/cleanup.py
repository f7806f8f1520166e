"""Ending a worker whose connection closed: the public `cleanup_worker` and grace expiry.

Every ending (Socket.IO disconnect, `DELETE /workers/{id}`, the sweeper) runs through
the ledger's one decision path, and the core releases each held task exactly once.
The core alone decides whether a disconnect waits for the worker (grace > 0) and
until when: this module reads both from the decision's events (`grace_deadline`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from workerledger.core import (
    WORKER_ENDS,
    Decision,
    DisconnectWorker,
    StaleSessionError,
    SweepWorker,
    WorkerDisconnected,
    WorkerNotFoundError,
)

from .auth import Clock, utc_now
from .ledger import Ledger

logger = logging.getLogger(__name__)


async def cleanup_worker(
    ledger: Ledger,
    worker_id: str,
    sid: str,
    *,
    reason: str = "transport close",
    grace_seconds: float = 0.0,
    now: datetime | None = None,
) -> Decision | None:
    """A worker's connection `sid` closed: run `DisconnectWorker` through the ledger.

    With `grace_seconds == 0` the worker is lost at once and its tasks are released
    per policy; otherwise it waits DISCONNECTED until the deadline (a sweep ends it).
    Returns None when `sid` no longer speaks for the worker or the worker already
    ended (compare-and-delete on `(worker_id, sid)`): a stale disconnect is a no-op.
    """
    command = DisconnectWorker(
        worker_id=worker_id,
        sid=sid,
        reason=reason,
        grace_seconds=grace_seconds,
        now=now or utc_now(),
    )
    try:
        return await ledger.execute(command)
    except (WorkerNotFoundError, StaleSessionError) as error:
        logger.debug("disconnect of %s on %s ignored: %s", worker_id, sid, error.detail)
        return None


def grace_deadline(decision: Decision, worker_id: str) -> datetime | None:
    """The deadline a disconnect decision recorded for `worker_id`, if the worker now
    waits for it; None when the decision did not disconnect it or also ended it."""
    deadline: datetime | None = None
    for event in decision.events:
        if isinstance(event, WorkerDisconnected) and event.worker_id == worker_id:
            deadline = event.grace_deadline
        elif isinstance(event, WORKER_ENDS) and event.worker_id == worker_id:
            return None
    return deadline


async def expire_grace(
    ledger: Ledger,
    worker_id: str,
    deadline: datetime,
    heartbeat_timeout_seconds: float,
    clock: Clock = utc_now,
) -> Decision | None:
    """At `deadline`, end the worker unless it resumed (then the sweep is a no-op).

    The deadline is in the log too, so if this process dies first, any host's sweeper
    ends the worker instead; racing both is harmless.
    """
    while (remaining := (deadline - clock()).total_seconds()) > 0:
        await asyncio.sleep(remaining)
    command = SweepWorker(
        worker_id=worker_id, heartbeat_timeout_seconds=heartbeat_timeout_seconds, now=clock()
    )
    try:
        return await ledger.execute(command)
    except Exception:
        logger.exception("grace expiry of worker %s failed", worker_id)
        return None
