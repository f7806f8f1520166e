"""One INFO line per lifecycle transition, from committed decisions (a Ledger observer).

Logger `workerledger.lifecycle`. Each line names the ids to grep for, and carries
them as record attributes too (`event`, `worker_id`, `task_id`, ...), which the JSON
format (`log_format.JsonFormatter`) writes as fields. Logged: a worker registered,
connected (a new Socket.IO connection speaks for it), disconnected (reason, grace
deadline), resumed, lost (reason), left or deleted (by whom), each with the tasks its
end released; each task requeued or failed by a worker's end or by its claim lease;
a stale report refused; a provider registered or removed. Task submits, claims and
reports are not lifecycle transitions and are not logged.
"""

from __future__ import annotations

import logging
from typing import Any

from workerledger.core import (
    ConnectionAttached,
    Decision,
    Event,
    ProviderRegistered,
    ProviderRemoved,
    TaskReportRejected,
    WorkerDisconnected,
    WorkerLost,
    WorkerRegistered,
    WorkerResumed,
)

from .worker_ends import Release, WorkerEnd, ends_and_releases

LOGGER_NAME = "workerledger.lifecycle"
_LOGGED = (
    WorkerRegistered,
    ConnectionAttached,
    WorkerDisconnected,
    WorkerResumed,
    TaskReportRejected,
    ProviderRegistered,
    ProviderRemoved,
)  # the events with a line of their own (`_event`)


class LifecycleLog:
    """Writes the lifecycle lines of each committed decision to `logger`."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)

    def observe(self, decision: Decision) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        for event in decision.events:
            if isinstance(event, _LOGGED):
                self._event(event)
        ends, released = ends_and_releases(decision)
        for end in ends:
            self._end(end)
        for release in released:
            self._release(release)

    def _info(self, message: str, *args: object, **fields: Any) -> None:
        self.logger.info(message, *args, extra=fields)

    def _event(self, event: Event) -> None:
        if isinstance(event, WorkerRegistered):
            self._info(
                "worker %s registered (user %s)", event.worker_id, event.user,
                event="worker_registered", worker_id=event.worker_id, user=event.user,
            )  # fmt: skip
        elif isinstance(event, ConnectionAttached):
            replacing = f", replacing sid {event.previous_sid}" if event.previous_sid else ""
            self._info(
                "worker %s connected (sid %s%s)", event.worker_id, event.sid, replacing,
                event="worker_connected", worker_id=event.worker_id, sid=event.sid,
                previous_sid=event.previous_sid,
            )  # fmt: skip
        elif isinstance(event, WorkerDisconnected):
            deadline = event.grace_deadline.isoformat()
            grace = f"grace until {deadline}" if event.grace_deadline > event.at else "no grace"
            self._info(
                "worker %s disconnected (%s; sid %s); %s",
                event.worker_id, event.reason, event.sid, grace,
                event="worker_disconnected", worker_id=event.worker_id, sid=event.sid,
                reason=event.reason, grace_deadline=deadline,
            )  # fmt: skip
        elif isinstance(event, WorkerResumed):
            self._info(
                "worker %s resumed (sid %s)", event.worker_id, event.sid,
                event="worker_resumed", worker_id=event.worker_id, sid=event.sid,
            )  # fmt: skip
        elif isinstance(event, TaskReportRejected):
            self._info(
                "stale report refused: task %s %s by worker %s attempt %s (task at attempt "
                "%d; user %s)",
                event.task_id, event.requested.value, event.worker_id, event.attempt,
                event.current_attempt, event.by,
                event="stale_report_refused", task_id=event.task_id, worker_id=event.worker_id,
                attempt=event.attempt, current_attempt=event.current_attempt,
                requested=event.requested.value, user=event.by,
            )  # fmt: skip
        elif isinstance(event, ProviderRegistered):
            self._info(
                "provider %s registered (id %s, worker %s)",
                event.provider_name, event.provider_id, event.worker_id,
                event="provider_registered", provider=event.provider_name,
                provider_id=event.provider_id, worker_id=event.worker_id,
            )  # fmt: skip
        elif isinstance(event, ProviderRemoved):
            self._info(
                "provider %s removed (%s; id %s, worker %s)",
                event.provider_name, event.reason, event.provider_id, event.worker_id,
                event="provider_removed", provider=event.provider_name,
                provider_id=event.provider_id, worker_id=event.worker_id, reason=event.reason,
            )  # fmt: skip

    def _end(self, end: WorkerEnd) -> None:
        event = end.event
        kind = event.type.removeprefix("Worker").lower()  # lost, left, deleted
        why = event.reason if isinstance(event, WorkerLost) else f"by {event.by}"
        self._info(
            "worker %s %s (%s); released: requeued [%s], failed [%s]",
            end.worker_id, kind, why, ", ".join(end.requeued), ", ".join(end.failed),
            event=f"worker_{kind}", worker_id=end.worker_id, cause=end.cause, reason=why,
            requeued=list(end.requeued), failed=list(end.failed),
        )  # fmt: skip

    def _release(self, release: Release) -> None:
        if release.cause == "claim_timeout":
            why = f"claim lease of worker {release.worker_id} expired"
        else:
            why = f"worker {release.worker_id} ended: {release.cause}"
        self._info(
            "task %s %s (%s; attempt %d)", release.task_id, release.outcome, why, release.attempt,
            event=f"task_{release.outcome}", task_id=release.task_id,
            worker_id=release.worker_id, cause=release.cause, attempt=release.attempt,
            reason=release.reason,
        )  # fmt: skip
