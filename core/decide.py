"""decide(state, command) -> events, and handle() composing decide/evolve/emissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import commands as c
from . import decide_providers as providers
from . import decide_tasks as tasks
from . import decide_workers as workers
from .emissions import Emission, fold_with_emissions
from .events import Event
from .model import Frozen, construct
from .state import LedgerState

_DECIDERS: dict[type[Any], Callable[[LedgerState, Any], list[Event]]] = {
    c.RegisterWorker: workers.register_worker,
    c.RegisterJob: workers.register_job,
    c.RecordHeartbeat: workers.record_heartbeat,
    c.JoinJobRoom: workers.join_job_room,
    c.LeaveJobRoom: workers.leave_job_room,
    c.DisconnectWorker: workers.disconnect_worker,
    c.SweepWorker: workers.sweep_worker,
    c.RemoveWorker: workers.remove_worker,
    c.DrainWorker: workers.drain_worker,
    c.SubmitTask: tasks.submit_task,
    c.ClaimTask: tasks.claim_task,
    c.ExpireClaim: tasks.expire_claim,
    c.UpdateTask: tasks.update_task,
    c.RequeueTask: tasks.requeue_task,
    c.RegisterProvider: providers.register_provider,
    c.RemoveProvider: providers.remove_provider,
    c.JoinProviderRoom: providers.join_provider_room,
    c.LeaveProviderRoom: providers.leave_provider_room,
}


def decide(state: LedgerState, command: c.Command) -> list[Event]:
    """The events `command` causes in `state`; raises a DomainError if it is illegal."""
    return _DECIDERS[type(command)](state, command)


class Decision(Frozen):
    """The outcome of one command: the new state, its new events, what to deliver."""

    state: LedgerState
    events: tuple[Event, ...]
    emissions: tuple[Emission, ...]


def handle(state: LedgerState, command: c.Command) -> Decision:
    """decide, then evolve and compute emissions from the new events only."""
    events = decide(state, command)
    after, emissions = fold_with_emissions(state, events)  # one fold for both
    # all three are the core's own values, valid as built: not validated again
    return construct(Decision, {"state": after, "events": tuple(events), "emissions": emissions})
