"""One-way dependencies, checked by reading imports with `ast`: core <- adapters <- host.

- every module in core/ imports only the standard library, pydantic and its own package;
- adapters/ never imports the FastAPI host;
- core/ never imports adapters/ or the host.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"core": "workerledger.core", "adapters": "workerledger.adapters"}


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute names of every module `source` imports (relative ones resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.add(node.module or "")
                continue
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            names.add(f"{base}.{node.module}" if node.module else base)
    return names


def modules_of(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob("**/*.py"))


def imports_of(folder: str) -> dict[str, set[str]]:
    return {
        path.relative_to(ROOT).as_posix(): imported_modules(path.read_text(), PACKAGES[folder])
        for path in modules_of(folder)
    }


def is_within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_folders_hold_modules() -> None:
    assert len(modules_of("core")) >= 5
    assert modules_of("adapters")


def test_core_imports_only_the_standard_library_pydantic_and_itself() -> None:
    offending = {
        module: sorted(
            name
            for name in names
            if name.partition(".")[0] not in sys.stdlib_module_names
            and not is_within(name, "pydantic")
            and not is_within(name, "workerledger.core")
        )
        for module, names in imports_of("core").items()
    }
    assert {module: names for module, names in offending.items() if names} == {}


def test_core_never_imports_adapters_or_the_host() -> None:
    forbidden = (
        "workerledger.adapters",
        "workerledger.host_fastapi",
        "adapters",
        "host_fastapi",
    )
    offending = {
        module: sorted(n for n in names if any(is_within(n, f) for f in forbidden))
        for module, names in imports_of("core").items()
    }
    assert {module: names for module, names in offending.items() if names} == {}


def test_adapters_never_import_the_host() -> None:
    forbidden = ("workerledger.host_fastapi", "host_fastapi")
    offending = {
        module: sorted(n for n in names if any(is_within(n, f) for f in forbidden))
        for module, names in imports_of("adapters").items()
    }
    assert {module: names for module, names in offending.items() if names} == {}


@pytest.mark.parametrize(
    ("source", "package", "expected"),
    [
        ("import os.path, json", "workerledger.core", {"os.path", "json"}),
        ("from .events import Event", "workerledger.core", {"workerledger.core.events"}),
        ("from . import events", "workerledger.core", {"workerledger.core"}),
        ("from ..host_fastapi import app", "workerledger.adapters", {"workerledger.host_fastapi"}),
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
    assert imported_modules(source, package) == expected
