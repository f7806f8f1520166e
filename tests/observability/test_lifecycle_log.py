"""Lifecycle lines: one INFO line per transition with the ids to grep for, from a real
host (caplog), and from `workerledger serve` as text and as JSON (its stderr)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from host.conftest import WAIT
from workerledger.adapters.observability.log_format import JsonFormatter

from .steps import LeftRooms, claim, connect, drop, new_worker, report, submit

LIFECYCLE = "workerledger.lifecycle"


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LIFECYCLE]


def reason_of_drops(caplog: pytest.LogCaptureFixture) -> str:
    """The one reason every recorded disconnect gave."""
    (reason,) = {
        r.reason for r in caplog.records if getattr(r, "event", None) == "worker_disconnected"
    }
    return str(reason)


def record_of(caplog: pytest.LogCaptureFixture, event: str) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == event]
    return record


async def test_a_workers_life_is_logged_with_its_ids(start_host, caplog):
    # Given a host with a grace window and the lifecycle logger at INFO
    caplog.set_level(logging.INFO, logger=LIFECYCLE)
    left_rooms = LeftRooms()
    running = await start_host(disconnect_grace_seconds=300, emitters=[left_rooms])
    api, admin = running.api(), running.api("tok-admin")

    # When worker A registers, serves a provider, runs one task and holds another,
    a = await new_worker(api)
    body = {"category": "filesystem", "name": "files", "worker_id": a}
    provider = (await api.put("/rooms/r1/providers", json=body)).json()
    running_task, claimed_task = await submit(api), await submit(api)
    assert (await claim(api, a))["id"] == running_task
    assert (await report(api, running_task, "running", a, 1)).status_code == 200
    assert (await claim(api, a))["id"] == claimed_task
    # drops its connection, comes back within the window and drops again,
    first_sid = await drop(running, a, left_rooms)
    back = await connect(running, a)
    second_sid = str(back.get_sid())
    await back.disconnect()
    await left_rooms.wait_for(second_sid)
    # then leaves; its old claim is reported late; and bob's worker is deleted by admin
    assert (await api.delete(f"/workers/{a}")).status_code == 204
    c = await new_worker(api)
    assert (await claim(api, c))["id"] == claimed_task
    assert (await report(api, claimed_task, "running", a, 1)).status_code == 409
    b = await new_worker(running.api("tok-bob"))
    assert (await admin.delete(f"/workers/{b}")).status_code == 204

    # Then each transition is one line naming its ids
    logged = lines(caplog)
    name = "r1:filesystem:files"
    why = reason_of_drops(caplog)  # python-socketio's words for a closed client
    expected = [
        f"worker {a} registered (user alice)",
        f"provider {name} registered (id {provider['id']}, worker {a})",
        f"worker {a} connected (sid {first_sid})",
        f"worker {a} disconnected ({why}; sid {first_sid}); grace until ",
        f"worker {a} connected (sid {second_sid}",
        f"worker {a} resumed (sid {second_sid})",
        f"worker {a} left (by alice); released: requeued [{claimed_task}], failed [{running_task}]",
        f"task {claimed_task} requeued (worker {a} ended: left; attempt 1)",
        f"task {running_task} failed (worker {a} ended: left; attempt 1)",
        f"provider {name} removed (worker left; id {provider['id']}, worker {a})",
        f"stale report refused: task {claimed_task} running by worker {a} attempt 1 "
        "(task at attempt 2; user alice)",
        f"worker {b} registered (user bob)",
        f"worker {b} deleted (by admin); released: requeued [], failed []",
    ]
    for line in expected:
        assert sum(entry.startswith(line) for entry in logged) >= 1, (line, logged)
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == LIFECYCLE)
    # and the ids are record fields too, which the JSON format writes out
    left = record_of(caplog, "worker_left")
    fields = json.loads(JsonFormatter().format(left))
    assert (fields["level"], fields["logger"]) == ("INFO", LIFECYCLE)
    assert fields["worker_id"] == a and fields["cause"] == "left"
    assert (fields["requeued"], fields["failed"]) == ([claimed_task], [running_task])
    assert fields["message"] == left.getMessage()


async def test_a_drop_without_grace_logs_the_loss_and_each_task_released(start_host, caplog):
    # Given a host without grace and a worker holding one claimed task
    caplog.set_level(logging.INFO, logger=LIFECYCLE)
    left_rooms = LeftRooms()
    running = await start_host(disconnect_grace_seconds=0, emitters=[left_rooms])
    api = running.api()
    a = await new_worker(api)
    task = await submit(api)
    assert (await claim(api, a))["id"] == task

    # When its connection drops
    sid = await drop(running, a, left_rooms)

    # Then the disconnect, the loss and the requeue are logged in that order
    logged = [line for line in lines(caplog) if a in line]
    why = reason_of_drops(caplog)
    assert logged[-3:] == [
        f"worker {a} disconnected ({why}; sid {sid}); no grace",
        f"worker {a} lost (disconnected ({why})); released: requeued [{task}], failed []",
        f"task {task} requeued (worker {a} ended: disconnect; attempt 1)",
    ]
    requeued = record_of(caplog, "task_requeued")
    fields = (requeued.task_id, requeued.worker_id, requeued.cause)
    assert fields == (task, a, "disconnect")


@asynccontextmanager
async def serving(*flags: str) -> AsyncIterator[tuple[str, asyncio.StreamReader]]:
    """`workerledger serve` on memory:// with alice's token; (base URL, its stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERLEDGER_")}
    env["WORKERLEDGER_DATABASE_URL"] = "memory://"
    env["WORKERLEDGER_AUTH_TOKENS"] = json.dumps({"tok-alice": {"user": "alice"}})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workerledger", "serve", "--port", "0", *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        listening = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert listening.startswith("workerledger listening on "), listening
        yield listening.split(" on ", 1)[1].strip(), proc.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 30)


