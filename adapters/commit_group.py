"""Group commit: what one store transaction carries for several commands.

Commands that arrive while a commit is in flight are decided one after another on the
committed view and appended together in one transaction (`LedgerService.run_group`).
Deciding on the committed view is only right for a command whose inputs no earlier
member of the group changed, so a `GroupPlan` keeps the streams the group writes and
a command that reads or writes one of them waits for the next group (it is *deferred*,
never decided on a stale view). A refusal is only kept while nothing is written yet:
it may rest on the absence of something an earlier member creates.

The members' outcomes are set only after the group committed (or, for a refusal that
records nothing, at once). A failed group is decided again as a whole, so no member is
half-applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from workerledger.core import (
    ClaimTask,
    Command,
    Decision,
    DomainError,
    Event,
    LedgerState,
    Stream,
    StreamKind,
    TaskStatus,
)

if TYPE_CHECKING:
    from .projection import Projection

GROUP_LIMIT = 64  # commands per transaction; the rest wait for the next group


class Claimed(NamedTuple):
    """What a claim gave the worker: the task, the decision, and whether this was the
    resend of an earlier claim with the same Idempotency-Key (nothing new recorded)."""

    task_id: str
    decision: Decision
    replayed: bool


@dataclass(eq=False)
class Pending:
    """One command waiting for its group: `execute` (a Decision) or, with `claim`, a
    `claim_next` (a Claimed or None). `done` once `result` or `error` is final.
    `check`, if any, runs on the view just before the command is decided (each time it
    is); a DomainError it raises refuses the command as the core's own would."""

    command: Command
    claim: bool = False
    check: Callable[[Projection], None] | None = None
    result: Decision | Claimed | None = None
    error: BaseException | None = None
    done: bool = False

    def succeed(self, result: Decision | Claimed | None) -> None:
        self.result, self.error, self.done = result, None, True

    def fail(self, error: BaseException) -> None:
        self.result, self.error, self.done = None, error, True

    def reset(self) -> None:
        self.result, self.error, self.done = None, None, False

    def outcome(self) -> Decision | Claimed | None:
        """The result, or raise the error (for the synchronous callers)."""
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def is_claim(self) -> bool:
        return self.claim and isinstance(self.command, ClaimTask)


@dataclass
class Member:
    """A decided member of a group: its decision (or the refusal that records events)."""

    pending: Pending
    decision: Decision
    refusal: DomainError | None = None
    claimed_task: str = ""
    replayed: bool = False


@dataclass
class GroupPlan:
    """The members decided so far and the streams they write.

    `reads_unlisted`: some command's outcome was settled on reads that its members'
    scopes do not list (a refusal, a check, a failure, a claim that found nothing):
    such a plan is decided again whenever the log moved (`stands_after`)."""

    members: list[Member] = field(default_factory=list)
    written: set[str] = field(default_factory=set)
    reads_unlisted: bool = False

    def stands_after(self, new: Iterable[Event], view: Projection) -> bool:
        """Whether deciding every member again, on `view` with the events `new` (by
        other writers) folded in, would give this plan: no member's outcome rests on
        unlisted reads, no new event is on a stream a member read or writes (a core
        decision reads only its scope), and none left a task pending ahead of a claimed
        one in a job the claim chose from (so it is still the oldest pending task there;
        a new submission queues behind it)."""
        if self.reads_unlisted:
            return False
        reads: set[str] = set()
        claimed: dict[str, int] = {}  # job a claim chose from -> its latest claimed FIFO key
        order = view.submission_positions()
        for member in self.members:
            if member.refusal is not None:
                return False
            reads.update(scope_streams(member.decision.state))
            reads.update(event.stream for event in member.decision.events)
            command = member.pending.command
            if member.pending.is_claim and isinstance(command, ClaimTask):
                worker = member.decision.state.workers.get(command.worker_id)
                key = order.get(member.claimed_task, 0)
                for job_name in worker.jobs if worker is not None else ():
                    claimed[job_name] = max(claimed.get(job_name, 0), key)
        for event in new:
            if event.stream in reads:
                return False
            if claimed and event.stream_kind is StreamKind.TASK:
                task = view.task(event.stream_key)
                if (
                    task is not None
                    and task.status is TaskStatus.PENDING
                    and order.get(task.id, 0) < claimed.get(task.job_name, 0)
                ):
                    return False
        return True

    def clashes(self, streams: Iterable[str]) -> bool:
        return bool(self.written) and not self.written.isdisjoint(streams)

    def clashes_with(self, decision: Decision) -> bool:
        """Whether `decision` read or wrote a stream an earlier member writes (nothing
        to compare, and no stream names built, while the group has written nothing)."""
        if not self.written:
            return False
        return self.clashes(scope_streams(decision.state)) or self.clashes(
            event.stream for event in decision.events
        )

    def add(self, member: Member, events: Iterable[Event]) -> None:
        self.members.append(member)
        self.written.update(event.stream for event in events)

    @property
    def events(self) -> list[Event]:
        out: list[Event] = []
        for member in self.members:
            out.extend(member.refusal.record if member.refusal else member.decision.events)
        return out


def scope_streams(state: LedgerState) -> set[str]:
    """The streams of the entities a decision read (its scope)."""
    streams = {Stream.worker(key).text for key in state.workers}
    streams.update(Stream.job(key).text for key in state.jobs)
    streams.update(Stream.task(key).text for key in state.tasks)
    streams.update(Stream.provider(key).text for key in state.providers)
    return streams
