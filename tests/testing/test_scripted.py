"""The machine's timeout and operator rules, scripted against the reference host: the
same rules Hypothesis draws from, called in a fixed order so that every CI run waits
past a heartbeat timeout (a REST-only worker and a connected one go silent), drains
a busy and an idle worker and requeues a running task. After each step the machine's
own check (`host_matches_the_model`) compares the host with the model; the test also
asserts what the model predicted, so a model that predicts nothing cannot pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hosts import ADMIN, ALICE, BOB, serve
from test_hosts import SHORT, SHORT_POLICY, machine
from workerledger.core import TaskStatus, WorkerStatus

from workerledger.testing import HostStateMachine, HostTarget, ModelPolicy


def step(m: HostStateMachine) -> None:
    m.host_matches_the_model()


def pick(candidates: list[str], wanted: str) -> int:
    assert wanted in candidates, (wanted, candidates)
    return candidates.index(wanted)


def newest_worker(m: HostStateMachine, before: set[str]) -> str:
    (worker_id,) = set(m.model.state.workers) - before
    return worker_id


def test_silence_drain_and_requeue_on_the_reference_host(tmp_path: Path) -> None:
    with serve(tmp_path, database_url=f"sqlite:///{tmp_path / 's.db'}", **SHORT) as host:
        cls = machine(HostTarget([host.url], ALICE, other=BOB, admin=ADMIN), SHORT_POLICY)
        m = cls()
        try:
            m.watch_the_room()
            m.register_worker(jobs=(0,), by_job=False, connect=False)
            step(m)
            rest_only = newest_worker(m, set())
            m.register_worker(jobs=(0,), by_job=True, connect=True)
            step(m)
            connected = newest_worker(m, {rest_only})
            m.submit(job=0, payload={"n": 1})
            step(m)
            m.claim(pick=pick(m.live(), rest_only))
            step(m)
            (held,) = m.model.state.workers[rest_only].tasks

            # both go silent; past the timeout the REST-only one is lost (its claim
            # requeued) and the connected one stays: the host's sweeper keeps it alive
            m.go_silent(pick=pick(m.silence_candidates(), rest_only), wait=False)
            step(m)
            m.go_silent(pick=pick(m.silence_candidates(), connected), wait=True)
            step(m)
            lost = m.model.state.workers[rest_only]
            assert lost.status is WorkerStatus.LOST, lost
            assert "heartbeat timeout" in str(lost.end_reason), lost.end_reason
            assert m.model.state.tasks[held].status is TaskStatus.PENDING
            assert m.model.state.workers[connected].status is WorkerStatus.ONLINE

            # it claims and starts the task; an operator requeues it (attempt fenced)
            m.claim(pick=pick(m.live(), connected))
            step(m)
            assert m.model.state.tasks[held].worker_id == connected
            m.report_progress(pick=0, status=TaskStatus.RUNNING)
            step(m)
            running = m.tasks_in(TaskStatus.CLAIMED, TaskStatus.RUNNING)
            m.requeue(pick=pick(running, held), by="admin", held=True)
            step(m)
            task = m.model.state.tasks[held]
            assert (task.status, task.attempt) == (TaskStatus.PENDING, 2), task
            m.report_stale_attempt(pick=pick(m.stale_candidates(), held),
                                   status=TaskStatus.COMPLETED)  # fmt: skip
            step(m)

            # drained while busy: claims nothing more, leaves once its task is released
            m.claim(pick=pick(m.live(), connected))
            step(m)
            m.drain(pick=pick(m.live(), connected), by="admin", deadline=None)
            step(m)
            assert m.model.state.workers[connected].draining
            m.submit(job=0, payload={"n": 2})
            step(m)
            m.claim(pick=pick(m.live(), connected))  # refused: it is draining
            step(m)
            assert m.model.state.workers[connected].tasks == {held}
            m.report_progress(pick=pick(m.tasks_in(TaskStatus.CLAIMED), held),
                              status=TaskStatus.FAILED)  # fmt: skip
            step(m)
            assert m.model.state.workers[connected].status is WorkerStatus.LEFT

            # another user may not drain; an idle worker drained by its owner leaves at once
            before = set(m.model.state.workers)
            m.register_worker(jobs=(1,), by_job=False, connect=True)
            step(m)
            idle = newest_worker(m, before)
            m.drain(pick=pick(m.live(), idle), by="other", deadline=None)
            assert m.model.outcomes[-1].refused == "forbidden", m.model.outcomes[-1]
            step(m)
            m.drain(pick=pick(m.live(), idle), by="owner", deadline=2.0)
            step(m)
            assert m.model.state.workers[idle].status is WorkerStatus.LEFT
        finally:
            m.teardown()
        assert "Traceback" not in host.output(), host.output()


RESUME = {  # a grace window longer than the heartbeat timeout plus the step margin
    "disconnect_grace_seconds": 5,
    "claim_timeout_seconds": 30,
    "sweep_interval_seconds": 0.5,
    "heartbeat_timeout_seconds": 1.5,
}
RESUME_POLICY = ModelPolicy(
    grace_seconds=5, claim_timeout_seconds=30, sweep_interval_seconds=0.5,
    heartbeat_timeout_seconds=1.5,
)  # fmt: skip


def test_a_resume_past_the_heartbeat_timeout_outlives_the_old_grace_deadline(
    tmp_path: Path,
) -> None:
    """`let_time_pass` between steps: a silent worker holding a claim is disconnected,
    time passes beyond its heartbeat timeout (within the grace window), it resumes, and
    time passes beyond the old grace deadline: it stays online with its claim (the
    grace timer's sweep must count the resume as a sign of life)."""
    with serve(tmp_path, database_url=f"sqlite:///{tmp_path / 'r.db'}", **RESUME) as host:
        cls = machine(HostTarget([host.url], ALICE, other=BOB, admin=ADMIN), RESUME_POLICY)
        m = cls()
        try:
            m.watch_the_room()
            m.register_worker(jobs=(0,), by_job=False, connect=True)
            step(m)
            worker_id = newest_worker(m, set())
            m.submit(job=0, payload={"n": 1})
            step(m)
            m.claim(pick=0)
            step(m)
            (held,) = m.model.state.workers[worker_id].tasks
            m.go_silent(pick=pick(m.silence_candidates(), worker_id), wait=False)
            step(m)
            m.disconnect(pick=0, abrupt=True)
            step(m)
            worker = m.model.state.workers[worker_id]
            assert worker.status is WorkerStatus.DISCONNECTED, worker
            assert worker.grace_deadline is not None
            old_deadline = worker.grace_deadline

            m.let_time_pass(seconds=2.0)  # past the heartbeat timeout, within grace
            step(m)
            assert m.steps[-1] == "2.00 s pass", m.steps
            beat = timedelta(seconds=RESUME_POLICY.heartbeat_timeout_seconds)
            assert datetime.now(UTC) - worker.last_heartbeat > beat
            assert m.within_grace() == [worker_id]
            m.reconnect_within_grace(pick=0)
            step(m)
            while datetime.now(UTC) <= old_deadline:  # past the old grace deadline
                m.let_time_pass(seconds=3.0)
                step(m)
            resumed = m.model.state.workers[worker_id]
            assert resumed.status is WorkerStatus.ONLINE, resumed
            assert resumed.tasks == {held}
            assert m.model.state.tasks[held].status is TaskStatus.CLAIMED
        finally:
            m.teardown()
        assert "Traceback" not in host.output(), host.output()
