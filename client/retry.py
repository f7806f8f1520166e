"""Backoff for transient failures, and a log that speaks once per outage."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

from .errors import ServerUnavailableError

T = TypeVar("T")


def backoff_delay(attempt: int, *, base: float = 0.25, cap: float = 5.0) -> float:
    """`min(base * 2^attempt, cap)`, jittered by +-25 %."""
    delay: float = min(base * 2**attempt, cap)
    return delay * random.uniform(0.75, 1.25)


def retry_transient(
    call: Callable[[], T],
    *,
    stop: threading.Event | None,
    deadline_seconds: float | None,
    what: str,
    outage: OutageLog,
) -> T:
    """Run `call` until it succeeds or raises a non-transient error.

    `ServerUnavailableError` is retried with backoff until `stop` is set or
    `deadline_seconds` (None: forever) have passed; then the last error is raised.
    Only calls that are safe to resend belong here: reads, heartbeats, deletes, and
    writes that carry an idempotency key (a replay returns the first outcome).
    """
    stop = stop or threading.Event()
    waited = 0.0
    attempt = 0
    while True:
        try:
            result = call()
        except ServerUnavailableError as error:
            outage.failed(what, error)
            delay = backoff_delay(attempt)
            attempt += 1
            if deadline_seconds is not None and waited + delay > deadline_seconds:
                raise
            if stop.wait(delay):
                raise
            waited += delay
            continue
        outage.recovered()
        return result


class OutageLog:
    """Logs the first failure of an outage and its end, not every retry in between."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._down = False

    @property
    def is_down(self) -> bool:
        return self._down

    def failed(self, what: str, error: Exception) -> None:
        with self._lock:
            first = not self._down
            self._down = True
        if first:
            self._logger.warning(
                "server unreachable (%s: %s); retrying in the background", what, error
            )

    def recovered(self) -> None:
        with self._lock:
            was_down = self._down
            self._down = False
        if was_down:
            self._logger.warning("server reachable again")
