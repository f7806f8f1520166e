"""One-way dependencies, checked by reading every import with `ast` (sub-packages too).

The rules are ARCHITECTURE.md's layer table: core <- adapters <- host_fastapi, the SDK
(client/) beside them, and each folder's third-party imports limited to what the table
names. One more rule holds outside core/: the core is used through its public API, the
package root `workerledger.core`, never through one of its modules, so that the core can
move code between its modules without touching a caller.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = "workerledger.core"
FOLDERS = {  # folder -> its import name (pyproject.toml's package-dir)
    "core": CORE,
    "adapters": "workerledger.adapters",
    "host_fastapi": "workerledger.host_fastapi",
    "client": "workerledger.client",
    "workerledger": "workerledger",
    "bench": "bench",
}
PYDANTIC = {"pydantic", "pydantic_core"}  # the core's value types are pydantic models
FASTAPI = {"fastapi", "starlette"}  # FastAPI's types are starlette's
SOCKETIO = {"socketio", "engineio"}  # python-socketio and its transport
# folder -> (first-party packages it may import, third-party top-level names it may import)
MAY_IMPORT: dict[str, tuple[set[str], set[str]]] = {
    "core": ({CORE}, PYDANTIC),
    "adapters": (
        {CORE, "workerledger.adapters"},
        # psycopg: the PostgreSQL driver the store hands to eventsourcing and SQLAlchemy;
        # redis: the provider result cache shared by several hosts (the `redis` extra);
        # prometheus_client: the host's /metrics (adapters/observability)
        {
            "eventsourcing",
            "prometheus_client",
            "sqlalchemy",
            "httpx",
            "psycopg",
            "redis",
            *SOCKETIO,
            *FASTAPI,
            *PYDANTIC,
        },
    ),
    "host_fastapi": (
        {CORE, "workerledger.adapters", "workerledger.host_fastapi"},
        # python-socketio: the host mounts the Socket.IO server next to the FastAPI app
        {"uvicorn", "pydantic_settings", *FASTAPI, *SOCKETIO, *PYDANTIC},
    ),
    "client": ({CORE, "workerledger.client"}, {"httpx", *SOCKETIO, *PYDANTIC}),
}
OUTSIDE_CORE = ("adapters", "host_fastapi", "client", "workerledger", "bench")


def is_within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_file(name: str) -> Path | None:
    """The file of first-party module `name`, or None (a name inside a module, or not ours)."""
    for folder, package in sorted(FOLDERS.items(), key=lambda item: -len(item[1])):
        if is_within(name, package):
            base = ROOT / folder / name.removeprefix(package).lstrip(".").replace(".", "/")
            for candidate in (base / "__init__.py", base.with_suffix(".py")):
                if candidate.is_file():
                    return candidate
            return None
    return None


@cache
def bound_by_package(package: str) -> frozenset[str]:
    """Names a package's __init__ binds to something other than its own submodule: there
    `from package import name` gets that object (the core's root re-exports the function
    `evolve` of its module `evolve`), not the submodule."""
    init = module_file(package)
    if init is None or init.name != "__init__.py":
        return frozenset()
    names: set[str] = set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return frozenset(names)


def is_module(name: str) -> bool:
    package, _, attribute = name.rpartition(".")
    return attribute not in bound_by_package(package) and module_file(name) is not None


def imported_modules(
    source: str, package: str, is_module: Callable[[str], bool] = lambda name: False
) -> set[str]:
    """Absolute names of every module `source` (a module of `package`) imports: relative
    imports resolved, and `from pkg import name` counted as `pkg.name` when that is a
    module itself (`from workerledger.core import events` imports a core module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = package.split(".")
                above = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{above}.{node.module}" if node.module else above
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names if is_module(f"{base}.{a.name}")}
    return names


def python_files(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).glob("**/*.py"))
    return [
        p for p in files if not any(part.startswith(".") for part in p.parts[len(ROOT.parts) :])
    ]


def imports_of(folder: str) -> dict[str, set[str]]:
    """{file: modules it imports} for every file of `folder`, sub-packages included."""
    out: dict[str, set[str]] = {}
    for path in python_files(folder):
        inner = path.relative_to(ROOT / folder).parent.parts
        package = ".".join([FOLDERS[folder], *inner])
        out[path.relative_to(ROOT).as_posix()] = imported_modules(
            path.read_text(), package, is_module
        )
    return out


def first_party(name: str) -> bool:
    return name.partition(".")[0] in {"workerledger", "bench"}


def offending(folder: str, bad: Callable[[str], bool]) -> dict[str, list[str]]:
    found = {f: sorted(n for n in names if bad(n)) for f, names in imports_of(folder).items()}
    return {f: names for f, names in found.items() if names}


def test_the_folders_hold_modules_and_sub_packages() -> None:
    assert len(python_files("core")) >= 5
    packages = {p.parent.relative_to(ROOT).as_posix() for p in python_files("adapters")}
    assert {"adapters", "adapters/store", "adapters/rest", "adapters/realtime"} <= packages
    assert "adapters/providers" in packages
    store = [
        names for f, names in imports_of("adapters").items() if f.startswith("adapters/store/")
    ]
    assert any(CORE in names for names in store)  # relative imports resolved from sub-packages


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_each_layer_imports_only_what_the_layer_table_allows(folder: str) -> None:
    ours, theirs = MAY_IMPORT[folder]

    def bad(name: str) -> bool:
        if first_party(name):
            return not any(is_within(name, package) for package in ours)
        top = name.partition(".")[0]
        return top not in sys.stdlib_module_names and top not in theirs

    assert offending(folder, bad) == {}


@pytest.mark.parametrize("folder", OUTSIDE_CORE)
def test_outside_the_core_only_its_public_api_is_imported(folder: str) -> None:
    assert offending(folder, lambda name: name.startswith(CORE + ".")) == {}


def test_the_scanner_finds_a_module_imported_by_name_from_its_package() -> None:
    assert module_file("workerledger.core.events") == ROOT / "core" / "events.py"
    assert module_file("workerledger.adapters.store") == ROOT / "adapters/store/__init__.py"
    assert module_file("workerledger.core.Event") is None
    assert module_file("fastapi") is None
    assert is_module("workerledger.core.events")
    assert not is_module("workerledger.core.evolve")  # the root binds the function `evolve`


@pytest.mark.parametrize(
    ("source", "package", "expected"),
    [
        ("import os.path, json", "workerledger.core", {"os.path", "json"}),
        ("from .events import Event", "workerledger.core", {"workerledger.core.events"}),
        (
            "from . import events",
            "workerledger.core",
            {"workerledger.core", "workerledger.core.events"},
        ),
        ("from ..host_fastapi import app", "workerledger.adapters", {"workerledger.host_fastapi"}),
        (
            "from ...core import fold",
            "workerledger.adapters.store",
            {"workerledger.core"},
        ),
        (
            "from workerledger.core import events as ev, fold",
            "workerledger.adapters",
            {"workerledger.core", "workerledger.core.events"},
        ),
        ("def f():\n    import fastapi", "workerledger.core", {"fastapi"}),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sqlalchemy import x",
            "workerledger.core",
            {"typing", "sqlalchemy"},
        ),
    ],
)
def test_the_scanner_sees_every_kind_of_import(
    source: str, package: str, expected: set[str]
) -> None:
    modules = {"workerledger.core.events"}
    assert imported_modules(source, package, modules.__contains__) == expected
