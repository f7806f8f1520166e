"""Leaving: `with` exit, an exception in the block, idempotent and concurrent
`disconnect()`, and an unreachable server."""

from __future__ import annotations

import logging
import threading

import pytest
from client_support import USER_TOKEN, Host, wait_until
from support.jobs import Add
from workerledger.client.api import Rest, TokenApi
from workerledger.client.session import Job

from workerledger import JobManager


def room_events(host: Host, worker_id: str) -> list[str]:
    return [e["type"] for e in host.history(worker_id) if e["type"] in ("RoomJoined", "RoomLeft")]


def assert_left(host: Host, room: str, worker_id: str) -> None:
    """Gone at once: no waiting, the listings already say so."""
    assert worker_id not in host.worker_ids()
    assert worker_id not in host.job_workers(room, Add.full_name(room))
    assert room_events(host, worker_id) == ["RoomJoined", "RoomLeft"]
    assert host.history(worker_id)[-1]["type"] == "WorkerLeft"


def test_with_block_exit_removes_worker_room_membership_and_job_link(host: Host, room: str) -> None:
    # Given a worker registered for a job, with its room joined
    with host.manager() as manager:
        manager.register(Add, room=room)
        worker_id = manager.worker_id
        assert worker_id is not None
        assert worker_id in host.worker_ids()
        assert host.job_workers(room, Add.full_name(room)) == [worker_id]
        assert room_events(host, worker_id) == ["RoomJoined"]
    # When the block ends, then everything is gone at once
    assert_left(host, room, worker_id)
    assert manager.jobs == [] and len(manager) == 0


def test_exception_in_with_block_disconnects_and_is_reraised(host: Host, room: str) -> None:
    worker_id = None
    with pytest.raises(RuntimeError, match="boom"), host.manager() as manager:
        manager.register(Add, room=room)
        worker_id = manager.worker_id
        raise RuntimeError("boom")
    assert worker_id is not None
    assert_left(host, room, worker_id)


def test_register_works_as_a_decorator_and_shares_one_worker(host: Host, room: str) -> None:
    with host.manager() as manager:

        @manager.register(room=room)
        class Mul(Add):
            pass

        manager.register(Add, room=room)
        assert sorted(manager.jobs) == sorted([Mul.full_name(room), Add.full_name(room)])
        assert host.job_workers(room, Mul.full_name(room)) == [manager.worker_id]
        assert host.job_workers(room, Add.full_name(room)) == [manager.worker_id]


def test_disconnect_is_idempotent_and_thread_safe(host: Host, room: str) -> None:
    manager = host.manager()
    manager.register(Add, room=room)
    worker_id = manager.worker_id
    assert worker_id is not None
    threads = [threading.Thread(target=manager.disconnect) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    manager.disconnect()
    assert_left(host, room, worker_id)
    assert room_events(host, worker_id).count("RoomLeft") == 1


def test_disconnect_with_server_unreachable_is_bounded_and_says_so(
    fresh_host: Host, room: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = fresh_host.manager(shutdown_timeout=1.0, ack_timeout=1.0)
    manager.register(Add, room=room)
    worker_id = manager.worker_id
    fresh_host.kill()
    caplog.set_level(logging.INFO, logger="workerledger.client")
    manager.disconnect()  # returns (the test's timeout guards the bound)
    expected = f"could not remove worker {worker_id}: server unreachable"
    assert expected in caplog.text, caplog.text


def test_rest_only_worker_leaves_cleanly(host: Host, room: str) -> None:
    with host.manager(sio=False) as manager:
        manager.register(Add, room=room)
        worker_id = manager.worker_id
        assert worker_id is not None
        wait_until(lambda: worker_id in host.worker_ids(), what="worker listed")
    assert worker_id not in host.worker_ids()
    assert host.job_workers(room, Add.full_name(room)) == []


def test_construction_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKERLEDGER_TOKEN", raising=False)
    with pytest.raises(ValueError, match="token"):
        JobManager("http://127.0.0.1:9")


def test_a_retried_first_registration_does_not_create_a_second_worker(
    host: Host, room: str
) -> None:
    # Given the request the manager sends for its first registration, retried with the
    # same Idempotency-Key (as after a lost answer)
    api = TokenApi(host.url, USER_TOKEN)
    rest = Rest(api)
    body = Job(full_name=Add.full_name(room), room_id=room, cls=Add).body(None)
    first = rest.register_job(room, body, idempotency_key="retry-me")["worker_id"]
    again = rest.register_job(room, body, idempotency_key="retry-me")["worker_id"]
    api.close()
    # Then both answers name one worker, the only one linked to the job
    assert first == again
    assert host.job_workers(room, Add.full_name(room)) == [first]
