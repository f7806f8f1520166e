"""Prometheus metrics of one host process, from its committed decisions and its view.

Each `LedgerMetrics` owns a `CollectorRegistry` (never the global default one), so two
runtimes in one process keep separate figures. Two kinds of figure:

- counters and histograms move when *this process* commits a decision (a decision
  observer): summed over the hosts of a deployment they count the whole system;
- gauges of the view (workers by state, tasks by status, live providers) are read
  from the host's projection at scrape time, which follows the shared log: every host
  reports the same numbers (take `max`, not `sum`, over hosts). The long-poll gauges
  are this process's own.

`timed(store)` wraps the EventStore the `LedgerService` appends through, to time
appends and count the conflicts (another writer moved a stream first).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from workerledger.core import (
    Decision,
    ProviderState,
    TaskClaimed,
    TaskReportRejected,
    TaskState,
    TaskStatus,
    WorkerDisconnected,
    WorkerResumed,
    WorkerState,
    WorkerStatus,
)

from ..ports import EventStore
from ..projection import Projection
from .timed_store import timed_store
from .worker_ends import CAUSES, OUTCOMES, ends_and_releases

CLAIM_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
)  # fmt: skip
APPEND_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class ViewCounts(NamedTuple):
    """The view's entities by state, at one moment."""

    workers: Mapping[str, int]  # WorkerStatus value -> count
    tasks: Mapping[str, int]  # TaskStatus value -> count
    providers_live: int


class ViewEntities(NamedTuple):
    """The view's entities at one moment (frozen values, safe to read on any thread)."""

    workers: Sequence[WorkerState]
    tasks: Sequence[TaskState]
    providers: Sequence[ProviderState]

    @classmethod
    def of(cls, view: Projection) -> ViewEntities:
        """Copy the view's entity lists (run on the ledger's thread: under a millisecond
        for 100,000 tasks, so counting them can run elsewhere)."""
        return cls(
            tuple(view.workers.values()),
            tuple(view.tasks.values()),
            tuple(view.providers.values()),
        )

    def counts(self) -> ViewCounts:
        """Workers by state, tasks by status and live providers (one pass each)."""
        workers = Tally(worker.status.value for worker in self.workers)
        tasks = Tally(task.status.value for task in self.tasks)
        providers = sum(1 for provider in self.providers if provider.is_live)
        return ViewCounts(workers, tasks, providers)


