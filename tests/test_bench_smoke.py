"""Smoke test of the benchmark suite (bench/): the runner, the side-by-side peer
benchmark and the report, on tiny sizes. The benchmark itself is not part of the test
suite; this only checks that its code runs.

Selected with `pytest -m slow tests/test_bench_smoke.py` (or `-k bench_smoke`). It needs
zndraw-joblib's own virtualenv under bench/.work/, created from PyPI on first use; when
that is impossible the test is skipped, unless WORKERLEDGER_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import peer_zndraw, report  # noqa: E402

TINY = [
    "--runs",
    "1",
    "--tasks",
    "12",
    "--workers",
    "1",
    "3",
    "--holding",
    "1",
    "4",
    "--kills",
    "1",
    "--short-timeout",
    "1",
    "--short-interval",
    "1",
    "--short-heartbeat",
    "0.3",
]


def peer_python() -> Path:
    try:
        return peer_zndraw.ensure_venv()
    except peer_zndraw.PeerUnavailable as error:
        message = f"zndraw-joblib's virtualenv cannot be created (PyPI unreachable?): {error}"
        if os.environ.get("WORKERLEDGER_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " (WORKERLEDGER_REQUIRE_SERVICES=1)")
        pytest.skip(message)


@pytest.mark.slow
@pytest.mark.timeout(300)  # the first run also creates the peer's virtualenv
def test_runner_and_peer_benchmark_run_on_tiny_sizes(tmp_path: Path) -> None:
    peer_python()
    results = tmp_path / "results"
    output = tmp_path / "BENCHMARKS.md"
    env = {k: v for k, v in os.environ.items() if k != report.RESULTS_ENV}
    command = [sys.executable, "-m", "bench", "--only", "peer"]
    command += ["--results-dir", str(results), "--output", str(output), "--", *TINY]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    data = json.loads((results / "peer.json").read_text())
    assert {"title", "command", "machine", "rows"} <= data.keys()
    assert data["rows"], data
    for row in data["rows"]:
        assert {"figure", "value", "unit", "note"} <= row.keys()
        assert isinstance(row["value"], int | float)
    figures = " ".join(row["figure"] for row in data["rows"])
    assert "(a) throughput, 3 workers" in figures
    assert "(b) DELETE" in figures
    assert "(c) death -> release" in figures
    exactly_once = [g for g in data["goals"] if "exactly once" in g["goal"]]
    assert exactly_once and exactly_once[0]["met"] is True, data["goals"]

    markdown = output.read_text()
    assert "# Benchmarks" in markdown
    assert "Side by side with zndraw-joblib 0.1.7" in markdown
    assert "Python " in markdown and "cores" in markdown
    assert data["command"] in markdown
    assert "=== [1/1] bench_peer: ok" in done.stdout


def test_report_renders_median_with_min_max_and_the_command(tmp_path: Path) -> None:
    (tmp_path / "store.json").write_text(
        json.dumps(
            {
                "title": "Event store",
                "command": "python -m bench.bench_store --quick",
                "machine": "somewhere else",
                "rows": [
                    {"figure": "append", "value": 2.0, "unit": "ms", "note": "", "runs": [3, 1, 2]},
                    {"figure": "rebuild", "value": 1500, "unit": "ms", "note": "a | b"},
                ],
            }
        )
    )
    (tmp_path / "broken.json").write_text("{not json")
    markdown = report.render(tmp_path, failures=["bench_x exited with 1"])
    assert "## Event store" in markdown
    assert "`python -m bench.bench_store --quick`" in markdown
    assert "| append | 2.00 (1.00-3.00, n=3) | ms |" in markdown
    assert "| rebuild | 1,500 | ms | a \\| b |" in markdown
    assert "Machine: somewhere else" in markdown
    assert "could not be read" in markdown
    assert "bench_x exited with 1" in markdown


def test_report_renders_labelled_sets_side_by_side_before_first(tmp_path: Path) -> None:
    def pinned(label: str, wl: float, zn: float) -> dict[str, object]:
        def stats(value: float) -> dict[str, float]:
            return {"median": value, "min": value, "max": value}

        figures = {"cpu_ms_per_request": stats(wl / 4), "tasks_per_s": stats(100.0)}
        return {
            "title": "Per core",
            "label": label,
            "command": f"python -m bench.bench_pinned --label {label}",
            "summary": [
                {
                    "workers": 4,
                    "workerledger": {"cpu_ms_per_task": stats(wl), **figures, "loadavg": 2.0},
                    "zndraw-joblib": {"cpu_ms_per_task": stats(zn), **figures, "loadavg": 2.0},
                    "cpu_ratio": zn / wl,
                }
            ],
            "rows": [],
        }

    (tmp_path / "pinned_after.json").write_text(json.dumps(pinned("after", 2.0, 30.0)))
    (tmp_path / "pinned_before-e26eed2.json").write_text(
        json.dumps(pinned("before/e26eed2", 5.0, 30.0))
    )
    entry = {"function": "fastapi/routing.py:1(app)", "calls": 9, "own_ms": 50.0}
    entry |= {"cumulative_ms": 80.0, "own_ms_per_task": 0.05, "cumulative_ms_per_task": 0.08}
    (tmp_path / "profile_before-e26eed2.json").write_text(
        json.dumps(
            {
                "title": "Profile",
                "label": "before/e26eed2",
                "window": {"profiled_own_ms": 200.0},
                "by_own": [entry],
                "by_cumulative": [entry],
            }
        )
    )
    markdown = report.render(tmp_path)
    assert markdown.count("## Per core") == 1
    before = markdown.index("| before/e26eed2 | 4 | 5.00 | 30.0 | **6.00x** |")
    after = markdown.index("| after | 4 | 2.00 | 30.0 | **15.0x** |")
    assert before < after
    assert "at 4 workers (aim: 15x) | **MISSED** | 6.00x" in markdown
    assert "at 4 workers (aim: 15x) | met | 15.0x" in markdown
    assert "| 1 | `fastapi/routing.py:1(app)` | 9 | 0.05 | 0.08 | 25.0% |" in markdown
    assert "no results for `pinned`" not in markdown
