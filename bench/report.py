"""Render BENCHMARKS.md from bench/results/*.json.

Each result file is {"title", "command", "machine", "rows": [{"figure", "value", "unit",
"note"}]}. Optional, understood when present: per row "runs" (list of numbers; the value
is shown as median with min-max and n), "min" and "max"; per file "comparison" (the
side-by-side table of bench_peer.py), "goals" ([{"goal", "met", "detail"}]) and "notes"
([str]).

Labelled sets: `<topic>_<label>.json` files carrying a "label" (bench_pinned.py,
profile_host.py, bench_multihost.py --label) are rendered together, one section per
topic with the labels side by side ("before..." first, then "after...", then the rest),
so that figures of an older commit and of the current code sit in one table.

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
FIRST = ["peer", "pinned", "profile"]
LABELLED = ("pinned", "profile", "multihost")


def results_dir() -> Path:
    """bench/results, or $WORKERLEDGER_BENCH_RESULTS_DIR when set (used by the smoke test)."""
    override = os.environ.get(RESULTS_ENV)
    return Path(override) if override else BENCH / "results"


def write_results(name: str, document: dict[str, Any], folder: Path | None = None) -> Path:
    """Write `document` to `<folder or results_dir()>/<name>.json`; returns the path."""
    out = (folder or results_dir()) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    return out


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


def labelled_topic(stem: str, data: dict[str, Any]) -> str | None:
    """The topic of a labelled set's file (`pinned_before-e26eed2` -> `pinned`), else None."""
    topic, _, rest = stem.partition("_")
    if rest and topic in LABELLED and "label" in data:
        return topic
    return None


def label_order(data: dict[str, Any]) -> tuple[int, str]:
    label = str(data.get("label", ""))
    # before..., then intermediate after/<commit> sets, then the latest `after`, then the rest
    rank = 0 if label.startswith("before") else 1 if label.startswith("after/") else 2
    rank = 3 if rank == 2 and not label.startswith("after") else rank
    return rank, label


def spread_cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "—"
    text = fmt(stats["median"])
    if stats.get("min") is not None and stats.get("min") != stats.get("max"):
        text += f" ({fmt(stats['min'])}-{fmt(stats['max'])})"
    return text


def _header(title: str, sets: list[tuple[str, dict[str, Any]]], machine: str) -> list[str]:
    lines = [f"## {title}", ""]
    for stem, data in sets:
        lines.append(
            f"- `{data['label']}`: `{data.get('command', '?')}` -> `bench/results/{stem}.json`"
        )
        served = data.get("workerledger") or ""
        if served:
            lines[-1] += f"; {served}"
        if data.get("machine") and data["machine"] != machine:
            lines[-1] += f"; machine: {data['machine']}"
    lines.append("")
    return lines