async def read_until(stderr: asyncio.StreamReader, needle: str) -> list[str]:
    """Lines of `stderr` up to and including the first one holding `needle`."""
    seen: list[str] = []
    while not seen or needle not in seen[-1]:
        line = await asyncio.wait_for(stderr.readline(), WAIT)
        assert line, f"serve closed its stderr before {needle!r}: {seen}"
        seen.append(line.decode().rstrip("\n"))
    return seen


async def register_and_leave(url: str) -> str:
    headers = {"Authorization": "Bearer tok-alice"}
    async with httpx.AsyncClient(base_url=url + "/v1/joblib", headers=headers) as http:
        job = {"category": "modifiers", "name": "Rotate"}
        worker_id = str((await http.put("/rooms/r1/jobs", json=job)).json()["worker_id"])
        assert (await http.delete(f"/workers/{worker_id}")).status_code == 204
    return worker_id


async def test_serve_prints_lifecycle_lines_by_default_and_no_access_log():
    async with serving() as (url, stderr):
        worker_id = await register_and_leave(url)
        seen = await read_until(stderr, f"worker {worker_id} left (by alice)")
    registered = [line for line in seen if f"worker {worker_id} registered" in line]
    assert len(registered) == 1
    assert f" INFO {LIFECYCLE}: worker {worker_id} registered (user alice)" in registered[0]
    assert not any("/v1/joblib/rooms/r1/jobs" in line for line in seen)  # access log off


async def test_serve_json_format_writes_one_object_per_line_with_the_ids():
    async with serving("--log-format", "json", "--access-log") as (url, stderr):
        worker_id = await register_and_leave(url)
        seen = await read_until(stderr, '"worker_left"')
    records = [json.loads(line) for line in seen]  # every line is one JSON object
    left = records[-1]
    assert (left["event"], left["worker_id"], left["logger"]) == (
        "worker_left", worker_id, LIFECYCLE,
    )  # fmt: skip
    assert left["level"] == "INFO" and left["time"].endswith("+00:00")
    assert any(
        r.get("event") == "worker_registered" and r["worker_id"] == worker_id for r in records
    )
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert any(
        (r["method"], r["path"], r["status"]) == ("PUT", "/v1/joblib/rooms/r1/jobs", 201)
        for r in access
    ), access


def test_serve_takes_log_format_and_access_log_from_flags_then_variables():
    from workerledger.cli import build_parser
    from workerledger.cli_errors import ConfigError
    from workerledger.cli_host import serve_options

    def chosen(argv: list[str], env: dict[str, str]) -> tuple[str, bool]:
        options = serve_options(build_parser().parse_args(["serve", *argv]), env)
        return options.log_format, options.access_log

    assert chosen([], {}) == ("text", False)
    env = {"WORKERLEDGER_LOG_FORMAT": "JSON", "WORKERLEDGER_ACCESS_LOG": "true"}
    assert chosen([], env) == ("json", True)
    assert chosen(["--log-format", "text", "--no-access-log"], env) == ("text", False)
    for wrong in ({"WORKERLEDGER_LOG_FORMAT": "xml"}, {"WORKERLEDGER_ACCESS_LOG": "loud"}):
        with pytest.raises(ConfigError, match=next(iter(wrong))):
            serve_options(build_parser().parse_args(["serve"]), wrong)
