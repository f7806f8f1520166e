"""Wake long-polls (`GET /tasks/{id}` with `Prefer: wait=N`) on task status changes.

`TaskWaiters` is an `Emitter`: the ledger hands it every committed batch, and each
`task_status_event` wakes the requests waiting on that task. Changes committed by
another host do not pass through this process, so the sweeper calls `notify_all()`
after each catch-up: a long-poll then sees a remote change within one sweep interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from workerledger.core import Emission, Emit


class TaskWaiters:
    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    @contextmanager
    def watch(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set on every change of `task_id` while the block runs."""
        changed = asyncio.Event()
        self._waiting.setdefault(task_id, set()).add(changed)
        try:
            yield changed
        finally:
            waiting = self._waiting.get(task_id)
            if waiting is not None:
                waiting.discard(changed)
                if not waiting:
                    del self._waiting[task_id]

    def notify(self, task_id: str) -> None:
        for changed in self._waiting.get(task_id, ()):
            changed.set()

    def notify_all(self) -> None:
        for waiting in self._waiting.values():
            for changed in waiting:
                changed.set()

    async def deliver(self, emissions: Sequence[Emission]) -> None:
        for emission in emissions:
            if isinstance(emission, Emit) and emission.event == "task_status_event":
                self.notify(str(emission.data.get("id")))
