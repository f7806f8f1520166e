"""The distribution installs only the namespaced package `workerledger`."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("workerledger-*.whl")
    return built


def test_wheel_holds_only_the_workerledger_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {name.split("/", 1)[0] for name in names}
    assert {t for t in top_levels if not t.endswith(".dist-info")} == {"workerledger"}
    for layer in ("core", "adapters", "host_fastapi", "client"):
        assert f"workerledger/{layer}/__init__.py" in names
    assert "workerledger/py.typed" in names
    assert not any(name.startswith(("tests/", "bench/", "core/", "adapters/")) for name in names)


def test_wheel_installs_into_a_clean_venv_and_imports(wheel: Path, tmp_path: Path) -> None:
    # A clean venv gets the wheel alone; third-party dependencies are borrowed from the
    # dev venv through a plain path entry (its editable-install hook is not loaded).
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = (
        "import importlib.util, workerledger, workerledger.core, workerledger.adapters;"
        "from workerledger import handle, LedgerState;"
        "print(workerledger.__file__);"
        "spec = importlib.util.find_spec;"
        "print(spec('core') is None, spec('adapters') is None)"
    )
    result = subprocess.run(
        [python, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    location, no_generic_modules = result.stdout.splitlines()
    assert location.startswith(site)
    assert no_generic_modules == "True True"


def test_editable_install_maps_the_layers() -> None:
    import workerledger.adapters
    import workerledger.core

    assert Path(workerledger.core.__file__).parent == ROOT / "core"
    assert Path(workerledger.adapters.__file__).parent == ROOT / "adapters"
