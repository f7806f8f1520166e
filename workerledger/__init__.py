"""workerledger: event-sourced worker lifecycle for job servers.

Layers (dependencies point one way): `workerledger.core` (pure decisions) <-
`workerledger.adapters` (store, Socket.IO, REST, sweeper) <- `workerledger.host_fastapi`.
"""

from workerledger.core import (
    Actor,
    Command,
    Decision,
    DomainError,
    Emission,
    Event,
    LedgerState,
    TaskStatus,
    WorkerStatus,
    decide,
    evolve,
    fold,
    handle,
)

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "Command",
    "Decision",
    "DomainError",
    "Emission",
    "Event",
    "LedgerState",
    "TaskStatus",
    "WorkerStatus",
    "__version__",
    "decide",
    "evolve",
    "fold",
    "handle",
]
