"""Leaving the server: the graceful path of the worker-disconnect design.

1. stop the background loops (a running task is asked to stop and given
   `drain_timeout` seconds; work that finishes in time is still reported),
2. `leave_job_room` for every registered job, each acknowledged,
3. `DELETE /workers/{id}`, which releases anything still held per the job's policy,
4. close the Socket.IO connection and clear the local registry.

Steps 2 and 3 share a `shutdown_timeout` budget, so a dead server costs bounded time.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import ServerError, ServerUnavailableError
from .retry import retry_transient
from .runner import SHUTDOWN_REASON, TaskRunner
from .session import Session

logger = logging.getLogger("workerledger.client")


def leave(
    session: Session,
    runner: TaskRunner,
    threads: list[threading.Thread],
    *,
    drain_timeout: float,
    shutdown_timeout: float,
) -> None:
    started = time.monotonic()
    session.stop.set()
    session.wake.set()
    for task in session.held_tasks():
        task.mark_cancelled(SHUTDOWN_REASON)
    _join(threads, drain_timeout)
    runner.abort.set()
    worker_id = session.worker_id
    if worker_id is not None:
        deadline = time.monotonic() + shutdown_timeout
        rooms = session.leave_rooms(worker_id, timeout=min(session.ack_timeout, shutdown_timeout))
        removed = _delete(session, worker_id, max(0.5, deadline - time.monotonic()))
        elapsed_ms = (time.monotonic() - started) * 1000
        if removed:
            logger.info(
                "worker %s left: %d room(s) left, worker removed on the server (%.0f ms)",
                worker_id, rooms, elapsed_ms,
            )  # fmt: skip
    if session.link is not None:
        session.link.close(timeout=1.0)
    with session.lock:
        session.jobs.clear()
        session.held.clear()


def _join(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        if thread is threading.current_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            logger.warning("%s still busy after %.1f s; leaving anyway", thread.name, timeout)


def _delete(session: Session, worker_id: str, timeout: float) -> bool:
    """DELETE the worker, retried within `timeout`; 404 (also after a lost answer to an
    earlier try that did remove it) counts as removed."""
    deadline = time.monotonic() + timeout
    try:
        retry_transient(
            lambda: session.rest.delete_worker(
                worker_id, timeout=max(0.1, min(session.rest.timeout, deadline - time.monotonic()))
            ),
            stop=None,
            deadline_seconds=timeout,
            what=f"remove worker {worker_id}",
            outage=session.outage,
        )
    except ServerUnavailableError as error:
        logger.error(
            "could not remove worker %s: server unreachable (%s); the server will release "
            "it after its disconnect grace window or heartbeat timeout", worker_id, error,
        )  # fmt: skip
        return False
    except ServerError as error:
        if error.code != "worker-not-found":
            logger.error("server refused to remove worker %s: %s", worker_id, error)
            return False
        logger.info("worker %s was already gone on the server", worker_id)
    return True


@contextmanager
def stop_signals() -> Iterator[list[int]]:
    """While active (main thread only), SIGINT and SIGTERM are recorded in the yielded
    list instead of ending the process. The handler only appends: it takes no lock."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if received:
            logger.info("received %s; disconnecting", signal.Signals(received[0]).name)
