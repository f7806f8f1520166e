"""workerledger: event-sourced worker lifecycle for job servers.

Layers (dependencies point one way): `workerledger.core` (pure decisions) <-
`workerledger.adapters` (store, Socket.IO, REST, sweeper) <- `workerledger.host_fastapi`.

The public API is this module; nothing else is needed to run workers or to embed the
ledger in a host app (README, "Host App Integration"):

- workers: `JobManager`, `Extension`, `ClaimedTask`, `Provider` (the SDK);
- the core: `Actor`, `Command`, `Event`, `Decision`, `DomainError`, `Emission`,
  `LedgerState`, `TaskStatus`, `WorkerStatus`, `decide`, `evolve`, `fold`, `handle`;
- embedding: `LedgerRuntime` (the composition root: store, view, service, ledger,
  Socket.IO handlers, sweeper, checkpoints; `start()` / `stop()` in the lifespan),
  its `LedgerPolicies` and `InputLimits`, `create_router(runtime)`,
  `create_console_router(runtime)` (the operator console, `/console`),
  `register_socketio_handlers(sio, runtime)` (returns the `WorkerSockets`),
  `cleanup_worker(ledger, worker_id, sid)` for a host's own disconnect handler,
  authentication (`Authenticator`, `StaticTokens`), the `Ledger` and the `Emitter`
  protocol, and the store (`open_store`, `EventStore`, `StoreError`);
- observing: the runtime's `LedgerMetrics` served by `create_metrics_route(runtime)`
  (`/metrics`, Prometheus), the `DecisionObserver` protocol, and `JsonFormatter`
  for one JSON object per log line (the lifecycle log is `workerledger.lifecycle`);
- the host's own rules and services: `RoomPolicy` (writable rooms, `RoomLockedError`;
  who may watch a room; default `OpenRooms`), `InternalExecutor` for `@internal` jobs
  (`InProcessExecutor`, `TaskReporter`), the provider result cache `ResultCache`
  (`MemoryResultCache`, `RedisResultCache` with the `redis` extra, `CachedResult`);
- the reference host: `create_app(settings)`, `Settings`.

The host-side names are imported on first use, so that `import workerledger` stays
light (no FastAPI, SQLAlchemy or eventsourcing import for workers and the pure core);
type checkers see them through the `TYPE_CHECKING` imports below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from workerledger.client import ClaimedTask, Extension, JobManager
from workerledger.client import Provider as Provider  # providers' read requests
from workerledger.core import (
    Actor,
    Command,
    Decision,
    DomainError,
    Emission,
    Event,
    LedgerState,
    RoomLockedError,
    TaskStatus,
    WorkerStatus,
    decide,
    evolve,
    fold,
    handle,
)

if TYPE_CHECKING:
    from workerledger.adapters.auth import Authenticator, StaticTokens
    from workerledger.adapters.cleanup import cleanup_worker
    from workerledger.adapters.console import create_console_router
    from workerledger.adapters.input_limits import InputLimits
    from workerledger.adapters.internal import InProcessExecutor, InternalExecutor, TaskReporter
    from workerledger.adapters.ledger import DecisionObserver, Emitter, Ledger
    from workerledger.adapters.observability.log_format import JsonFormatter
    from workerledger.adapters.observability.metrics import LedgerMetrics
    from workerledger.adapters.observability.route import create_metrics_route
    from workerledger.adapters.ports import EventStore, StoreError
    from workerledger.adapters.providers.redis_results import RedisResultCache
    from workerledger.adapters.providers.results import (
        CachedResult,
        MemoryResultCache,
        ResultCache,
    )
    from workerledger.adapters.realtime.handlers import WorkerSockets, register_socketio_handlers
    from workerledger.adapters.rest.router import create_router
    from workerledger.adapters.room_policy import OpenRooms, RoomPolicy
    from workerledger.adapters.runtime import LedgerPolicies, LedgerRuntime
    from workerledger.adapters.store.url import open_store
    from workerledger.host_fastapi.app import create_app
    from workerledger.host_fastapi.settings import Settings

__version__ = "0.1.0"

_LAZY = {
    "Authenticator": "workerledger.adapters.auth",
    "StaticTokens": "workerledger.adapters.auth",
    "cleanup_worker": "workerledger.adapters.cleanup",
    "create_console_router": "workerledger.adapters.console",
    "InputLimits": "workerledger.adapters.input_limits",
    "InProcessExecutor": "workerledger.adapters.internal",
    "InternalExecutor": "workerledger.adapters.internal",
    "TaskReporter": "workerledger.adapters.internal",
    "CachedResult": "workerledger.adapters.providers.results",
    "MemoryResultCache": "workerledger.adapters.providers.results",
    "ResultCache": "workerledger.adapters.providers.results",
    "RedisResultCache": "workerledger.adapters.providers.redis_results",  # the redis extra
    "OpenRooms": "workerledger.adapters.room_policy",
    "RoomPolicy": "workerledger.adapters.room_policy",
    "DecisionObserver": "workerledger.adapters.ledger",
    "Emitter": "workerledger.adapters.ledger",
    "JsonFormatter": "workerledger.adapters.observability.log_format",
    "LedgerMetrics": "workerledger.adapters.observability.metrics",
    "create_metrics_route": "workerledger.adapters.observability.route",
    "Ledger": "workerledger.adapters.ledger",
    "EventStore": "workerledger.adapters.ports",
    "StoreError": "workerledger.adapters.ports",
    "WorkerSockets": "workerledger.adapters.realtime.handlers",
    "register_socketio_handlers": "workerledger.adapters.realtime.handlers",
    "create_router": "workerledger.adapters.rest.router",
    "LedgerPolicies": "workerledger.adapters.runtime",
    "LedgerRuntime": "workerledger.adapters.runtime",
    "open_store": "workerledger.adapters.store.url",
    "create_app": "workerledger.host_fastapi.app",
    "Settings": "workerledger.host_fastapi.settings",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value: object = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'workerledger' has no attribute {name!r}")


__all__ = [
    "Actor",
    "Authenticator",
    "CachedResult",
    "ClaimedTask",
    "Command",
    "Decision",
    "DecisionObserver",
    "DomainError",
    "Emission",
    "Emitter",
    "Event",
    "EventStore",
    "Extension",
    "InProcessExecutor",
    "InputLimits",
    "InternalExecutor",
    "JobManager",
    "JsonFormatter",
    "Ledger",
    "LedgerMetrics",
    "LedgerPolicies",
    "LedgerRuntime",
    "LedgerState",
    "MemoryResultCache",
    "OpenRooms",
    "Provider",
    "RedisResultCache",
    "ResultCache",
    "RoomLockedError",
    "RoomPolicy",
    "Settings",
    "StaticTokens",
    "StoreError",
    "TaskReporter",
    "TaskStatus",
    "WorkerSockets",
    "WorkerStatus",
    "__version__",
    "cleanup_worker",
    "create_app",
    "create_console_router",
    "create_metrics_route",
    "create_router",
    "decide",
    "evolve",
    "fold",
    "handle",
    "open_store",
    "register_socketio_handlers",
]
