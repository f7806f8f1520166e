"""What the adapter conftest needs, in the peer's virtualenv (copied in as
`tests/_compat_peer_side.py`; imports zndraw-joblib, never workerledger).

- `HostProcess`: workerledger's compat host (compat/host.py) in a subprocess run with
  workerledger's python, on 127.0.0.1 port 0; `reset()`, `configure()`, its log.
- `CompatApp`: what the peer's tests get as `app`: an ASGI app (so `TestClient(app)`
  works) that forwards every request to the host as one user, with the `state` and
  `dependency_overrides` the tests set. A mock `state.tsio` receives what the host put
  on the wire during that app's requests, decoded with the peer's event models; the
  taskiq handles of `state.internal_registry` receive what the host's executor was
  given; a `verify_writable_room` override names the room the host's policy refuses.
- `translate_row_deletes`: the peer's `DELETE FROM worker|provider WHERE id = ?` as a
  superuser REST DELETE (the only SQL the portable tests send to "their" database).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import HTTPException
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.datastructures import State
from zndraw_joblib import events as peer_events
from zndraw_joblib.dependencies import verify_writable_room
from zndraw_joblib.settings import JobLibSettings
from zndraw_socketio.wrapper import get_event_name

READY = "COMPAT_HOST_READY"
PREFIX = "/v1/joblib"
TIMEOUT = 30.0
# the peer's JobLibSettings names -> workerledger's LedgerPolicies fields
POLICY_NAMES = {
    "worker_timeout_seconds": "heartbeat_timeout_seconds",
    "sweeper_interval_seconds": "sweep_interval_seconds",
}
EVENT_MODELS: dict[str, type[Any]] = {
    get_event_name(cls): cls
    for cls in vars(peer_events).values()
    if isinstance(cls, type)
    and issubclass(cls, peer_events.FrozenEvent)
    and cls is not peer_events.FrozenEvent
}


def token(user: str, superuser: bool) -> str:
    return f"compat:{user}:{int(superuser)}"


def auth_headers(user: str, superuser: bool) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, superuser)}"}


class HostProcess:
    """The compat host subprocess; `url` once started."""

    def __init__(self, python: str, script: str, work_dir: Path, log: Path) -> None:
        self.command = [python, script, "--work-dir", str(work_dir)]
        self.log_path = log
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        self.control = httpx.Client(timeout=TIMEOUT)
        self._log = self.log_path.open("a")

    def start(self, timeout: float = 90.0) -> None:
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()))
        reader.start()
        reader.join(timeout)
        first = line[0] if line else ""
        if not first.startswith(READY):
            self.stop()
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"compat host did not start ({first!r}); log:\n{tail}")
        self.url = f"http://127.0.0.1:{int(first.split()[1])}"

    def stop(self) -> None:
        self.control.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def reset(self) -> None:
        self.control.post(f"{self.url}/compat/reset").raise_for_status()

    def configure(self, **policies: Any) -> None:
        resp = self.control.post(f"{self.url}/compat/configure", json={"policies": policies})
        if resp.status_code != 200:
            raise AssertionError(f"compat host cannot apply {policies}: {resp.text}")

    def log_after(self, cursor: int) -> tuple[int, list[dict[str, Any]]]:
        """The host's emits and `@internal` dispatches after `cursor`, and the next one."""
        resp = self.control.get(f"{self.url}/compat/log", params={"after": cursor})
        resp.raise_for_status()
        body = resp.json()
        return body["next"], body["items"]

    def cursor(self) -> int:
        return self.log_after(1 << 62)[0]

    def client(self, user: str, superuser: bool, app: CompatApp | None = None) -> httpx.Client:
        """An httpx.Client for `user`, bound to `app` (its own by default) as the peer's
        TestClient is: the app's overrides and state apply to its requests."""
        app = app or CompatApp(self, user, superuser)
        client = httpx.Client(base_url=self.url, headers=app.headers, timeout=TIMEOUT)
        client.app = app  # type: ignore[attr-defined]

        def before(request: httpx.Request) -> None:
            request.headers.update(app.steering(request.url.path))
            if app.watched():
                request.extensions["compat_cursor"] = self.cursor()

        def after(response: httpx.Response) -> None:
            cursor = response.request.extensions.get("compat_cursor")
            if cursor is not None:
                for result in app.replay(self.log_after(cursor)[1]):
                    settle(result)

        client.event_hooks = {"request": [before], "response": [after]}
        return client


def settle(result: Any) -> Any:
    """The value of `result`, awaited first if it is awaitable (an AsyncMock's call, an
    async override), from code that may or may not run inside an event loop."""
    if not inspect.isawaitable(result):
        return result

    async def wait() -> Any:
        return await result

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(wait())
        except BaseException as error:
            box["error"] = error

    runner = threading.Thread(target=run)
    runner.start()
    runner.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class HostSettings:
    """`app.state.joblib_settings`: reads give the peer's defaults; an assignment
    restarts the host's runtime with the matching `LedgerPolicies` field."""

    def __init__(self, host: HostProcess) -> None:
        object.__setattr__(self, "_host", host)
        object.__setattr__(self, "_values", JobLibSettings())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._values, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._values, name, value)
        self._host.configure(**{POLICY_NAMES.get(name, name): value})


