"""The real host of the fault tests: `python -m workerledger serve --port 0` on a fresh
SQLite file, with short claim leases, ready once it prints `workerledger listening on`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

TOKEN = "tok-alice"
TOKENS = {TOKEN: {"user": "alice"}, "tok-admin": {"user": "admin", "superuser": True}}
LISTENING = "workerledger listening on "
PREFIX = "/v1/joblib"
CLAIM_TIMEOUT_SECONDS = 2.0  # a CLAIMED task nobody started is requeued after this


class FaultHost:
    def __init__(self, directory: Path, **settings: object) -> None:
        self.env = {
            **os.environ,
            "WORKERLEDGER_DATABASE_URL": f"sqlite:///{directory / 'faults.db'}",
            "WORKERLEDGER_AUTH_TOKENS": json.dumps(TOKENS),
            "WORKERLEDGER_DISCONNECT_GRACE_SECONDS": "0",
            "WORKERLEDGER_HEARTBEAT_TIMEOUT_SECONDS": "30",
            "WORKERLEDGER_SWEEP_INTERVAL_SECONDS": "0.5",
            "WORKERLEDGER_CLAIM_TIMEOUT_SECONDS": str(CLAIM_TIMEOUT_SECONDS),
        }
        self.env.update({f"WORKERLEDGER_{k.upper()}": str(v) for k, v in settings.items()})
        self.directory = directory  # also the working directory: nothing shadows the package
        self.url = ""
        self.output: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60.0) -> FaultHost:
        command = [sys.executable, "-m", "workerledger", "serve", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*command, "--port", "0"],
            env=self.env,
            cwd=self.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        listening = threading.Event()
        threading.Thread(target=self._read, args=(self.proc, listening), daemon=True).start()
        if not listening.wait(timeout):
            self.stop()
            raise RuntimeError("host did not listen:\n" + "\n".join(self.output[-40:]))
        return self

    def _read(self, proc: subprocess.Popen[str], listening: threading.Event) -> None:
        for line in proc.stdout or ():
            self.output.append(line.rstrip())
            if line.startswith(LISTENING):
                self.url = line.removeprefix(LISTENING).strip()
                listening.set()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def get(self, path: str, token: str = "tok-admin") -> Any:
        """The decoded answer of a GET, or None for 404."""
        headers = {"Authorization": f"Bearer {token}"}
        answer = httpx.get(f"{self.url}{PREFIX}{path}", headers=headers, timeout=10)
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return answer.json()
