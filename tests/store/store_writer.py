"""Child process of the crash test: a stream of commands against URL, forever.

Prints `committed N` after each command returns (its events are committed) and
checkpoints the read-model tables every few commands.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/: `support`, as under pytest

from store_support import claim, register, report, submit
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.read_models import ReadModelTables, TrackedProjection
from workerledger.adapters.store.url import open_store
from workerledger.core import TaskStatus


def main(url: str) -> None:
    store = open_store(url)
    service = LedgerService(store, view=TrackedProjection())
    tables = ReadModelTables.for_store(store)
    done = 0

    def committed() -> None:
        nonlocal done
        done += 1
        print(f"committed {done}", flush=True)
        if done % 7 == 0:
            tables.checkpoint(service.view)

    register(service, "w")
    committed()
    n = 0
    while True:
        n += 1
        submit(service, f"t{n}")
        committed()
        claim(service, "w", f"t{n}")
        committed()
        report(service, f"t{n}", TaskStatus.RUNNING)
        committed()
        report(service, f"t{n}", TaskStatus.COMPLETED)
        committed()


if __name__ == "__main__":
    main(sys.argv[1])
