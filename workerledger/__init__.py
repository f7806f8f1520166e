"""workerledger: event-sourced worker lifecycle for job servers.

Layers (dependencies point one way): `workerledger.core` (pure decisions) <-
`workerledger.adapters` (store, Socket.IO, REST, sweeper) <- `workerledger.host_fastapi`.
"""

from workerledger.client import ClaimedTask, Extension, JobManager
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

# Host-side names, imported on first use so that `import workerledger` stays light
# (no FastAPI or python-socketio import for clients and the pure core).
_LAZY = {
    "cleanup_worker": "workerledger.adapters.cleanup",
    "register_socketio_handlers": "workerledger.adapters.realtime.handlers",
    "create_router": "workerledger.adapters.rest.router",
    "create_app": "workerledger.host_fastapi.app",
    "Settings": "workerledger.host_fastapi.settings",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workerledger' has no attribute {name!r}")


__all__ = [
    "Actor",
    "ClaimedTask",
    "Command",
    "Decision",
    "DomainError",
    "Emission",
    "Event",
    "Extension",
    "JobManager",
    "LedgerState",
    "Settings",
    "TaskStatus",
    "WorkerStatus",
    "__version__",
    "cleanup_worker",
    "create_app",
    "create_router",
    "decide",
    "evolve",
    "fold",
    "handle",
    "register_socketio_handlers",
]
