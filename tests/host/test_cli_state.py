"""The state from the shell: `workerledger status | workers | tasks | jobs` against a
running host (`--url`, REST) and directly against its SQLite file, `--version`,
`history` by id prefix, what `serve` prints when it starts, and an admin token kept
across restarts. One `workerledger serve` subprocess on a real SQLite file serves the
module; the commands run in this process (`workerledger.cli.main`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import workerledger
from workerledger.cli import main

PREFIX = "/v1/joblib"
TOKENS = {"tok-alice": {"user": "alice"}, "tok-admin": {"user": "admin", "superuser": True}}
WAIT = 30.0  # failure bound for the host to start, never a measured time
LAB_JOB = "lab:modifiers:Rotate"
GLOBAL_JOB = "@global:modifiers:Scale"


@dataclass
class Served:
    """One `workerledger serve` process; `lines` is what it printed up to its banner."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    url: str = ""

    @classmethod
    def start(cls, env: dict[str, str], cwd: Path, *flags: str) -> Served:
        command = [sys.executable, "-m", "workerledger", "serve", *flags]
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, text=True)
        served = cls(proc)
        banner = threading.Event()
        threading.Thread(target=served._read, args=(banner,), daemon=True).start()
        if not banner.wait(WAIT):
            served.stop()
            raise RuntimeError(f"serve did not start: {served.lines}")
        return served

    def _read(self, banner: threading.Event) -> None:
        for line in self.proc.stdout or ():
            self.lines.append(line.rstrip())
            if line.startswith("workerledger listening on "):
                self.url = line.split()[-1]
            if line.lstrip().startswith("API docs:"):
                banner.set()
        banner.set()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C: a graceful shutdown, exit 0
        return self.proc.wait(timeout=WAIT)


def clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("WORKERLEDGER_")}
    return env | {f"WORKERLEDGER_{name}": value for name, value in variables.items()}


@dataclass
class World:
    host: Served
    database_url: str
    worker: str  # alice's worker on lab:modifiers:Rotate
    admin_worker: str  # the admin's on @global:modifiers:Scale
    lab_tasks: list[str]  # submitted in room lab, oldest first; the first one claimed
    other_task: str  # submitted in room other for @global:modifiers:Scale


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("cli-state")
    database_url = f"sqlite:///{directory / 'state.db'}"
    env = clean_env(
        DATABASE_URL=database_url,
        AUTH_TOKENS=json.dumps(TOKENS),
        DISCONNECT_GRACE_SECONDS="0",
        ALLOWED_CATEGORIES="modifiers,selections",
    )
    host = Served.start(env, directory, "--port", "0")
    try:
        with httpx.Client(base_url=host.url + PREFIX, timeout=WAIT) as http:
            alice = {"Authorization": "Bearer tok-alice"}
            admin = {"Authorization": "Bearer tok-admin"}
            job = {"category": "modifiers", "name": "Rotate"}
            worker = http.put("/rooms/lab/jobs", json=job, headers=alice).json()["worker_id"]
            scale = {"category": "modifiers", "name": "Scale"}
            admin_worker = http.put("/rooms/@global/jobs", json=scale, headers=admin).json()[
                "worker_id"
            ]
            lab = [
                http.post(f"/rooms/lab/tasks/{LAB_JOB}", json={"payload": {"n": n}},
                          headers=alice).json()["id"]
                for n in range(3)
            ]  # fmt: skip
            other = http.post(f"/rooms/other/tasks/{GLOBAL_JOB}", json={"payload": {}},
                              headers=alice).json()["id"]  # fmt: skip
            claimed = http.post("/tasks/claim", json={"worker_id": worker}, headers=alice)
            assert claimed.json()["task"]["id"] == lab[0]
        yield World(host, database_url, worker, admin_worker, lab, other)
    finally:
        assert host.stop() == 0


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("WORKERLEDGER_"):
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    return json.loads(run(capsys, *argv, "--json"))


def by_url(world: World) -> list[str]:
    return ["--url", world.host.url, "--token", "tok-alice"]


