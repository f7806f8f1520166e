"""zndraw-joblib 0.1.7 as a side-by-side peer, in its own virtualenv.

`ensure_venv()` creates `bench/.work/zndraw-joblib-0.1.7/` (gitignored) and installs
zndraw-joblib from PyPI into it; it is never a dependency of workerledger and is never
imported here. `start_host()` serves `host.py` with that venv's python on a free
loopback port.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.loadgen import ServerProcess, free_port

VERSION = "0.1.7"
WORK_DIR = Path(__file__).resolve().parent.parent / ".work"
HOST_FILE = Path(__file__).resolve().parent / "host.py"


class PeerUnavailable(RuntimeError):
    """The peer's virtualenv could not be created (e.g. PyPI unreachable)."""


def requirements() -> list[str]:
    """What the peer venv gets. uvicorn is pinned to workerledger's own version (with
    the same `standard` extras) so that both hosts run on the same server stack.
    SQLAlchemy is held below 2.1 because fastapi-users-db-sqlalchemy (pulled in by
    zndraw-auth) caps it there and pip's resolver gives up otherwise."""
    uvicorn = importlib.metadata.version("uvicorn")
    return [
        f"zndraw-joblib=={VERSION}",
        "sqlalchemy[asyncio]>=2.0,<2.1",
        f"uvicorn[standard]=={uvicorn}",
    ]


def venv_dir() -> Path:
    return WORK_DIR / f"zndraw-joblib-{VERSION}"


def venv_python() -> Path:
    return venv_dir() / "bin" / "python"


def ensure_venv(*, quiet: bool = True) -> Path:
    """Create (once) the peer's virtualenv and return its python."""
    target = venv_dir()
    stamp = target / ".bench-stamp.json"
    wanted = requirements()
    if stamp.exists() and venv_python().exists():
        try:
            if json.loads(stamp.read_text()) == wanted:
                return venv_python()
        except ValueError:
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    if not venv_python().exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(target)
    command = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        command.append("--quiet")
    try:
        done = subprocess.run(
            [*command, *wanted], capture_output=True, text=True, timeout=900, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise PeerUnavailable(f"pip install of zndraw-joblib timed out: {error}") from error
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        raise PeerUnavailable(f"pip install of {' '.join(wanted)} failed:\n{tail}")
    stamp.write_text(json.dumps(wanted))
    return venv_python()


def installed_version(python: Path) -> str:
    done = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(m.version('zndraw-joblib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@contextmanager
def start_host(
    database: Path,
    *,
    env: dict[str, str] | None = None,
    lock: bool = True,
    log_path: Path | None = None,
    prefix: list[str] | None = None,
) -> Iterator[ServerProcess]:
    """Serve zndraw-joblib on a fresh port; `env` adds ZNDRAW_JOBLIB_* settings;
    `prefix` goes before the command (the pinned bench's `taskset -c 0`)."""
    python = ensure_venv()
    port = free_port()
    command = [*(prefix or []), str(python), str(HOST_FILE)]
    command += ["--port", str(port), "--database", str(database)]
    if not lock:
        command.append("--no-lock")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("ZNDRAW_JOBLIB_")}
    child_env.pop("PYTHONPATH", None)
    child_env.update(env or {})
    server = ServerProcess(
        name="zndraw-joblib",
        command=command,
        env=child_env,
        base_url=f"http://127.0.0.1:{port}",
        log_path=log_path,
    )
    with server:
        yield server


if __name__ == "__main__":
    print(ensure_venv(quiet=False))
    sys.exit(0)