class CompatApp:
    """The peer's `app`: an ASGI proxy to the host, as one user, whose
    `dependency_overrides` and `state` steer the host for its requests."""

    def __init__(self, host: HostProcess, user: str, superuser: bool) -> None:
        self.host = host
        self.headers = auth_headers(user, superuser)
        self.dependency_overrides: dict[Any, Any] = {}
        self.state = State()
        self.state.joblib_settings = HostSettings(host)

    def watched(self) -> bool:
        """True when a mock tsio or internal registry waits for what the host does."""
        return any(getattr(self.state, n, None) is not None for n in ("tsio", "internal_registry"))

    def steering(self, path: str) -> dict[str, str]:
        """Headers for a request to `path`: the room the writable-room override refuses
        (evaluated here, enforced by workerledger's room policy when it asks), and the
        `@internal` jobs the test's registry handles."""
        headers: dict[str, str] = {}
        override = self.dependency_overrides.get(verify_writable_room)
        parts = path.split("/")
        room = parts[parts.index("rooms") + 1] if "rooms" in parts[:-1] else None
        if override is not None and room is not None:
            try:
                settle(override(room_id=room))
            except HTTPException as refusal:
                headers["X-Compat-Locked-Room"] = json.dumps(
                    {"room": room, "status": refusal.status_code, "detail": refusal.detail}
                )
        registry = getattr(self.state, "internal_registry", None)
        if registry is not None:
            headers["X-Compat-Internal-Jobs"] = json.dumps(sorted(registry.tasks))
        return headers

    def replay(self, items: list[dict[str, Any]]) -> list[Any]:
        """Hand the host's emits to `state.tsio` and its dispatches to the registry's
        taskiq handles, as the peer's router does; returns what those calls returned."""
        tsio = getattr(self.state, "tsio", None)
        registry = getattr(self.state, "internal_registry", None)
        results = []
        for item in items:
            if item["kind"] == "emit" and tsio is not None:
                model = EVENT_MODELS.get(item["event"])
                if model is None:
                    raise AssertionError(
                        f"workerledger emitted {item['event']!r}, unknown to 0.1.7"
                    )
                results.append(
                    tsio.emit(model.model_validate(item["data"] or {}), room=item["room"])
                )
            elif item["kind"] == "dispatch" and registry is not None:
                handle = registry.tasks[item["job_name"]]
                results.append(
                    handle.kiq(
                        task_id=item["task_id"], room_id=item["room_id"], payload=item["payload"]
                    )
                )
        return results

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # nothing to start: the host is already up
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        watched = self.watched()
        cursor = await asyncio.to_thread(self.host.cursor) if watched else 0
        skip = {b"host", b"content-length", b"authorization"}
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.lower() not in skip]
        headers += [*self.headers.items(), *self.steering(scope["path"]).items()]
        query = scope.get("query_string", b"").decode()
        url = f"{self.host.url}{scope['path']}" + (f"?{query}" if query else "")
        async with httpx.AsyncClient(timeout=TIMEOUT) as forward:
            resp = await forward.request(scope["method"], url, headers=headers, content=body)
        if watched:
            _, items = await asyncio.to_thread(self.host.log_after, cursor)
            for result in self.replay(items):
                if inspect.isawaitable(result):
                    await result
        drop = {b"content-length", b"transfer-encoding", b"content-encoding"}
        out = [(k, v) for k, v in resp.headers.raw if k.lower() not in drop]
        out.append((b"content-length", str(len(resp.content)).encode()))
        await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
        await send({"type": "http.response.body", "body": resp.content})


_ROW_DELETE = re.compile(r"DELETE FROM (worker|provider) WHERE id = \?", re.IGNORECASE)


def translate_row_deletes(engine: Engine, admin: httpx.Client) -> None:
    """Before `engine` runs SQL: a row delete becomes `DELETE /workers|providers/{id}`
    as a superuser; any other statement fails the test (nothing else is translated)."""

    def before(_conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        found = _ROW_DELETE.fullmatch(statement.strip())
        if found is None:
            raise NotImplementedError(f"compat: no translation for SQL {statement!r}")
        ident = uuid.UUID(hex=str(params[0]))
        route = "workers" if found[1].lower() == "worker" else "providers"
        resp = admin.delete(f"{PREFIX}/{route}/{ident}")
        if resp.status_code != 204:
            raise AssertionError(f"compat: DELETE {route}/{ident} -> {resp.status_code}")

    event.listen(engine, "before_cursor_execute", before)