def test_serve_says_what_it_opened_and_where_to_look(world):
    listening, database, settings, docs = world.host.lines[-4:]
    assert listening == f"workerledger listening on {world.host.url}"
    path = world.database_url.removeprefix("sqlite:///")
    assert database == f"  database: SQLite file {Path(path).resolve()}"
    assert settings.startswith("  settings: ")
    for changed in ("AUTH_TOKENS=(2 tokens, 1 superuser)", "DISCONNECT_GRACE_SECONDS=0",
                    "ALLOWED_CATEGORIES=modifiers,selections"):  # fmt: skip
        assert changed in settings
    assert "tok-alice" not in "\n".join(world.host.lines)  # tokens are counted, never shown
    assert docs == f"  API docs: {world.host.url}/docs   health check: {world.host.url}/healthz"
    assert httpx.get(f"{world.host.url}/docs").status_code == 200
    assert httpx.get(f"{world.host.url}/healthz").json() == {"status": "ok"}


def test_workers_from_the_host_and_from_the_database(capsys, world):
    over_rest = run_json(capsys, "workers", *by_url(world))
    assert [(w["id"], w["status"]) for w in over_rest["items"]] == [
        (world.worker, None),  # the host's API gives no states
        (world.admin_worker, None),
    ]
    direct = run_json(capsys, "workers", "--database-url", world.database_url)
    assert [(w["id"], w["status"], w["user"], w["holds"]) for w in direct["items"]] == [
        (world.worker, "online", "alice", 1),
        (world.admin_worker, "online", "admin", 0),
    ]
    text = run(capsys, "workers", "--database-url", world.database_url)
    assert world.worker[:8] in text and "online" in text and "alice" in text
    # the host's API gives no states: a state filter needs the database
    assert main(["workers", *by_url(world), "--status", "lost"]) == 2
    assert "--status needs the database" in capsys.readouterr().err


def test_tasks_across_rooms_and_filtered(capsys, world):
    db = ["--database-url", world.database_url]
    every = run_json(capsys, "tasks", *db)
    assert [t["id"] for t in every["items"]] == [*world.lab_tasks, world.other_task]
    pending = run_json(capsys, "tasks", *db, "--status", "pending", "--room", "lab")
    assert [t["id"] for t in pending["items"]] == world.lab_tasks[1:]
    assert [t["queue_position"] for t in pending["items"]] == [1, 2]
    held = run_json(capsys, "tasks", *db, "--worker", world.worker[:8])
    assert [(t["id"], t["status"], t["attempt"]) for t in held["items"]] == [
        (world.lab_tasks[0], "claimed", 1)
    ]
    newest = run_json(capsys, "tasks", *db, "--limit", "1")
    assert [t["id"] for t in newest["items"]] == [world.other_task] and newest["total"] == 4
    # over REST, per room: the same rows
    over_rest = run_json(capsys, "tasks", *by_url(world), "--room", "lab", "--status", "pending")
    assert over_rest == pending
    text = run(capsys, "tasks", *db)
    assert all(task[:8] in text for task in world.lab_tasks) and "pending #1" in text
    assert main(["tasks", *by_url(world)]) == 2
    assert "tasks --url needs --room" in capsys.readouterr().err


def test_jobs_from_the_host_and_from_the_database(capsys, world):
    direct = run_json(capsys, "jobs", "--database-url", world.database_url)
    assert [(j["full_name"], j["workers"], j["pending"]) for j in direct["items"]] == [
        (GLOBAL_JOB, [world.admin_worker], 1),
        (LAB_JOB, [world.worker], 2),
    ]
    lab = run_json(capsys, "jobs", *by_url(world), "--room", "lab")
    assert sorted(j["full_name"] for j in lab["items"]) == [GLOBAL_JOB, LAB_JOB]
    in_lab = run_json(capsys, "jobs", "--database-url", world.database_url, "--room", "lab")
    assert [j["full_name"] for j in in_lab["items"]] == [GLOBAL_JOB, LAB_JOB]
    assert LAB_JOB in run(capsys, "jobs", "--database-url", world.database_url)


