"""A host app of its own (README "Host App Integration") handles a SIGKILLed worker, and
uses only the public API: the package root `workerledger` and other packages."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest
import socketio
from test_layering import imported_modules  # the one import scanner of the suite

import workerledger

from .conftest import PREFIX, WAIT, Watcher, serve
from .embedded_host import build_app

JOB = "r1:modifiers:Rotate"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).with_name("embedded_host.py")


def readme_example() -> str:
    """The first python block of the README's "Host App Integration" section."""
    section = (ROOT / "README.md").read_text().split("\n## Host App Integration\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0] + "\n"


def example_code() -> str:
    """embedded_host.py without its module docstring."""
    source = EXAMPLE.read_text()
    docstring = ast.parse(source).body[0]
    assert isinstance(docstring, ast.Expr) and docstring.end_lineno is not None
    return "\n".join(source.splitlines()[docstring.end_lineno :]).lstrip("\n") + "\n"


def internal_imports(source: str) -> list[str]:
    """Modules `source` imports other than the package root `workerledger` and other
    packages: any `workerledger.<module>`, and relative imports (resolved under a
    `workerledger.embedder` package so that they count as internal too)."""
    names = imported_modules(source, "workerledger.embedder")
    return sorted(name for name in names if name.startswith("workerledger."))


def root_names(source: str) -> list[str]:
    return [
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module == "workerledger" and not node.level
        for alias in node.names
    ]


def test_the_readme_example_is_the_tested_host() -> None:
    assert readme_example() == example_code()


def test_the_scanner_flags_internal_modules_and_passes_the_root() -> None:
    source = (
        "import socketio, workerledger\nfrom workerledger import LedgerRuntime\n"
        "from workerledger.adapters.auth import StaticTokens\nimport workerledger.core\n"
        "from .helpers import x\n"
    )
    assert internal_imports(source) == [
        "workerledger.adapters.auth",
        "workerledger.core",
        "workerledger.embedder.helpers",
    ]


@pytest.mark.parametrize("name", ["README.md", "embedded_host.py"])
def test_the_example_imports_only_the_package_root(name: str) -> None:
    source = readme_example() if name == "README.md" else EXAMPLE.read_text()
    assert internal_imports(source) == []
    names = root_names(source)
    assert names, "the example imports nothing from workerledger"
    for imported in names:
        assert imported in workerledger.__all__, imported
        assert getattr(workerledger, imported) is not None


def test_every_public_name_resolves() -> None:
    missing = [name for name in workerledger.__all__ if not hasattr(workerledger, name)]
    assert missing == []
    assert isinstance(workerledger.InputLimits(), workerledger.InputLimits)


def test_the_router_and_handlers_take_what_they_need_and_change_nothing() -> None:
    runtime = workerledger.LedgerRuntime("memory://", authenticate=workerledger.StaticTokens({}))
    try:
        emitter = runtime.ledger.emitter
        with pytest.raises(ValueError, match="without this server"):
            workerledger.register_socketio_handlers(socketio.AsyncServer(), runtime)
        with pytest.raises(TypeError, match="waiters"):  # the older form, without waiters
            workerledger.create_router(runtime.ledger, runtime.authenticate)  # type: ignore[call-overload]
        older = workerledger.create_router(
            runtime.ledger, runtime.authenticate, waiters=runtime.waiters
        )
        assert older.routes and workerledger.create_router(runtime).routes
        assert runtime.ledger.emitter is emitter  # nothing was chained onto the ledger
    finally:
        runtime.ledger.close()


async def test_embedded_host_cleans_up_a_killed_worker(spawn_worker):
    async with serve(build_app("memory://")) as url:
        api = httpx.AsyncClient(
            base_url=url + PREFIX, headers={"Authorization": "Bearer secret-token"}, timeout=WAIT
        )
        watcher = await Watcher().start(url, "r1", token="secret-token")
        worker = await spawn_worker(url, "r1", "Rotate", token="secret-token")
        task = (await api.post(f"/rooms/r1/tasks/{JOB}", json={"payload": {}})).json()
        await worker.send("claim")
        assert (await worker.expect("claimed"))["task"]["id"] == task["id"]

        await worker.kill()

        requeued = await watcher.next(
            "task_status_event", id=task["id"], status="pending", attempt=1
        )
        assert requeued["worker_id"] is None
        assert (await api.get("/workers")).json()["items"] == []
        await watcher.client.disconnect()
        await api.aclose()
