"""Render BENCHMARKS.md from bench/results/*.json.

Each result file is {"title", "command", "machine", "rows": [{"figure", "value", "unit",
"note"}]}. Optional, understood when present: per row "runs" (list of numbers; the value
is shown as median with min-max and n), "min" and "max"; per file "comparison" (the
side-by-side table of bench_peer.py), "goals" ([{"goal", "met", "detail"}]) and "notes"
([str]).

`python -m bench.report [--results-dir DIR] [--output FILE]` re-renders without running.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_ENV = "WORKERLEDGER_BENCH_RESULTS_DIR"
FIRST = ["peer"]


def results_dir() -> Path:
    """bench/results, or $WORKERLEDGER_BENCH_RESULTS_DIR when set (used by the smoke test)."""
    override = os.environ.get(RESULTS_ENV)
    return Path(override) if override else BENCH / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_description() -> str:
    return (
        f"{cores()} cores ({cpu_model()}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def fmt(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    number = float(value)
    if number != number:  # NaN
        return "n/a"
    magnitude = abs(number)
    if magnitude >= 100:
        return f"{number:,.0f}"
    if magnitude >= 10:
        return f"{number:.1f}"
    if magnitude >= 1:
        return f"{number:.2f}"
    if magnitude == 0:
        return "0"
    return f"{number:.3g}"


def shown_value(row: dict[str, Any]) -> str:
    runs = row.get("runs")
    if isinstance(runs, list) and len(runs) > 1:
        numbers = [float(v) for v in runs]
        median = statistics.median(numbers)
        value = row.get("value", median)
        return f"{fmt(value)} ({fmt(min(numbers))}-{fmt(max(numbers))}, n={len(numbers)})"
    if "min" in row and "max" in row and row["min"] != row["max"]:
        return f"{fmt(row['value'])} ({fmt(row['min'])}-{fmt(row['max'])})"
    return fmt(row.get("value"))


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def rows_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| figure | median (min-max, runs) | unit | note |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {cell(row.get('figure', ''))} | {shown_value(row)} | {cell(row.get('unit', ''))} "
            f"| {cell(row.get('note', ''))} |"
        )
    return lines


def spread_text(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "—"
    text = fmt(entry["median"])
    if entry.get("min") is not None and entry.get("min") != entry.get("max"):
        text += f" ({fmt(entry['min'])}-{fmt(entry['max'])})"
    runs = entry.get("runs")
    if isinstance(runs, list):
        text += f" n={len(runs)}"
    return text


def comparison_table(entries: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| workload | unit | zndraw-joblib | workerledger | workerledger / zndraw-joblib |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        ratio = entry.get("ratio")
        better = entry.get("better", "")
        ratio_text = "—" if ratio is None else f"**{fmt(ratio)}x** ({better} is better)"
        lines.append(
            f"| {cell(entry['figure'])} | {cell(entry.get('unit', ''))} "
            f"| {spread_text(entry.get('zndraw-joblib'))} "
            f"| {spread_text(entry.get('workerledger'))} | {ratio_text} |"
        )
    return lines


def goal_lines(goals: list[dict[str, Any]]) -> list[str]:
    lines = ["| goal | verdict | measured |", "|---|---|---|"]
    for goal in goals:
        verdict = {True: "met", False: "**MISSED**", None: "not measured"}.get(
            goal.get("met"), str(goal.get("met"))
        )
        lines.append(f"| {cell(goal['goal'])} | {verdict} | {cell(goal.get('detail', ''))} |")
    return lines


def load_results(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append((path.stem, json.loads(path.read_text())))
        except (OSError, ValueError) as error:
            found.append((path.stem, {"title": path.stem, "error": str(error), "rows": []}))
    order = {name: i for i, name in enumerate(FIRST)}
    found.sort(key=lambda item: (order.get(item[0], len(order)), item[0]))
    return found


def section(topic: str, data: dict[str, Any], machine: str) -> list[str]:
    lines = [f"## {data.get('title', topic)}", ""]
    if "error" in data:
        return [*lines, f"`bench/results/{topic}.json` could not be read: {data['error']}", ""]
    lines.append(f"Command: `{data.get('command', '?')}`  ")
    lines.append(f"Source: `bench/results/{topic}.json`")
    if data.get("machine") and data["machine"] != machine:
        lines[-1] += "  "
        lines.append(f"Machine: {data['machine']}")
    lines.append("")
    rows: list[dict[str, Any]] = list(data.get("rows") or [])
    if data.get("comparison"):
        lines += comparison_table(data["comparison"])
        lines.append("")
    if data.get("goals"):
        lines += goal_lines(data["goals"])
        lines.append("")
    if rows and data.get("comparison"):
        lines += ["<details><summary>All rows</summary>", ""]
        lines += rows_table(rows)
        lines += ["", "</details>", ""]
    elif rows:
        lines += rows_table(rows)
        lines.append("")
    for note in data.get("notes") or []:
        lines.append(f"- {note}")
    if data.get("notes"):
        lines.append("")
    return lines


def expected_topics() -> list[str]:
    return [path.stem.removeprefix("bench_") for path in sorted(BENCH.glob("bench_*.py"))]


def render(folder: Path | None = None, failures: list[str] | None = None) -> str:
    folder = folder or results_dir()
    machine = machine_description()
    results = load_results(folder)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench` (bench/report.py) from bench/results/*.json; "
        "do not edit by hand. -->",
        "",
        f"Rendered {now} on: {machine}.",
        "",
        "Rerun everything with `make bench` (or `.venv/bin/python -m bench`; `--quick` for "
        "smaller sizes, `--only NAME` for one module). Each section names the command that "
        "produced it. Values are medians with min-max over the runs where a row has runs.",
        "",
    ]
    present = {topic for topic, _ in results}
    missing = [topic for topic in expected_topics() if topic not in present]
    if missing or failures:
        lines.append("**Incomplete run.**")
        for topic in missing:
            lines.append(f"- no results for `{topic}` (bench/bench_{topic}.py)")
        for failure in failures or []:
            lines.append(f"- {failure}")
        lines.append("")
    if results:
        lines.append("Sections: " + ", ".join(data.get("title", t) for t, data in results) + ".")
        lines.append("")
    for topic, data in results:
        lines += section(topic, data, machine)
    return "\n".join(lines).rstrip() + "\n"


def write(
    output: Path | None = None, folder: Path | None = None, failures: list[str] | None = None
) -> Path:
    target = output or REPO / "BENCHMARKS.md"
    target.write_text(render(folder, failures))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("--results-dir", type=Path)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    print(f"wrote {write(args.output, args.results_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
