"""The `make compat` harness's own logic, without network or the peer's virtualenv:
which peer tests are portable (compat/classify.py), and the report made from a junit
xml (compat/report.py) and the compat host's token check (compat/host.py)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from compat.classify import NO_SERVER, NOT_PORTABLE, classify  # noqa: E402
from compat.host import authenticate  # noqa: E402
from compat.report import area_of, read_junit, render_markdown, summarise  # noqa: E402
from workerledger import Actor  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5">
 <testcase classname="tests.test_router_jobs" file="tests/test_router_jobs.py"
   name="test_register_job" time="0.1"/>
 <testcase classname="tests.test_providers" file="tests/test_providers.py"
   name="test_register_provider" time="0.1">
  <failure message="assert 404 == 201&#10;second line">tests/test_providers.py:31: in x
E   assert 404 == 201</failure></testcase>
 <testcase classname="tests.test_serve.TestLoop" file="tests/test_serve.py"
   name="test_e2e[a-1]" time="0.1">
  <error message="failed on setup with &quot;RuntimeError: boom&quot;">trace</error>
 </testcase>
 <testcase classname="tests.test_client" file="tests/test_client.py"
   name="test_skipped" time="0"><skipped message="not here"/></testcase>
 <testcase classname="tests.test_resilience" file="tests/test_resilience.py"
   name="test_disconnect_still_cleans_local_state" time="0.1">
  <failure message="KeyError: 'Not Found'">manager.register_provider(_FsProvider)
KeyError: 'Not Found'</failure></testcase>
</testsuite></testsuites>
"""

PORTABLE = {"portable": True, "reason": "through the fixtures"}
CLASSIFICATION = {
    "tests/test_router_jobs.py::test_register_job": PORTABLE,
    "tests/test_providers.py::test_register_provider": PORTABLE,
    "tests/test_serve.py::TestLoop::test_e2e[a-1]": PORTABLE,
    "tests/test_client.py::test_skipped": PORTABLE,
    "tests/test_resilience.py::test_disconnect_still_cleans_local_state": PORTABLE,
    "tests/test_ordering.py::test_never_ran": PORTABLE,
    "tests/test_sweeper.py::test_a": {"portable": False, "reason": "peer tables"},
    "tests/test_sweeper.py::test_b": {"portable": False, "reason": "peer tables"},
    "tests/test_client.py::test_category_enum": {"portable": False, "reason": NO_SERVER},
}


def test_classify_by_module_and_fixtures() -> None:
    sweeper = classify("tests/test_sweeper.py::test_x", ["async_session_factory", "client"])
    assert not sweeper.portable and sweeper.reason == NOT_PORTABLE["test_sweeper.py"]
    assert classify("tests/test_client.py::test_j[m]", ["api", "client"]).portable
    pure = classify("tests/test_client.py::test_category_enum", ["request"])
    assert not pure.portable and pure.reason == NO_SERVER
    deleting = classify(
        "tests/test_resilience.py::test_h", ["threadsafe_client", "threadsafe_engine"]
    )
    assert deleting.portable and "DELETE FROM worker" in deleting.reason


def test_report_from_junit(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    outcomes = read_junit(junit)
    assert [o.nodeid for o in outcomes][2] == "tests/test_serve.py::TestLoop::test_e2e[a-1]"
    summary = summarise(CLASSIFICATION, outcomes)
    assert (summary.collected, summary.portable) == (9, 6)
    assert summary.not_portable == {"peer tables": 2, NO_SERVER: 1}
    assert (summary.passed, summary.failed, summary.skipped) == (1, 3, 1)
    assert summary.not_run == ["tests/test_ordering.py::test_never_ran"]
    reasons = {f["nodeid"].rsplit("::", 1)[-1]: (f["area"], f["reason"]) for f in summary.failures}
    assert reasons["test_register_provider"] == ("providers", "assert 404 == 201")
    assert reasons["test_e2e[a-1]"] == ("other", 'failed on setup with "RuntimeError: boom"')
    assert reasons["test_disconnect_still_cleans_local_state"][0] == "providers"
    markdown = render_markdown(summary, version="0.1.7", seconds=12.3)
    assert "| 9 | 6 | 3 | 1 | 3 | 1 |" in markdown
    assert "### providers (2)" in markdown and "test_never_ran" in markdown


def test_area_guesses() -> None:
    assert area_of("tests/test_router_jobs.py::test_submit_internal_job", "") == "@internal jobs"
    assert area_of("tests/test_writable_room.py::test_x_by_writable_room", "") == (
        "writable-room hook"
    )
    assert area_of("tests/test_router_jobs.py::test_list", "assert 1 == 2") == "other"


def test_compat_tokens() -> None:
    assert authenticate("compat:1234-abcd:1") == Actor(user="1234-abcd", superuser=True)
    assert authenticate("compat:a:b:0") == Actor(user="a:b", superuser=False)
    for refused in ("compat:u:2", "compat::1", "compat:u", "u:1", ""):
        assert authenticate(refused) is None
