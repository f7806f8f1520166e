"""LedgerService: the one decision path. load -> decide -> append -> apply.

Every adapter (Socket.IO, REST, sweeper, CLI) runs commands through `execute`.
Within a process, commands are serialized by a lock; across processes and hosts,
the store's expected-version check makes racing writers collide, and the loser
catches up with the log and decides again (a bounded number of times). A decision
that is a no-op in the new state (a second sweeper seeing the worker already lost)
then appends nothing, which is what makes racing detectors record one transition.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence

from workerledger.core import (
    ClaimTask,
    Command,
    Decision,
    DomainError,
    Emission,
    Emit,
    Event,
    LedgerState,
    SweepWorker,
    handle,
)
from workerledger.core.decide_workers import live_worker, require_owner
from workerledger.core.errors import TaskNotPendingError

from .ports import ConcurrencyError, EventStore, StoredEvent, StoreError
from .projection import Projection


class ConflictRetriesExhaustedError(StoreError):
    """Other writers kept winning; the command was not applied."""


class LedgerService:
    def __init__(self, store: EventStore, *, max_attempts: int = 12, batch: int = 2000) -> None:
        self.store = store
        self.view = Projection()
        self.max_attempts = max_attempts
        self.batch = batch
        self.conflicts = 0  # appends that lost a race (for figures and tests)
        self._lock = threading.RLock()

    # --- reading the log --------------------------------------------------------------

    def catch_up(self, *, liveness: bool = True) -> int:
        """Apply events (and, with `liveness`, heartbeats) others stored since the last look.

        Only sweeps and queries read heartbeats, so commands skip that read.
        """
        with self._lock:
            applied = 0
            while True:
                batch = self.store.read(self.view.position, self.batch)
                for stored in batch:
                    self.view.apply(stored)
                applied += len(batch)
                if len(batch) < self.batch:
                    break
            if not liveness:
                return applied
            counter, beats = self.store.read_liveness(self.view.liveness_counter)
            for worker_id, at in beats.items():
                self.view.apply_heartbeat(worker_id, at)
            self.view.liveness_counter = counter
            return applied

    # --- deciding ---------------------------------------------------------------------

    def execute(self, command: Command) -> Decision:
        """Decide `command` on the current state and store its events.

        Raises the core's DomainError when the command is illegal (after storing the
        rejection events it carries), or ConflictRetriesExhaustedError.
        """
        with self._lock:
            for attempt in range(self.max_attempts):
                self.catch_up(liveness=isinstance(command, SweepWorker))
                try:
                    decision = handle(self.view.scope(command), command)
                except DomainError as error:
                    if error.record and not self._store(list(error.record)):
                        self._back_off(attempt)
                        continue
                    raise
                durable = [event for event in decision.events if event.durable]
                if not self._store(durable):
                    self._back_off(attempt)
                    continue
                self._store_liveness(decision.events)
                return decision.model_copy(update={"emissions": self._enrich(decision.emissions)})
            raise ConflictRetriesExhaustedError(
                f"{command.type} lost {self.max_attempts} races against other writers"
            )

    def claim_next(self, command: ClaimTask) -> Decision | None:
        """Claim the oldest pending task the worker can run; None if there is none.

        `command.task_id` is ignored: candidates come from the view, oldest first. An
        unknown or ended worker, or one of another user, is refused even when the
        queue is empty (WorkerNotFoundError, ForbiddenError).
        """
        with self._lock:
            self.catch_up(liveness=False)
            worker = self.view.workers.get(command.worker_id)
            claimant = LedgerState.model_construct(
                workers={worker.id: worker} if worker else {}, jobs={}, tasks={}
            )
            require_owner(command.actor, live_worker(claimant, command.worker_id))
            for task_id in self.view.claim_candidates(command.worker_id):
                try:
                    return self.execute(command.model_copy(update={"task_id": task_id}))
                except TaskNotPendingError:
                    continue
            return None

    def _store(self, events: Sequence[Event]) -> bool:
        if not events:
            return True
        expected = {event.stream: self.view.version(event.stream) for event in events}
        try:
            stored = self.store.append(events, expected)
        except ConcurrencyError:
            self.conflicts += 1
            return False
        self._adopt(stored)
        return True

    def _adopt(self, stored: list[StoredEvent]) -> None:
        contiguous = all(s.position == self.view.position + 1 + i for i, s in enumerate(stored))
        if contiguous:
            for record in stored:
                self.view.apply(record)
        else:
            self.catch_up()

    def _store_liveness(self, events: Sequence[Event]) -> None:
        for event in events:
            if not event.durable and event.stream.startswith("worker:"):
                worker_id = event.stream.removeprefix("worker:")
                self.store.record_liveness(worker_id, event.at)
                self.view.apply_heartbeat(worker_id, event.at)

    def _enrich(self, emissions: Sequence[Emission]) -> tuple[Emission, ...]:
        """Fill in `queue_position` of pending task status events from the view."""
        out: list[Emission] = []
        for emission in emissions:
            if (
                isinstance(emission, Emit)
                and emission.event == "task_status_event"
                and emission.data.get("status") == "pending"
            ):
                position = self.view.queue_position(str(emission.data["id"]))
                emission = emission.model_copy(
                    update={"data": {**emission.data, "queue_position": position}}
                )
            out.append(emission)
        return tuple(out)

    @staticmethod
    def _back_off(attempt: int) -> None:
        time.sleep(min(0.001 * 2**attempt, 0.05) * random.uniform(0.5, 1.5))

    def close(self) -> None:
        self.store.close()
