"""How a host is started: the host names at the package root, `workerledger serve`, and
Settings read from the environment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import httpx


def test_package_root_exports_the_host_names_lazily():
    import workerledger

    for name in (
        "cleanup_worker", "register_socketio_handlers", "create_router", "create_app", "Settings"
    ):  # fmt: skip
        assert name in workerledger.__all__
        assert callable(getattr(workerledger, name))


async def test_serve_prints_a_token_and_the_real_port_then_answers_it():
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERLEDGER_")}
    env["WORKERLEDGER_DATABASE_URL"] = "memory://"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workerledger", "serve", "--port", "0",
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        token_line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        listening = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        token = token_line.rsplit(" ", 1)[1].strip()
        assert listening.startswith("workerledger listening on http://127.0.0.1:")
        url = listening.split(" on ", 1)[1].strip()
        assert not url.endswith(":0")
        async with httpx.AsyncClient(base_url=url) as client:
            headers = {"Authorization": f"Bearer {token}"}
            response = await client.get("/v1/joblib/workers", headers=headers)
            assert response.json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
            assert (await client.get("/v1/joblib/workers")).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: graceful shutdown, exit 0
        assert await asyncio.wait_for(proc.wait(), 30) == 0


def test_settings_read_the_environment(monkeypatch):
    from workerledger.host_fastapi.settings import Settings

    monkeypatch.setenv("WORKERLEDGER_AUTH_TOKENS", json.dumps({"t": {"user": "u"}}))
    monkeypatch.setenv("WORKERLEDGER_DISCONNECT_GRACE_SECONDS", "0")
    monkeypatch.setenv("WORKERLEDGER_ALLOWED_CATEGORIES", '["a", "b"]')
    settings = Settings()
    assert settings.auth_tokens is not None and settings.auth_tokens["t"].user == "u"
    assert settings.disconnect_grace_seconds == 0
    assert settings.allowed_categories == ("a", "b")
    assert Settings.model_fields["database_url"].default == "sqlite:///./workerledger.db"
