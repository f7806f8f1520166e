"""Job classes (SDK extensions) shared by the tests and the scripted worker process.

They live here, not in one test folder, because a worker *process* registers them while
the test that spawned it submits to them: both sides must mean the same job.
"""

from __future__ import annotations

from typing import Any, ClassVar

from workerledger.client import Extension


class Add(Extension):
    """A quick job: `a + b`."""

    category: ClassVar[str] = "modifiers"
    a: int
    b: int = 0

    def run(self, task: Any) -> int:
        return self.a + self.b


class Redo(Add):
    """Like Add, but a RUNNING task whose worker is lost goes back to the queue."""

    on_worker_lost: ClassVar[str | None] = "requeue"


class Chaos(Extension):
    """The chaos tests' job: a lost worker's RUNNING tasks are requeued, practically
    without limit, so that every task must end completed."""

    on_worker_lost: ClassVar[str | None] = "requeue"
    max_worker_losses: ClassVar[int | None] = 1000
    n: int = 0
