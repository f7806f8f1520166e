"""Claiming, running and reporting tasks, and the two background loops.

Reports carry the claim's `worker_id` and `attempt` (the fencing token). A report the
server refuses as stale, or on a task that already ended, is logged once and dropped.
Transport failures and 5xx are retried for at most `report_timeout` seconds; a claim
re-sends its `Idempotency-Key`, and a report the server cannot place is settled by
reading the task back (reports.py), so a lost answer never strands a task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from .api import ClaimAnswer, new_idempotency_key
from .errors import (
    ServerError,
    ServerUnavailableError,
    StaleAttemptError,
    TaskCancelledError,
    WorkerGoneError,
)
from .models import ClaimedTask, TaskInfo
from .reports import Report, place
from .retry import retry_transient
from .session import Session

logger = logging.getLogger("workerledger.client")

Execute = Callable[[ClaimedTask[Any]], object]
FATAL_STATUSES = (401, 403)
SHUTDOWN_REASON = "the worker is shutting down"


class TaskRunner:
    def __init__(self, session: Session, *, report_timeout: float) -> None:
        self.session = session
        self.report_timeout = report_timeout
        self.abort = threading.Event()  # stop retrying reports (shutdown gave up waiting)
        self.fatal: ServerError | None = None

    # -- claiming ------------------------------------------------------------

    def claim(self) -> ClaimedTask[Any] | None:
        """Claim the next task this worker can run, or None when there is none now.

        Tasks with an invalid payload or for a job this manager does not know are
        failed on the server with the reason, and the next task is tried.
        """
        s = self.session
        while not s.stop.is_set() and not s.draining.is_set():
            worker_id = s.worker_id
            if worker_id is None:
                return None  # not registered yet, or re-registration pending
            try:
                answer = self._claim_once(worker_id)
            except WorkerGoneError:
                s.worker_gone(worker_id, "claim")
                continue
            except ServerError as error:
                if error.code == "worker-not-online":
                    return None  # socket dropped; claims resume once the rooms are re-joined
                raise
            info = answer.task
            if info is None:
                return None
            if answer.replayed and (info.worker_id != worker_id or info.status != "claimed"):
                # A replayed claim whose task moved on (its lease expired, or it was
                # cancelled) is not ours to run; claim afresh under a new key.
                logger.info(
                    "claim replay: task %s is %s held by %s; not running it",
                    info.id, info.status, info.worker_id,
                )  # fmt: skip
                continue
            task = self._accept(info, worker_id)
            if task is not None:
                return task
        return None

    def _claim_once(self, worker_id: str) -> ClaimAnswer:
        """One logical claim: retried under one key, so a lost answer is replayed."""
        s = self.session
        key = new_idempotency_key()
        return retry_transient(
            lambda: s.rest.claim(worker_id, idempotency_key=key),
            stop=s.stop,
            deadline_seconds=self.report_timeout,
            what="claim",
            outage=s.outage,
        )

    def _accept(self, info: TaskInfo, worker_id: str) -> ClaimedTask[Any] | None:
        job = self.session.job(info.job_name)
        if job is None:
            reason = f"job {info.job_name} is not registered with worker {worker_id}"
            self._reject(info, worker_id, reason)
            return None
        try:
            extension = job.cls.model_validate(info.payload)
        except ValidationError as error:
            reason = f"invalid payload for {info.job_name}: {_errors(error)}"
            self._reject(info, worker_id, reason)
            return None
        task: ClaimedTask[Any] = ClaimedTask(
            task_id=info.id,
            job_name=info.job_name,
            room_id=info.room_id,
            attempt=info.attempt,
            worker_id=worker_id,
            extension=extension,
            payload=info.payload,
        )
        self.session.hold(task)
        return task

    def _reject(self, info: TaskInfo, worker_id: str, reason: str) -> None:
        logger.error("task %s failed without running: %s", info.id, reason)
        try:
            self.report_status(info.id, "failed", reason, worker_id, info.attempt)
        except (StaleAttemptError, TaskCancelledError) as moved_on:
            logger.info("task %s moved on meanwhile: %s", info.id, moved_on)

    # -- reporting -----------------------------------------------------------

    def report(self, task: ClaimedTask[Any], status: str, error: str | None = None) -> TaskInfo:
        """PATCH the task with the claim's fencing token; raises on refusal
        (`TaskCancelledError` when the read-back found the task cancelled)."""
        try:
            info = self.report_status(task.task_id, status, error, task.worker_id, task.attempt)
        except (ServerError, TaskCancelledError):
            self.session.release(task)
            raise
        if info.is_terminal:
            self.session.release(task)
        return info

    def report_status(
        self,
        task_id: str,
        status: str,
        error: str | None,
        worker_id: str | None,
        attempt: int | None,
    ) -> TaskInfo:
        return place(
            self.session.rest,
            Report(task_id, status, error, worker_id, attempt),
            stop=self.abort,
            deadline_seconds=self.report_timeout,
            outage=self.session.outage,
        )

    # -- running -------------------------------------------------------------

    def run(self, task: ClaimedTask[Any], execute: Execute) -> None:
        """start -> execute -> complete / fail; honours cancellation; never raises."""
        if not self._try_report(task, "running", None):
            return
        error: str | None = None
        finished = False
        try:
            execute(task)
            finished = True
        except TaskCancelledError:
            pass
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.exception("task %s raised", task.task_id)
        # Work that finished despite a shutdown request is still reported; work the
        # server cancelled, or that stopped for the shutdown, is not.
        if task.cancelled and not (finished and task.cancel_reason == SHUTDOWN_REASON):
            self.session.release(task)
            logger.info("task %s stopped (%s); not reporting it", task.task_id, task.cancel_reason)
            return
        self._try_report(task, "failed" if error else "completed", error)

    def _try_report(self, task: ClaimedTask[Any], status: str, error: str | None) -> bool:
        try:
            self.report(task, status, error)
            return True
        except StaleAttemptError as refusal:
            logger.warning(
                "task %s: %s report rejected as stale (attempt %s); the task was "
                "reassigned, dropping it: %s", task.task_id, status, task.attempt, refusal.detail,
            )  # fmt: skip
        except TaskCancelledError as cancelled:
            logger.info("task %s was cancelled on the server: %s", task.task_id, cancelled)
            task.mark_cancelled(str(cancelled))
            return False
        except WorkerGoneError:
            logger.warning("task %s: %s report refused, worker gone", task.task_id, status)
            self.session.worker_gone(task.worker_id, f"report of task {task.task_id}")
        except ServerError as refusal:
            logger.warning("task %s: %s report refused: %s", task.task_id, status, refusal)
        except ServerUnavailableError as failure:
            logger.error("task %s: %s report given up: %s", task.task_id, status, failure)
        task.mark_cancelled(f"{status} report not accepted")
        return False

    # -- background loops ----------------------------------------------------

    def claim_loop(self, execute: Execute, polling_interval: float) -> None:
        """Claim and run tasks one at a time until the manager stops or is drained (the
        task running when the drain arrives is finished first)."""
        s = self.session
        while not s.stop.is_set() and not s.draining.is_set():
            s.wake.clear()
            task = self._guarded("claim", self.claim)
            if task is not None:
                self.run(task, execute)
                continue
            s.wake.wait(polling_interval)

    def heartbeat_loop(self, interval: float) -> None:
        """First beat at once, then every `interval`; also rechecks held tasks."""
        s = self.session
        while not s.stop.is_set():
            self._guarded("heartbeat", lambda: self.beat(retry_seconds=interval))
            s.stop.wait(interval)

    def beat(self, retry_seconds: float = 0.0) -> None:
        """One heartbeat, retried for up to `retry_seconds` (a beat is safe to resend)."""
        s = self.session
        s.ensure_registered()
        worker_id = s.worker_id
        if worker_id is None:
            return
        try:
            retry_transient(
                lambda: s.rest.heartbeat(worker_id),
                stop=s.stop,
                deadline_seconds=retry_seconds,
                what="heartbeat",
                outage=s.outage,
            )
        except WorkerGoneError:
            s.worker_gone(worker_id, "heartbeat")
            return
        s.outage.recovered()
        for task in s.held_tasks():
            info = s.rest.get_task(task.task_id)
            if info.is_terminal or (info.attempt is not None and info.attempt != task.attempt):
                s.cancelled_by_server(task.task_id, None, f"task is {info.status} on the server")

    def _guarded(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as error:
            if self.session.stop.is_set():  # shutting down: requests may fail, say nothing
                logger.debug("%s during shutdown: %r", what, error)
            elif isinstance(error, ServerUnavailableError):
                self.session.outage.failed(what, error)
            elif isinstance(error, ServerError) and error.status in FATAL_STATUSES:
                self.fatal = error
                logger.error("%s refused (%s); stopping the worker", what, error)
                self.session.stop.set()
            elif isinstance(error, ServerError):
                logger.warning("%s refused: %s", what, error)
            else:
                logger.exception("%s failed", what)
        return None


def _errors(error: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in error.errors()]
    return "; ".join(parts)
