"""LedgerService: the one decision path. load -> decide -> append -> apply.

Every adapter (Socket.IO, REST, sweeper, CLI) runs commands through `run_group`
(`execute` and `claim_next` are groups of one). Within a process, commands are
serialized by a lock, and the commands that queued up while a commit was in flight
are decided one after another and appended in one transaction (group commit,
commit_group.py); each is answered only after that transaction committed. Across
processes and hosts, the store's expected-version check makes racing writers
collide, and the loser catches up with the log and decides its whole group again
(a bounded number of times). A decision
that is a no-op in the new state (a second sweeper seeing the worker already lost)
then appends nothing, which is what makes racing detectors record one transition.

A committed command is a success: nothing after the append turns it into an error.
Work after the commit (adopting the stored events into the view, recording liveness,
filling in queue positions) is best-effort; what it misses the next catch-up reads.
An append whose outcome is unknown (the connection died around COMMIT) is resolved
by reading the touched streams back before answering.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar, cast

from workerledger.core import (
    ClaimTask,
    Command,
    Decision,
    DomainError,
    Emission,
    Emit,
    Event,
    LedgerState,
    Stream,
    StreamKind,
    SweepWorker,
    TaskCancelled,
    TaskNotFoundError,
    TaskNotPendingError,
    WorkerDrainingError,
    WorkerNotOnlineError,
    handle,
    invalidate,
)

from .commit_group import GROUP_LIMIT, Claimed, GroupPlan, Member, Pending
from .ports import ConcurrencyError, EventStore, StoredEvent, StoreError
from .projection import Projection
from .store.recorder import CorruptEventError, CurrentStore, ViewBehindError

logger = logging.getLogger(__name__)

READ_BACK_ATTEMPTS = 5
T = TypeVar("T")


class ConflictRetriesExhaustedError(StoreError):
    """Other writers kept winning; the command was not applied."""


class LedgerService:
    def __init__(
        self,
        store: EventStore,
        *,
        view: Projection | None = None,
        max_attempts: int = 12,
        batch: int = 2000,
        group_limit: int = GROUP_LIMIT,
        current_appends: bool = False,
    ) -> None:
        """`view`: where the service starts (restored from the read-model tables, see
        `store.read_models.load_view`); an empty view by default. Either way the
        service catches up with the log before every query, and every decision rests
        on a view that is current (see `_commit_group`).
        `group_limit`: the most commands one group commit carries.
        `current_appends`: on a store that `appends_current` (PostgreSQL), decide on the
        view as it is and let the append read what others committed under its lock
        (`_store_current`), instead of reading the log before every group."""
        self.store = store
        self.view = view if view is not None else Projection()
        self.max_attempts = max_attempts
        self.batch = batch
        self.group_limit = max(1, group_limit)
        self.conflicts = 0  # appends that lost a race (for figures and tests)
        self.commits = 0  # appends that stored events (one per group)
        self.commands_committed = 0  # commands whose events those appends carried
        self.redecided = 0  # groups decided again under the append lock (the log moved)
        # the append reads what is new under its lock: no catch-up before deciding
        self._appends_current = current_appends and bool(getattr(store, "appends_current", False))
        self._lock = threading.RLock()

    # --- reading the log --------------------------------------------------------------

    def catch_up(self, *, liveness: bool = True) -> int:
        """Apply events (and, with `liveness`, heartbeats) others stored since the last look.

        Only sweeps and queries read heartbeats, so commands skip that read.
        """
        with self._lock:
            applied = 0
            while True:
                batch = _retrying(lambda: self.store.read(self.view.position, self.batch))
                for stored in batch:
                    self.view.apply(stored)
                applied += len(batch)
                if len(batch) < self.batch:
                    break
            if not liveness:
                return applied
            counter, beats = _retrying(lambda: self.store.read_liveness(self.view.liveness_counter))
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
        pending = Pending(command)
        self.run_group([pending])
        decision = pending.outcome()
        assert isinstance(decision, Decision)
        return decision

    def claim_next(self, command: ClaimTask) -> Claimed | None:
        """Claim the oldest pending task the worker can run; None if there is none.

        `command.task_id` is ignored: candidates come from the view, oldest first (or,
        for a resent `request_key`, the task claimed under it). The core refuses an
        unknown or ended worker, or one of another user, also when the queue is empty.
        A draining worker gets None, like an empty queue (a 0.1.7 worker sees no tasks).
        """
        pending = Pending(command, claim=True)
        self.run_group([pending])
        claimed = pending.outcome()
        assert claimed is None or isinstance(claimed, Claimed)
        return claimed

    def run_group(self, pending: Sequence[Pending]) -> None:
        """Decide and commit `pending` in as few transactions as their streams allow.

        Each member ends `done` with its result or error. Members are decided in order;
        one that depends on a stream an earlier member writes goes to the next group.
        """
        with self._lock:
            waiting = list(pending)
            while waiting:
                group, waiting = waiting[: self.group_limit], waiting[self.group_limit :]
                waiting = self._commit_group(group) + waiting

    def _commit_group(self, group: list[Pending]) -> list[Pending]:
        """One transaction for what `group` decides; returns the members deferred.

        The group is decided on a view read from the log first, or, with
        `current_appends`, on the view as it is: an append then reads what others
        committed under its lock and decides again there when anything is new
        (`_store_current`), and a group that appends nothing reads the log after
        deciding, and decides again on what that read brought when anything is new.
        Either way no decision rests on a view older than a read made after it.
        """
        sweeps = any(isinstance(p.command, SweepWorker) for p in group)
        behind = False  # the view is too far behind to read what is new under the lock
        for attempt in range(self.max_attempts):
            read_first = sweeps or behind or not self._appends_current
            if read_first:
                self.catch_up(liveness=sweeps)
            plan, deferred = self._plan(group)
            if not read_first and not _appends(plan) and self.catch_up(liveness=False):
                plan, deferred = self._plan(group)  # decided again on what that read brought
            committed: bool | StoreError
            try:
                if self._appends_current and _appends(plan):
                    plan, deferred, committed = self._store_current(group, plan, deferred)
                else:
                    committed = self._store([event for event in plan.events if event.durable])
            except ViewBehindError:  # nothing appended: read the log first, then again
                behind, committed = True, False
            except CorruptEventError:  # a new event read under the lock: not an append's
                raise
            except StoreError as error:
                committed = error
            if isinstance(committed, StoreError):  # unreadable outcome: never guess
                if len(plan.members) > 1:  # find the member it is about: each alone
                    return self._one_by_one(plan, deferred)
                for member in plan.members:
                    member.pending.fail(committed)
                return deferred
            if not committed:  # another writer won: every member is decided again
                for pending in group:
                    pending.reset()
                if not behind:
                    self._back_off(attempt)
                continue
            self._finish(plan)
            return deferred
        for pending in group:
            pending.fail(
                ConflictRetriesExhaustedError(
                    f"{pending.command.type} lost {self.max_attempts} races against other writers"
                )
            )
        return []

    def _plan(self, group: list[Pending]) -> tuple[GroupPlan, list[Pending]]:
        """Decide every member of `group` on the view as it is (outcomes set afresh)."""
        plan, deferred = GroupPlan(), []
        for pending in group:
            pending.reset()
            if not self._decide_member(plan, pending):
                deferred.append(pending)
        return plan, deferred

    def _store_current(
        self, group: list[Pending], plan: GroupPlan, deferred: list[Pending]
    ) -> tuple[GroupPlan, list[Pending], bool | StoreError]:
        """Append what `group` decided, on a view that is current when it commits.

        `plan` was decided on the view as it is. Under its append lock the store reads
        what others committed beyond the view's position; when anything is new the
        view folds it in and the group is decided again there (nothing else can commit
        meanwhile), so what is appended rests on the whole log as it is at the commit,
        streams the decisions read but do not write included. Returns the plan that
        stands, its deferred members, and True (committed), False when the group must
        be decided again (a conflict, or an append that did not commit), or the error of
        an append whose outcome cannot be read back. Raises ViewBehindError.
        """
        decided = [(plan, deferred)]  # the last stands: decided again when the log moved
        attempted = [_durable(plan, self.view)]

        def decide(new: list[StoredEvent]) -> tuple[list[Event], dict[str, int]]:
            if new:  # others committed since the view's last read: decide on the log as is
                for stored in new:
                    self.view.apply(stored)
                if not decided[-1][0].stands_after((s.event for s in new), self.view):
                    decided.append(self._plan(group))
                    attempted.append(_durable(decided[-1][0], self.view))
                    self.redecided += 1
            return attempted[-1]

        store = cast(CurrentStore, self.store)
        try:
            stored = store.append_current(self.view.position, decide, self.batch)
        except ConcurrencyError:
            self.conflicts += 1
            return plan, deferred, False
        except (ViewBehindError, CorruptEventError):
            raise
        except StoreError as error:
            events, expected = attempted[-1]
            try:
                found = self._read_back(events, expected, error)
            except StoreError as unknown:
                return *decided[-1], unknown
            if found is None:
                return plan, deferred, False
            self._adopt(found)
            return *decided[-1], True
        self._adopt(stored, current=True)
        return *decided[-1], True

    def _one_by_one(self, plan: GroupPlan, deferred: list[Pending]) -> list[Pending]:
        for member in plan.members:
            member.pending.reset()
            self._commit_group([member.pending])
        return deferred

    def _decide_member(self, plan: GroupPlan, pending: Pending) -> bool:
        """Decide `pending` into `plan`; False to defer it to the next group."""
        if pending.is_claim:
            return self._decide_claim(plan, pending)
        command = pending.command
        try:
            if pending.check is not None:
                plan.reads_unlisted = True  # the check reads the view, not the scope
                pending.check(self.view)
            decision = handle(self.view.scope(command), command)
        except DomainError as error:
            return self._refuse(plan, pending, error)
        except Exception as error:  # a bug in deciding one command fails that command only
            logger.exception("deciding %s failed", command.type)
            plan.reads_unlisted = True
            pending.fail(error)
            return True
        if plan.clashes_with(decision):
            return False
        plan.add(Member(pending, decision), decision.events)
        return True

    def _refuse(self, plan: GroupPlan, pending: Pending, error: DomainError) -> bool:
        """A refusal stands only on a view no member changed (it may rest on an absence)."""
        if plan.written:
            return False
        plan.reads_unlisted = True  # it may rest on an absence no scope lists
        if error.record:
            empty = Decision.model_construct(state=LedgerState(), events=(), emissions=())
            plan.add(Member(pending, empty, refusal=error), error.record)
        else:
            pending.fail(error)
        return True

    def _decide_claim(self, plan: GroupPlan, pending: Pending) -> bool:
        """`claim_next` as a group member: the oldest candidate no member touched."""
        command = pending.command
        assert isinstance(command, ClaimTask)
        if plan.clashes({Stream.worker(command.worker_id).text}):
            return False
        worker = self.view.worker(command.worker_id)
        key = command.request_key
        earlier = worker.claimed_under(key) if worker is not None and key else None
        candidates = [earlier] if earlier else self.view.claim_candidates(command.worker_id)
        skipped = False
        for task_id in candidates or [""]:
            if task_id and plan.clashes({Stream.task(task_id).text}):
                skipped = True
                continue
            attempt = command.model_copy(update={"task_id": task_id})
            try:
                decision = handle(self.view.scope(attempt), attempt)
            except TaskNotPendingError:
                continue
            except WorkerDrainingError:
                plan.reads_unlisted = True
                pending.succeed(None)  # checked the worker: it claims nothing any more
                return True
            except (TaskNotFoundError, WorkerNotOnlineError) as error:
                if candidates:
                    return self._refuse(plan, pending, error)
                plan.reads_unlisted = True
                pending.succeed(None)  # checked the worker; there is nothing to claim
                return True
            except DomainError as error:
                return self._refuse(plan, pending, error)
            if plan.clashes_with(decision):
                return False
            member = Member(pending, decision, claimed_task=task_id)
            if not decision.events:  # a resend: the key's claim is recorded already
                member.replayed = True
                member.claimed_task = (
                    decision.state.workers[command.worker_id].claimed_under(key or "") or task_id
                )
            plan.add(member, decision.events)
            return True
        if skipped:
            return False  # every candidate is another member's: try again after the commit
        plan.reads_unlisted = True  # nothing pending: an absence no scope lists
        pending.succeed(None)
        return True

    def _finish(self, plan: GroupPlan) -> None:
        """After the commit: liveness, the view's enrichments, then every member's outcome."""
        events = plan.events
        if any(event.durable for event in events):
            self.commits += 1
            self.commands_committed += sum(
                1 for m in plan.members if any(e.durable for e in m.decision.events) or m.refusal
            )
        self._store_liveness(events)  # only heartbeats: nothing committed yet
        for member in plan.members:
            if member.refusal is not None:
                member.pending.fail(member.refusal)
                continue
            decision = self._after_commit(member.decision)
            if member.pending.is_claim:
                task_id = member.claimed_task
                member.pending.succeed(Claimed(task_id, decision, replayed=member.replayed))
            else:
                member.pending.succeed(decision)

    def _store(self, events: Sequence[Event]) -> bool:
        """Append `events`; False when another writer won (the caller decides again)."""
        if not events:
            return True
        expected = {event.stream: self.view.version(event.stream) for event in events}
        try:
            stored = self.store.append(events, expected)
        except ConcurrencyError:
            self.conflicts += 1
            return False
        except StoreError as error:
            found = self._read_back(events, expected, error)
            if found is None:
                return False
            stored = found
        self._adopt(stored)
        return True

    def _read_back(
        self, events: Sequence[Event], expected: Mapping[str, int], cause: StoreError
    ) -> list[StoredEvent] | None:
        """Resolve an append whose outcome is unknown by reading its streams back.

        Returns the stored events when the append committed, None when it did not (or
        another writer's events are there: decide again); raises `cause` if the
        streams cannot be read either.
        """
        for attempt in range(READ_BACK_ATTEMPTS):
            try:
                found = [
                    record
                    for stream in sorted(expected)
                    for record in self.store.read_stream(stream, expected[stream])
                ]
            except StoreError:
                self._back_off(attempt + 4)
                continue
            if found and _same_events([record.event for record in found], events):
                logger.warning("append outcome unknown (%s); read back: committed", cause)
                return sorted(found, key=lambda record: record.position)
            logger.warning(
                "append outcome unknown (%s); read back: %s",
                cause,
                "another writer's events" if found else "not committed",
            )
            self.conflicts += 1
            return None
        raise cause

    def _adopt(self, stored: list[StoredEvent], *, current: bool = False) -> None:
        """Fold our own committed events into the view (after the commit: never raises).

        `current`: the view had read everything committed before them (an append on
        the current view), so gaps in the positions hide nothing."""
        contiguous = current or all(
            s.position == self.view.position + 1 + i for i, s in enumerate(stored)
        )
        if contiguous:
            for record in stored:
                self.view.apply(record)
            return
        try:
            self.catch_up(liveness=False)
        except Exception:  # the next command's catch-up reads what this one missed
            logger.warning("catch-up after a commit failed; deferred", exc_info=True)

    def _store_liveness(self, events: Sequence[Event]) -> None:
        for event in events:
            if not event.durable and event.stream_kind is StreamKind.WORKER:
                worker_id = event.stream_key
                _retrying(partial(self.store.record_liveness, worker_id, event.at))
                self.view.apply_heartbeat(worker_id, event.at)

    def _after_commit(self, decision: Decision) -> Decision:
        try:
            emissions = self._enrich(decision.emissions) + self._hidden_jobs(decision.events)
            return decision.model_copy(update={"emissions": emissions})
        except Exception:  # committed: deliver without queue positions rather than fail
            logger.warning("enriching emissions failed; delivered as decided", exc_info=True)
            return decision

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

    def _hidden_jobs(self, events: Sequence[Event]) -> tuple[Emission, ...]:
        """`jobs_invalidate` for a job the listings stop showing because its last pending
        task was cancelled while no worker serves it (a view rule: listings hide such
        jobs, so the core's emissions cannot know)."""
        out: list[Emission] = []
        for event in events:
            if not isinstance(event, TaskCancelled) or event.worker_id is not None:
                continue  # only a pending task is cancelled without a holder
            task = self.view.task(event.task_id)
            job = self.view.job(task.job_name) if task is not None else None
            if job is not None and not job.workers and not self.view.pending_count(job.full_name):
                emit = invalidate("jobs_invalidate", job.full_name)
                if emit not in out:
                    out.append(emit)
        return tuple(out)

    @staticmethod
    def _back_off(attempt: int) -> None:
        time.sleep(min(0.001 * 2**attempt, 0.05) * random.uniform(0.5, 1.5))

    def close(self) -> None:
        self.store.close()


def _retrying(read: Callable[[], T], attempts: int = 3) -> T:
    """A read, retried on StoreError: a pooled connection that died (failover, idle
    kill) fails its first use and is discarded, so the next try gets a fresh one."""
    for attempt in range(attempts - 1):
        try:
            return read()
        except StoreError as error:
            logger.info("store read failed (%s); retrying", error)
            LedgerService._back_off(attempt)
    return read()


def _appends(plan: GroupPlan) -> bool:
    return any(event.durable for event in plan.events)


def _durable(plan: GroupPlan, view: Projection) -> tuple[list[Event], dict[str, int]]:
    """What `plan` appends, and the expected version (in `view`) of each stream it writes."""
    events = [event for event in plan.events if event.durable]
    return events, {event.stream: view.version(event.stream) for event in events}


def _same_events(found: Sequence[Event], ours: Sequence[Event]) -> bool:
    """True when the events read back are exactly the ones this append carried."""

    def key(event: Event) -> tuple[str, str]:
        return event.stream, event.model_dump_json()

    return sorted(map(key, found)) == sorted(map(key, ours))
