"""The worker's identity on the server: registered jobs, the server-assigned worker id,
room membership and heartbeats, with recovery when the server says the worker is gone.

All shared state lives here behind one lock. Registration (first and replacement) is
serialized by a second lock so that the heartbeat, claim and Socket.IO maintenance
threads never re-register twice for the same loss.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .api import Rest
from .errors import NotRegisteredError, ServerError, WorkerGoneError
from .models import ClaimedTask, Extension
from .realtime import AckError, SocketLink
from .retry import OutageLog, retry_transient

if TYPE_CHECKING:
    from .providers import ProviderRegistry

logger = logging.getLogger("workerledger.client")


@dataclass(frozen=True)
class Job:
    full_name: str
    room_id: str
    cls: type[Extension]

    def body(self, worker_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "category": str(self.cls.category),
            "name": self.cls.name_of_job(),
            "schema": self.cls.model_json_schema(),
        }
        if worker_id is not None:
            body["worker_id"] = worker_id
        for option in ("on_worker_lost", "max_worker_losses"):
            value = getattr(self.cls, option)
            if value is not None:
                body[option] = value
        return body


class Session:
    """State shared by the manager's threads; every method is thread-safe."""

    def __init__(self, rest: Rest, *, ack_timeout: float, startup_timeout: float) -> None:
        self.rest = rest
        self.link: SocketLink | None = None
        self.ack_timeout = ack_timeout
        self.startup_timeout = startup_timeout
        self.lock = threading.RLock()
        self.register_lock = threading.Lock()
        self.stop = threading.Event()  # the manager is shutting down
        self.draining = threading.Event()  # the server drained it: claim nothing, then leave
        self.wake = threading.Event()  # a task may be available
        self.outage = OutageLog(logger)
        self.jobs: dict[str, Job] = {}
        self.held: dict[str, ClaimedTask[Any]] = {}
        self.providers: ProviderRegistry | None = None  # set by the manager
        self._worker_id: str | None = None

    @property
    def worker_id(self) -> str | None:
        with self.lock:
            return self._worker_id

    def require_worker(self) -> str:
        worker_id = self.worker_id
        if worker_id is None:
            raise NotRegisteredError("no worker yet: register a job first")
        return worker_id

    def job(self, full_name: str) -> Job | None:
        with self.lock:
            return self.jobs.get(full_name)

    def adopt_worker(self, worker_id: str) -> None:
        """The worker a registration created (the first job or provider)."""
        with self.lock:
            self._worker_id = worker_id

    def registered(self) -> bool:
        """Whether anything (a job or a provider) is registered."""
        return bool(self.job_list()) or bool(self.providers is not None and len(self.providers))

    def job_list(self) -> list[Job]:
        with self.lock:
            return list(self.jobs.values())

    # -- registration --------------------------------------------------------

    def register(self, job: Job) -> None:
        """Register `job` over REST (creating the worker on first use), then join its room."""
        with self.register_lock:
            try:
                self._put_job(job, self.worker_id)
            except WorkerGoneError:
                self._reregister_locked(self.worker_id, "registration")
                self._put_job(job, self.worker_id)
            with self.lock:
                self.jobs[job.full_name] = job
        if self.link is not None and self.link.connected:
            self.join(job)

    def _put_job(self, job: Job, worker_id: str | None) -> None:
        # One key per logical registration: retries after a lost answer must not
        # create a second worker (the host maps the key to one worker id).
        key = None if worker_id is not None else f"wl-{uuid.uuid4()}"
        answer = retry_transient(
            lambda: self.rest.register_job(job.room_id, job.body(worker_id), idempotency_key=key),
            stop=self.stop,
            deadline_seconds=self.startup_timeout,
            what=f"register {job.full_name}",
            outage=self.outage,
        )
        if worker_id is None:
            new_id = answer.get("worker_id") if isinstance(answer, dict) else None
            if not new_id:
                raise ServerError(500, "no-worker-id", "registration answer carried no worker_id")
            with self.lock:
                self._worker_id = str(new_id)

    def worker_gone(self, gone_id: str, where: str) -> None:
        """The server answered worker-not-found for `gone_id`: become a new worker.

        Several threads may notice the same loss; only the first re-registers (the
        others see that the worker id already changed). Never runs while stopping or
        draining (a drained worker is ended by the server once it holds nothing).
        """
        with self.register_lock:
            if self.stop.is_set() or self.draining.is_set() or self.worker_id != gone_id:
                return
            self._reregister_locked(gone_id, where)
        self.announce()

    def _reregister_locked(self, gone_id: str | None, where: str) -> None:
        jobs = self.job_list()
        with self.lock:
            self._worker_id = None
            held = list(self.held.values())
            self.held.clear()
        for task in held:
            task.mark_cancelled("this worker was lost by the server; the task was released")
        for index, job in enumerate(jobs):
            self._put_job(job, None if index == 0 else self.worker_id)
        if self.providers is not None:  # they went with the worker on the server
            self.providers.reregister_locked()
        logger.warning(
            "worker %s is gone on the server (noticed on %s): re-registered as worker %s "
            "for %d job(s); its held tasks were released by the server",
            gone_id, where, self.worker_id, len(jobs),
        )  # fmt: skip
        self.wake.set()

    def ensure_registered(self) -> None:
        """Retry a re-registration that failed earlier (server unreachable at the time)."""
        with self.register_lock:
            if self.stop.is_set() or self.draining.is_set():
                return
            if self.worker_id is not None or not self.registered():
                return
            self._reregister_locked(None, "retry")
        self.announce()

    # -- rooms ---------------------------------------------------------------

    def join(self, job: Job) -> None:
        if self.join_room("join_job_room", "job_name", job.full_name):
            self.wake.set()

    def join_room(self, event: str, key: str, name: str) -> bool:
        """Send `event` `{key: name, worker_id}` and wait for its ack; False when there is
        no connection or worker yet, or the host refused (a lost worker is handled)."""
        worker_id = self.worker_id
        if self.link is None or worker_id is None:
            return False
        try:
            self.link.call(event, {key: name, "worker_id": worker_id}, self.ack_timeout)
        except AckError as error:
            if error.code == "worker-not-found":
                self.worker_gone(worker_id, event)
            else:
                logger.warning("%s %s refused: %s", event, name, error)
            return False
        return True

    def announce(self) -> None:
        """Join every job and provider room with the current worker id (after each
        (re)connect)."""
        worker_id = self.worker_id
        for job in self.job_list():
            if self.stop.is_set() or self.worker_id != worker_id:
                return  # stopping, or a re-registration announced itself already
            self.join(job)
        if self.providers is not None:
            self.providers.announce(worker_id)

    def leave_rooms(self, worker_id: str, timeout: float) -> int:
        """Leave every job and provider room (acknowledged); how many leaves were confirmed."""
        if self.link is None or not self.link.connected:
            return 0
        confirmed = self.providers.leave_rooms(worker_id, timeout) if self.providers else 0
        for job in self.job_list():
            data = {"job_name": job.full_name, "worker_id": worker_id}
            try:
                self.link.call("leave_job_room", data, timeout)
                confirmed += 1
            except AckError as error:
                if self.draining.is_set() and error.code in ("not-in-room", "worker-not-found"):
                    continue  # a drain took it out of its rooms (and may have ended it)
                logger.warning("leave_job_room %s not confirmed: %s", job.full_name, error)
        return confirmed

    # -- tasks held ----------------------------------------------------------

    def hold(self, task: ClaimedTask[Any]) -> None:
        with self.lock:
            self.held[task.task_id] = task

    def release(self, task: ClaimedTask[Any]) -> None:
        with self.lock:
            self.held.pop(task.task_id, None)

    def held_tasks(self) -> list[ClaimedTask[Any]]:
        with self.lock:
            return list(self.held.values())

    def cancelled_by_server(self, task_id: str, attempt: int | None, reason: str | None) -> None:
        with self.lock:
            task = self.held.get(task_id)
        if task is not None and (attempt is None or task.attempt in (None, attempt)):
            logger.info("task %s was cancelled on the server: %s", task_id, reason or "-")
            task.mark_cancelled(reason or "cancelled on the server")