def pinned_section(sets: list[tuple[str, dict[str, Any]]], machine: str) -> list[str]:
    lines = _header(sets[0][1].get("title", "pinned"), sets, machine)
    lines += [
        "| set | workers | workerledger host CPU per task (ms) | zndraw-joblib host CPU per "
        "task (ms) | CPU ratio zndraw-joblib / workerledger | host CPU per request (ms): "
        "workerledger / zndraw-joblib | throughput (tasks/s): workerledger / zndraw-joblib | "
        "floor: CPU per request, per 4 requests (ms) | floor ceiling (tasks/s) | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    goals: list[dict[str, Any]] = []
    for _stem, data in sets:
        for entry in data.get("summary") or []:
            wl, zn, fl = (entry.get(k) or {} for k in ("workerledger", "zndraw-joblib", "floor"))
            ratio = entry.get("cpu_ratio")
            floor_text = "—"
            if fl:
                per = fl["cpu_ms_per_request"]
                floor_text = f"{spread_cell(per)}, {fmt(4 * per['median'])}"
            loads = [x["loadavg"] for x in (wl, zn, fl) if x and "loadavg" in x]
            lines.append(
                f"| {cell(data['label'])} | {entry['workers']} "
                f"| {spread_cell(wl.get('cpu_ms_per_task'))} "
                f"| {spread_cell(zn.get('cpu_ms_per_task'))} "
                f"| {'—' if ratio is None else '**' + fmt(ratio) + 'x**'} "
                f"| {spread_cell(wl.get('cpu_ms_per_request'))} / "
                f"{spread_cell(zn.get('cpu_ms_per_request'))} "
                f"| {spread_cell(wl.get('tasks_per_s'))} / {spread_cell(zn.get('tasks_per_s'))} "
                f"| {floor_text} | {spread_cell(fl.get('tasks_per_s'))} "
                f"| {fmt(statistics.median(loads)) if loads else '—'} |"
            )
            if ratio is not None:
                goals.append(
                    {
                        "goal": f"`{data['label']}`: host CPU per task >= 10x lower than "
                        f"zndraw-joblib's at {entry['workers']} workers (aim: 15x)",
                        "met": ratio >= 10,
                        "detail": f"{fmt(ratio)}x; workerledger "
                        f"{fmt(wl['cpu_ms_per_task']['median'])} ms per task",
                    }
                )
    lines.append("")
    if goals:
        lines += goal_lines(goals)
        lines.append("")
    for note in sets[-1][1].get("notes") or []:
        lines.append(f"- {note}")
    for _stem, data in sets[:-1]:  # the other sets' failures and served installations
        for note in data.get("notes") or []:
            if note.startswith(("FAILED", "workerledger:", "Load average")):
                lines.append(f"- `{data['label']}`: {note}")
    lines.append("")
    for _stem, data in sets:
        lines += [f"<details><summary>All rows: {cell(data['label'])}</summary>", ""]
        lines += rows_table(list(data.get("rows") or []))
        lines += ["", "</details>", ""]
    return lines


def profile_table(entries: list[dict[str, Any]], total_own_ms: float) -> list[str]:
    lines = [
        "| # | function | calls | own ms per task | cumulative ms per task | share of own time |",
        "|---|---|---|---|---|---|",
    ]
    for index, entry in enumerate(entries, start=1):
        share = entry["own_ms"] / total_own_ms if total_own_ms else float("nan")
        lines.append(
            f"| {index} | `{cell(entry['function'])}` | {entry['calls']:,} "
            f"| {fmt(entry['own_ms_per_task'])} | {fmt(entry['cumulative_ms_per_task'])} "
            f"| {share:.1%} |"
        )
    return lines


def profile_section(sets: list[tuple[str, dict[str, Any]]], machine: str) -> list[str]:
    lines = _header(sets[0][1].get("title", "profile"), sets, machine)
    lines += [
        "cProfile in every thread of the host with the thread's CPU time as its clock "
        "(bench/profiled_serve.py), over the window from the first submit to the last "
        "completion of bench_pinned's load; the profiler's own cost inflates the host's CPU "
        "per task, so compare the entries' shares and ranks rather than the absolute times "
        "with bench_pinned's. The longer listings are the .txt files next to the .json.",
        "",
    ]
    for stem, data in sets:
        window = data.get("window") or {}
        total = float(window.get("profiled_own_ms") or 0.0)
        lines += [
            f"### `{data['label']}`",
            "",
            f"{data.get('tasks', '?')} tasks, {data.get('workers', '?')} workers; host CPU "
            f"under the profiler {fmt(window.get('host_cpu_ms_per_task'))} ms per task, "
            f"{fmt(window.get('tasks_per_s'))} tasks/s; profiled own time "
            f"{fmt(total)} ms ({window.get('threads', '')}); load average "
            f"{window.get('loadavg')}; listing `bench/results/{stem}.txt`.",
            "",
            f"Top {len(data.get('by_own') or [])} by own time:",
            "",
            *profile_table(data.get("by_own") or [], total),
            "",
            f"Top {len(data.get('by_cumulative') or [])} by cumulative time:",
            "",
            *profile_table(data.get("by_cumulative") or [], total),
            "",
        ]
    return lines


def multihost_section(sets: list[tuple[str, dict[str, Any]]], machine: str) -> list[str]:
    lines = _header(sets[0][1].get("title", "multihost"), sets, machine)
    lines += [
        "| set | hosts | task throughput (tasks/s) | commits per second | events per commit |",
        "|---|---|---|---|---|",
    ]
    for _stem, data in sets:
        for entry in data.get("summary") or []:
            lines.append(
                f"| {cell(data['label'])} | {entry['hosts']} "
                f"| {spread_cell(entry.get('tasks_per_second'))} "
                f"| {spread_cell(entry.get('commits_per_second'))} "
                f"| {spread_cell(entry.get('events_per_commit'))} |"
            )
    lines.append("")
    for note in sets[-1][1].get("notes") or []:
        lines.append(f"- {note}")
    lines.append("")
    return lines


SET_SECTIONS = {
    "pinned": pinned_section,
    "profile": profile_section,
    "multihost": multihost_section,
}


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
    sets: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    plain: list[tuple[str, dict[str, Any]]] = []
    for stem, data in results:
        topic = labelled_topic(stem, data)
        if topic is None:
            plain.append((stem, data))
        else:
            sets.setdefault(topic, []).append((stem, data))
    for found in sets.values():
        found.sort(key=lambda item: label_order(item[1]))
    present = {topic for topic, _ in plain} | set(sets)
    missing = [topic for topic in expected_topics() if topic not in present]
    if missing or failures:
        lines.append("**Incomplete run.**")
        for topic in missing:
            lines.append(f"- no results for `{topic}` (bench/bench_{topic}.py)")
        for failure in failures or []:
            lines.append(f"- {failure}")
        lines.append("")
    order = {name: i for i, name in enumerate(FIRST)}
    parts: list[tuple[tuple[int, str, int], str, list[str]]] = []
    for topic, data in plain:
        key = (order.get(topic, len(order)), topic, 0)
        parts.append((key, data.get("title", topic), section(topic, data, machine)))
    for topic, found in sets.items():
        key = (order.get(topic, len(order)), topic, 1)
        title = found[0][1].get("title", topic)
        parts.append((key, title, SET_SECTIONS[topic](found, machine)))
    parts.sort(key=lambda part: part[0])
    if parts:
        lines.append("Sections: " + ", ".join(title for _, title, _ in parts) + ".")
        lines.append("")
    for _key, _title, body in parts:
        lines += body
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
