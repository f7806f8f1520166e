"""Summarise a compat run: the classification the adapter wrote and pytest's junit xml.

`summarise()` gives the counts (collected, portable, not portable by reason, passed,
failed, skipped) and every failing test with a short reason and a feature-area guess
(`area_of`), `render_markdown()` the report. Pure stdlib.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .classify import module_of

REASON_CHARS = 220


@dataclass(frozen=True)
class Outcome:
    nodeid: str
    outcome: str  # passed | failed | error | skipped
    message: str = ""  # the first line of the failure
    text: str = ""  # the whole failure (traceback), for `area_of`


@dataclass
class Summary:
    collected: int
    portable: int
    not_portable: dict[str, int]  # reason -> count
    passed: int
    failed: int
    skipped: int
    failures: list[dict[str, str]] = field(default_factory=list)  # nodeid, area, reason
    not_run: list[str] = field(default_factory=list)  # portable but absent from the xml

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _nodeid(case: ET.Element) -> str:
    """The pytest node id of a junit testcase (xunit1: `file` and dotted `classname`)."""
    file = case.get("file") or ""
    module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
    classname = case.get("classname") or ""
    classes = classname[len(module) + 1 :].split(".") if classname.startswith(module + ".") else []
    if not file:  # xunit2 has no `file`: rebuild it from the dotted classname
        parts = classname.split(".")
        file, classes = "/".join(parts) + ".py", []
    return "::".join([file, *[c for c in classes if c], case.get("name") or ""])


def _short(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 3] + "..."


def read_junit(path: Path) -> list[Outcome]:
    outcomes = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message, text = "passed", "", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = "failed" if tag == "failure" else tag
                message = _short(found.get("message") or found.text or "")
                text = found.text or ""
                break
        outcomes.append(Outcome(_nodeid(case), outcome, message, text))
    return outcomes


def area_of(nodeid: str, text: str) -> str:
    """A guess at the feature a failing test needs (from its name, module and
    traceback), for grouping the report; the reason beside it is the evidence."""
    name = nodeid.rsplit("::", 1)[-1].lower()
    if module_of(nodeid) == "test_providers.py" or "provider" in name:
        return "providers"
    if "/providers" in text or "register_provider(" in text:
        return "providers"
    if "internal" in name:
        return "@internal jobs"
    if "writable_room" in name:
        return "writable-room hook"
    return "other"


def summarise(classification: dict[str, dict[str, Any]], outcomes: list[Outcome]) -> Summary:
    portable = {n for n, v in classification.items() if v["portable"]}
    not_portable = Counter(v["reason"] for v in classification.values() if not v["portable"])
    ran = {o.nodeid: o for o in outcomes}
    failures = [
        {"nodeid": o.nodeid, "area": area_of(o.nodeid, o.text), "reason": o.message}
        for o in outcomes
        if o.outcome in ("failed", "error")
    ]
    return Summary(
        collected=len(classification),
        portable=len(portable),
        not_portable=dict(not_portable.most_common()),
        passed=sum(o.outcome == "passed" for o in outcomes),
        failed=len(failures),
        skipped=sum(o.outcome == "skipped" for o in outcomes),
        failures=sorted(failures, key=lambda f: (f["area"], f["nodeid"])),
        not_run=sorted(portable - ran.keys()),
    )


def render_markdown(summary: Summary, *, version: str, seconds: float) -> str:
    lines = [
        f"# zndraw-joblib {version} test suite against workerledger",
        "",
        f"Run time: {seconds:.0f} s.",
        "",
        "| collected | portable | not portable | passed | failed | skipped |",
        "|---|---|---|---|---|---|",
        f"| {summary.collected} | {summary.portable} | {sum(summary.not_portable.values())} "
        f"| {summary.passed} | {summary.failed} | {summary.skipped} |",
        "",
        "## Not portable",
        "",
        *[f"- {count}: {reason}" for reason, count in summary.not_portable.items()],
    ]
    by_area = Counter(f["area"] for f in summary.failures)
    lines += ["", "## Failures", ""]
    for area, count in sorted(by_area.items()):
        lines += [f"### {area} ({count})", ""]
        for failure in summary.failures:
            if failure["area"] == area:
                lines.append(f"- `{failure['nodeid']}`: {failure['reason']}")
        lines.append("")
    if summary.not_run:
        lines += ["## Portable but not run", "", *[f"- `{n}`" for n in summary.not_run], ""]
    return "\n".join(lines) + "\n"


def by_module(summary: Summary) -> dict[str, int]:
    """Failures per test module (for the console summary)."""
    return dict(Counter(module_of(f["nodeid"]) for f in summary.failures).most_common())