class LedgerMetrics:
    """The metrics of one host process, in their own registry (`registry`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.workers = Gauge(
            "workerledger_workers", "Workers in the log by state.", ["state"], registry=r
        )
        self.tasks = Gauge(
            "workerledger_tasks", "Tasks in the log by status.", ["status"], registry=r
        )
        self.providers_live = Gauge(
            "workerledger_providers_live", "Providers registered and not removed.", registry=r
        )
        self.claim_latency = Histogram(
            "workerledger_claim_latency_seconds",
            "Time from a task's submit to its first claim (event timestamps), per claim "
            "this process committed.",
            buckets=CLAIM_LATENCY_BUCKETS,
            registry=r,
        )
        self.worker_ends = Counter(
            "workerledger_worker_ends_total",
            "Workers ended by this process's decisions, by cause (disconnect: lost when "
            "the socket dropped with no grace window; lost: grace expired or heartbeat "
            "timeout).",
            ["cause"],
            registry=r,
        )
        self.releases = Counter(
            "workerledger_task_releases_total",
            "Tasks taken from their worker by this process's decisions, by cause (the "
            "worker's end, or claim_timeout: the claim lease ran out) and outcome.",
            ["cause", "outcome"],
            registry=r,
        )
        self.disconnects = Counter(
            "workerledger_worker_disconnects_total",
            "Worker connections that dropped (WorkerDisconnected), by Socket.IO's reason.",
            ["reason"],
            registry=r,
        )
        self.resumes = Counter(
            "workerledger_worker_resumes_total",
            "Disconnected workers back within their grace window (WorkerResumed).",
            registry=r,
        )
        self.stale_reports = Counter(
            "workerledger_stale_reports_total",
            "Task reports refused as stale and recorded (TaskReportRejected).",
            registry=r,
        )
        self.append_seconds = Histogram(
            "workerledger_store_append_seconds",
            "Duration of event-store appends (one transaction each), any outcome.",
            buckets=APPEND_BUCKETS,
            registry=r,
        )
        self.append_events = Histogram(
            "workerledger_store_append_events",
            "Events per committed append (a group commit carries several commands' events).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.append_conflicts = Counter(
            "workerledger_store_append_conflicts_total",
            "Appends refused because another writer moved a stream first (decided again).",
            registry=r,
        )
        self.append_errors = Counter(
            "workerledger_store_append_errors_total",
            "Appends that failed with a store error (outcome resolved by reading back).",
            registry=r,
        )
        self.long_poll_tasks = Gauge(
            "workerledger_long_poll_tasks_watched",
            "Tasks that at least one long-poll (GET /tasks/{id}, Prefer: wait) of this "
            "process waits on.",
            registry=r,
        )
        self.provider_reads_waiting = Gauge(
            "workerledger_provider_reads_waiting",
            "Provider reads of this process parked waiting for the worker's result.",
            registry=r,
        )
        # every series from the start, at 0; the labelled children kept for `observe`
        self._ends_by_cause: dict[str, Counter] = {}
        self._releases_by_cause: dict[tuple[str, str], Counter] = {}
        for cause in CAUSES:
            if cause == "claim_timeout":
                self._releases_by_cause[cause, "requeued"] = self.releases.labels(
                    cause=cause, outcome="requeued"
                )
                continue
            self._ends_by_cause[cause] = self.worker_ends.labels(cause=cause)
            for outcome in OUTCOMES:
                self._releases_by_cause[cause, outcome] = self.releases.labels(
                    cause=cause, outcome=outcome
                )

    # --- from committed decisions (a Ledger observer) ----------------------------------

    def observe(self, decision: Decision) -> None:
        for event in decision.events:
            if isinstance(event, TaskClaimed):
                if event.attempt == 1:
                    task = decision.state.tasks.get(event.task_id)
                    if task is not None:
                        waited = (event.at - task.created_at).total_seconds()
                        self.claim_latency.observe(max(waited, 0.0))
            elif isinstance(event, WorkerDisconnected):
                self.disconnects.labels(reason=event.reason).inc()
            elif isinstance(event, WorkerResumed):
                self.resumes.inc()
            elif isinstance(event, TaskReportRejected):
                self.stale_reports.inc()
        ends, released = ends_and_releases(decision)
        for end in ends:
            child = self._ends_by_cause.get(end.cause)
            if child is None:
                child = self.worker_ends.labels(cause=end.cause)
            child.inc()
        for release in released:
            child = self._releases_by_cause.get((release.cause, release.outcome))
            if child is None:
                child = self.releases.labels(cause=release.cause, outcome=release.outcome)
            child.inc()

    # --- the store ---------------------------------------------------------------------

    def timed(self, store: EventStore) -> EventStore:
        """`store`, timing every append and counting its conflicts and errors here."""
        return timed_store(
            store, self.append_seconds, self.append_conflicts, self.append_errors,
            self.append_events,
        )  # fmt: skip

    # --- at scrape time ----------------------------------------------------------------

    def set_view(self, counts: ViewCounts) -> None:
        """Set the view's gauges (every state and status, zero when none)."""
        for state in WorkerStatus:
            self.workers.labels(state=state.value).set(counts.workers.get(state.value, 0))
        for status in TaskStatus:
            self.tasks.labels(status=status.value).set(counts.tasks.get(status.value, 0))
        self.providers_live.set(counts.providers_live)

    def set_waiting(self, tasks_watched: int, provider_reads: int) -> None:
        self.long_poll_tasks.set(tasks_watched)
        self.provider_reads_waiting.set(provider_reads)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (`CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)
