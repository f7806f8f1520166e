"""`python -m compat`: zndraw-joblib 0.1.7's own test suite against workerledger.

1. The peer's virtualenv (bench.peer_zndraw.ensure_venv) plus the peer's test tools.
2. The zndraw-joblib sdist from PyPI (`pip download`), into build/compat/sdist/.
3. Its tree unpacked into build/compat/run/; `tests/conftest.py` becomes
   `_peer_conftest.py` and compat/conftest_adapter.py takes its place (with
   classify.py and peer_side.py beside it); the test modules stay as shipped.
4. pytest in the peer's virtualenv; the adapter serves compat/host.py with this python.
5. build/compat/report.md and report.json from the classification and the junit xml.

Exit status: 0 when the suite ran (whatever it counted; `--strict`: 0 only when every
portable test passed), 2 when the harness itself could not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from bench.peer_zndraw import VERSION, ensure_venv

from .report import by_module, read_junit, render_markdown, summarise

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "compat"
WORK = ROOT / "build" / "compat"
TEST_TOOLS = ["pytest==9.0.2", "pytest-asyncio==1.3.0", "pytest-timeout==2.4.0"]
PEER_FILES = {  # compat file -> name in the peer's tests/
    "conftest_adapter.py": "conftest.py",
    "classify.py": "_compat_classify.py",
    "peer_side.py": "_compat_peer_side.py",
}


def step(message: str) -> None:
    print(f"[compat] {message}", flush=True)


def peer_python() -> Path:
    """The peer's virtualenv with pytest and its plugins at the peer's locked versions."""
    step("peer virtualenv (bench/.work; the first build takes about a minute) ...")
    python = ensure_venv()
    stamp = python.parent.parent / ".compat-test-tools.json"
    if stamp.exists() and json.loads(stamp.read_text()) == TEST_TOOLS:
        return python
    step(f"installing {', '.join(TEST_TOOLS)} into it ...")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *TEST_TOOLS], check=True)
    stamp.write_text(json.dumps(TEST_TOOLS))
    return python


def sdist(python: Path) -> Path:
    """The zndraw-joblib sdist, downloaded once into build/compat/sdist/."""
    folder = WORK / "sdist"
    found = sorted(folder.glob(f"zndraw_joblib-{VERSION}.tar.gz"))
    if found:
        step(f"sdist already downloaded: {found[0].relative_to(ROOT)}")
        return found[0]
    step(f"downloading the zndraw-joblib {VERSION} sdist from PyPI ...")
    folder.mkdir(parents=True, exist_ok=True)
    pip = [str(python), "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    only_sdist = ["--no-deps", "--no-binary", ":all:", f"zndraw-joblib=={VERSION}"]
    subprocess.run([*pip, *only_sdist, "-d", str(folder)], check=True)
    return next(folder.glob(f"zndraw_joblib-{VERSION}.tar.gz"))


def unpack(archive: Path) -> Path:
    """A fresh copy of the sdist's tree with the adapter in its tests/."""
    target = WORK / "run"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    project = target / f"zndraw_joblib-{VERSION}"
    tests = project / "tests"
    (tests / "conftest.py").rename(tests / "_peer_conftest.py")
    for source, name in PEER_FILES.items():
        shutil.copyfile(HERE / source, tests / name)
    step(f"unpacked into {project.relative_to(ROOT)}; adapter conftest in place")
    return project


def run_pytest(python: Path, project: Path, extra: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {
        "COMPAT_WL_PYTHON": sys.executable,
        "COMPAT_HOST_SCRIPT": str(HERE / "host.py"),
        "COMPAT_WORK_DIR": str(WORK / "host"),
        "COMPAT_CLASSIFICATION": str(WORK / "classification.json"),
    }
    shutil.rmtree(WORK / "host", ignore_errors=True)
    (WORK / "host").mkdir(parents=True)
    for stale in ("junit.xml", "classification.json"):
        (WORK / stale).unlink(missing_ok=True)
    command = [str(python), "-m", "pytest", "tests", "-p", "no:cacheprovider", "-q"]
    command += ["--timeout=120", f"--junitxml={WORK / 'junit.xml'}", "-o", "junit_family=xunit1"]
    step("running the peer's tests (one dot per test; 3-6 minutes) ...")
    with (WORK / "pytest.log").open("w") as log:
        process = subprocess.Popen(
            [*command, *extra], cwd=project, env=env, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
        return process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compat", description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="exit 1 if a portable test fails")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    python = peer_python()
    project = unpack(sdist(python))
    code = run_pytest(python, project, args.pytest_args)
    if code not in (0, 1) or not (WORK / "junit.xml").exists():
        step(f"pytest exited with {code}: the harness could not run the suite")
        return 2
    classification = json.loads((WORK / "classification.json").read_text())
    summary = summarise(classification, read_junit(WORK / "junit.xml"))
    seconds = time.monotonic() - started
    (WORK / "report.json").write_text(json.dumps(summary.as_dict(), indent=1))
    (WORK / "report.md").write_text(render_markdown(summary, version=VERSION, seconds=seconds))
    step(
        f"collected {summary.collected}, portable {summary.portable}, "
        f"passed {summary.passed}, failed {summary.failed}, skipped {summary.skipped} "
        f"({seconds:.0f} s)"
    )
    for module, count in by_module(summary).items():
        step(f"  failing in {module}: {count}")
    step(f"report: {(WORK / 'report.md').relative_to(ROOT)} (host log: build/compat/host/)")
    return 1 if args.strict and summary.failed else 0
