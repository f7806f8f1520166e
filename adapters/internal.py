"""`@internal` jobs: tasks the host runs itself, through an executor it supplies.

A superuser registers a job in the `@internal` room (as in zndraw-joblib 0.1.7). A
task submitted for it is refused with 503 `internal-job-not-configured` (nothing
recorded) unless the host's `InternalExecutor` handles that job; otherwise the core
records it as claimed by the server (`TaskDispatched`, no worker, no `task_available`)
and, after the commit, the executor's `dispatch` is called. If `dispatch` raises, the
task is failed with the reason. The executor reports the task's progress through the
`TaskReporter` it is given (the same status commands as a worker's PATCH, as the
system), so its outcome is in the log like any other.

`InProcessExecutor` runs async handlers on the host's event loop: for tests, demos
and hosts without a task queue. A queue-backed executor (taskiq, Celery) implements
the same two methods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from workerledger.core import (
    SYSTEM,
    Decision,
    InternalJobNotConfiguredError,
    TaskDispatched,
    TaskState,
    TaskStatus,
    UpdateTask,
)

from .auth import Clock
from .ledger import Ledger

log = logging.getLogger(__name__)


class TaskReporter(Protocol):
    """How an executor reports an internal task's status (recorded as the system)."""

    async def __call__(self, task_id: str, status: TaskStatus, error: str | None = None) -> None:
        """Record `status` (running, completed, failed) for the task."""
        ...


class InternalExecutor(Protocol):
    def handles(self, job_name: str) -> bool:
        """True if this executor runs tasks of the `@internal` job `job_name`."""
        ...

    async def dispatch(self, task: TaskState, report: TaskReporter) -> None:
        """Hand the task over (return once it is queued or started; raise if it cannot
        be). Later status changes go through `report`."""
        ...


Handler = Callable[[Mapping[str, Any]], Awaitable[object]]


class InProcessExecutor:
    """Runs `handlers[job_name](payload)` as an asyncio task on the host's loop: the
    task is reported running, then completed, or failed with the handler's error."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self.handlers = dict(handlers)
        self._running: set[asyncio.Task[None]] = set()

    def handles(self, job_name: str) -> bool:
        return job_name in self.handlers

    async def dispatch(self, task: TaskState, report: TaskReporter) -> None:
        handler = self.handlers[task.job_name]
        run = asyncio.get_running_loop().create_task(self._run(handler, task, report))
        self._running.add(run)
        run.add_done_callback(self._running.discard)

    async def _run(self, handler: Handler, task: TaskState, report: TaskReporter) -> None:
        try:
            await report(task.id, TaskStatus.RUNNING)
            try:
                await handler(task.payload)
            except Exception as error:
                await report(task.id, TaskStatus.FAILED, f"{type(error).__name__}: {error}")
                return
            await report(task.id, TaskStatus.COMPLETED)
        except Exception:
            log.exception("internal task %s: reporting its status failed", task.id)

    async def aclose(self) -> None:
        """Cancel the handlers still running (at host shutdown)."""
        running, self._running = set(self._running), set()
        for run in running:
            run.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def check_internal(executor: InternalExecutor | None, job_name: str) -> None:
    """Refuse a task for the `@internal` job `job_name` unless an executor handles it."""
    if executor is None or not executor.handles(job_name):
        raise InternalJobNotConfiguredError(
            f"Internal job '{job_name}' is registered but no executor is available"
        )


def dispatched(decision: Decision) -> bool:
    """True if the decision claimed a task for the internal executor."""
    return any(isinstance(event, TaskDispatched) for event in decision.events)


async def dispatch_internal(
    ledger: Ledger, executor: InternalExecutor, task: TaskState, clock: Clock
) -> None:
    """Hand a committed, dispatched task to the executor (persist, then deliver); if the
    executor refuses it, fail the task with the reason."""

    async def report(task_id: str, status: TaskStatus, error: str | None = None) -> None:
        await ledger.execute(
            UpdateTask(now=clock(), actor=SYSTEM, task_id=task_id, status=status, error=error)
        )

    try:
        await executor.dispatch(task, report)
    except Exception as error:
        log.warning("internal task %s: dispatch failed: %s", task.id, error)
        reason = f"{type(error).__name__}: {error}"
        await report(
            task.id, TaskStatus.FAILED, f"Failed to dispatch to internal executor ({reason})"
        )
