"""What the host accepts it can store, read back and serve forever (issue 10): any JSON
value the API accepts as a payload comes back unchanged from `GET /tasks/{id}`, the
history endpoint, a restart from the read-model tables, `workerledger history --json`,
and `rebuild --check` still passes. A Hypothesis property against a real host.

(It lives beside the fault tests to share their real `workerledger serve` harness.)
"""

from __future__ import annotations

import functools
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli_runner import cli

from .fault_host import PREFIX, FaultHost

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)  # valid Unicode: Hypothesis never draws lone surrogates
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)
PAYLOADS = st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5)
ADMIN = {"Authorization": "Bearer tok-admin"}
ACCEPTED: list[tuple[str, dict[str, Any]]] = []  # (task id, payload) the host took


@functools.cache
def _job(url: str) -> str:
    """Register the job once per host (a worker is created with it)."""
    body = {"category": "modifiers", "name": "Echo"}
    answer = httpx.put(f"{url}{PREFIX}/rooms/lab/jobs", json=body, headers=ADMIN, timeout=10)
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["full_name"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=PAYLOADS)
def test_every_accepted_payload_is_served_back_unchanged(
    fault_host: FaultHost, payload: dict[str, Any]
) -> None:
    job = _job(fault_host.url)
    with httpx.Client(base_url=fault_host.url + PREFIX, headers=ADMIN, timeout=10) as api:
        submitted = api.post(f"/rooms/lab/tasks/{job}", json={"payload": payload})
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["id"]
        assert submitted.json()["payload"] == payload
        assert api.get(f"/tasks/{task_id}").json()["payload"] == payload
        history = api.get(f"/tasks/{task_id}/history").json()
        assert history["timeline"][0]["event"]["payload"] == payload
    ACCEPTED.append((task_id, payload))


def test_accepted_payloads_survive_a_restart_the_cli_and_a_rebuild_check(
    fault_host: FaultHost,
) -> None:
    assert ACCEPTED, "the property above ran first and stored payloads"
    fault_host.stop()  # the shutdown checkpoint writes the read-model tables
    again = FaultHost(fault_host.directory).start()
    try:
        with httpx.Client(base_url=again.url + PREFIX, headers=ADMIN, timeout=10) as api:
            for task_id, payload in ACCEPTED:
                assert api.get(f"/tasks/{task_id}").json()["payload"] == payload
    finally:
        again.stop()
    database = again.env["WORKERLEDGER_DATABASE_URL"]
    # the first through the real entry point, the others through its `main` in this process
    for index, (task_id, payload) in enumerate(ACCEPTED[:5]):
        shown = _cli("history", task_id, "--task", "--json", "--database-url", database,
                     process=index == 0)  # fmt: skip
        assert json.loads(shown)["timeline"][0]["event"]["payload"] == payload
    _cli("rebuild", "--check", "--database-url", database, process=True)
    fault_host.start()  # leave the module's host running for its teardown


def _cli(*args: str, process: bool) -> str:
    done = cli(*args, process=process)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
