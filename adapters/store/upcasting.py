"""Evolving an event's schema: a schema version per stored event, upcasters on read.

Every stored event carries `schema`, the version of its event type's payload at the
time it was written (1 unless `CURRENT_VERSIONS` says otherwise). Reading applies
the upcasters keyed by (type, version) one step at a time until the payload has the
current version, and only then validates it with the core's pydantic models.

How to change an event's payload (say `WorkerLost` gains a required `detail`):

1. Change the model in core/events.py (the `type` name never changes).
2. Bump its version here: `CURRENT_VERSIONS["WorkerLost"] = 2`.
3. Register the step from the old payload, a plain dict, to the new one:

       @UPCASTERS.register("WorkerLost", 1)
       def _worker_lost_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
           return {**data, "detail": ""}

4. Add a test that writes a raw version-1 payload and reads the current event
   (tests/store/test_upcasting.py shows how).

An upcaster may also rename an event by returning a different `type` (keep the old
name registered so old rows still resolve). New writes always carry the current
version; old rows are never rewritten. A row whose version has no path to the
current one is reported as a corrupt event (StoreError), never skipped.
Adding an optional field with a default needs no upcaster at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class UpcastError(ValueError):
    """No upcaster leads from a stored version to the current one."""


class Upcasters:
    """Registry of upcasters keyed by (event type, version they upgrade from)."""

    def __init__(self, current: dict[str, int] | None = None) -> None:
        self.current: dict[str, int] = current if current is not None else {}
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def version_of(self, event_type: str) -> int:
        """The schema version new events of `event_type` are written with."""
        return self.current.get(event_type, 1)

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: `fn` turns a `from_version` payload into `from_version + 1`."""

        def add(fn: Upcaster) -> Upcaster:
            self._steps[(event_type, from_version)] = fn
            return fn

        return add

    def upcast(self, event_type: str, version: int, data: Payload) -> Payload:
        """Apply the chain from `version` to the current version of the event's type."""
        while version < self.version_of(event_type):
            step = self._steps.get((event_type, version))
            if step is None:
                raise UpcastError(f"no upcaster for {event_type} version {version}")
            data = step(data)
            new_type = data.get("type", event_type)
            if new_type != event_type:  # renamed: continue on the new type's chain
                event_type = str(new_type)
            version += 1
        if version > self.version_of(event_type):
            raise UpcastError(
                f"{event_type} version {version} is newer than this build knows "
                f"({self.version_of(event_type)}); upgrade workerledger"
            )
        return data


CURRENT_VERSIONS: dict[str, int] = {}
"""Event type -> current schema version. Absent means version 1."""

UPCASTERS = Upcasters(CURRENT_VERSIONS)
"""The registry the stores use unless given another (tests pass their own)."""