def test_status_counts_workers_by_state_and_tasks_by_status(capsys, world):
    direct = run_json(capsys, "status", "--database-url", world.database_url)
    assert direct["workers"] == {"online": 2, "disconnected": 0, "lost": 0, "left": 0,
                                 "deleted": 0}  # fmt: skip
    assert direct["tasks"] == {"pending": 3, "claimed": 1, "running": 0, "completed": 0,
                               "failed": 0, "cancelled": 0}  # fmt: skip
    assert direct["jobs"] == {"listed": 2, "total": 2}
    assert direct["settings"]["DISCONNECT_GRACE_SECONDS"] == 10  # this shell's, the default
    over_rest = run_json(capsys, "status", *by_url(world), "--room", "lab")
    assert over_rest["healthy"] is True and over_rest["workers"] == {"live": 2}
    assert over_rest["tasks"]["pending"] == 2 and over_rest["tasks"]["claimed"] == 1
    text = run(capsys, "status", "--database-url", world.database_url)
    assert "workers: 2 online, 0 disconnected" in text and "tasks: 3 pending, 1 claimed" in text


def test_history_takes_the_short_id_the_tables_show(capsys, world):
    db = ["--database-url", world.database_url]
    text = run(capsys, "history", world.worker[:8], *db, "--short-ids")
    assert text.startswith(f"worker {world.worker[:8]}\n")
    assert f"claimed task {world.lab_tasks[0][:8]} (attempt 1)" in text
    assert world.lab_tasks[0] not in text  # every id shortened alike
    task = json.loads(run(capsys, "history", world.lab_tasks[0][:8], "--task", "--json", *db))
    assert task["task_id"] == world.lab_tasks[0]


def test_workers_show_a_draining_worker_from_the_host_and_the_database(capsys, world):
    alice = {"Authorization": "Bearer tok-alice"}
    job = {"category": "modifiers", "name": "Rotate"}
    with httpx.Client(base_url=world.host.url + PREFIX, timeout=WAIT, verify=False) as http:
        worker = http.put("/rooms/drainroom/jobs", json=job, headers=alice).json()["worker_id"]
        http.post("/rooms/drainroom/tasks/drainroom:modifiers:Rotate", json={"payload": {}},
                  headers=alice).raise_for_status()  # fmt: skip
        claimed = http.post("/tasks/claim", json={"worker_id": worker}, headers=alice).json()
        assert claimed["task"] is not None  # it holds a task, so the drain waits for it
        drained = http.post(f"/workers/{worker}/drain", json={"reason": "cli test"},
                            headers=alice)  # fmt: skip
        assert drained.status_code == 202, drained.text
        try:
            over_rest = run_json(capsys, "workers", *by_url(world))
            assert {w["id"]: w["draining"] for w in over_rest["items"]}[worker] is True
            assert "live, draining" in run(capsys, "workers", *by_url(world))
            direct = run_json(capsys, "workers", "--database-url", world.database_url)
            flags = {w["id"]: (w["status"], w["draining"]) for w in direct["items"]}
            assert flags[worker] == ("online", True)
            assert flags[world.worker] == ("online", False)
            text = run(capsys, "workers", "--database-url", world.database_url)
            assert "online, draining" in text
        finally:
            http.delete(f"/workers/{worker}", headers=alice).raise_for_status()


def test_version(capsys):
    assert run(capsys, "--version").startswith(f"workerledger {workerledger.__version__} ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_an_admin_token_file_keeps_the_token_across_restarts(tmp_path):
    # Given no AUTH_TOKENS, ADMIN_TOKEN_FILE, and the port from WORKERLEDGER_PORT
    path = tmp_path / "admin.token"
    port = str(free_port())
    env = clean_env(DATABASE_URL="memory://", ADMIN_TOKEN_FILE=str(path), PORT=port)
    # When serve starts the first time, it writes a new token there (0600) and shows it
    first = Served.start(env, tmp_path)
    try:
        assert first.url == f"http://127.0.0.1:{port}"
        token = path.read_text().strip()
        assert first.lines[0].endswith(f"(kept in {path}, reused at every start): {token}")
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        assert first.stop() == 0
    # And after a restart the same token works, and is not shown again
    second = Served.start(env, tmp_path)
    try:
        assert second.lines[0].endswith(f"admin token: the one kept in {path}")
        assert token not in "\n".join(second.lines)
        answer = httpx.get(f"{second.url}{PREFIX}/workers",
                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert answer.status_code == 200
    finally:
        assert second.stop() == 0
