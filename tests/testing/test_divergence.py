"""HostStateMachine finds a broken host: the README's host app with a disconnect handler
that forgets to release the connection's workers (a host author's likely slip). A
dropped worker must be lost at once (grace 0); the machine reports the first step after
which the host still shows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hosts import budget, serve_module
from hypothesis.stateful import run_state_machine_as_test
from test_hosts import machine, readme_host_module

from workerledger.testing import Divergence, HostTarget, ModelPolicy, Token

CLEANUP = "await cleanup_worker(runtime.ledger, worker_id, sid, reason=str(reason))"


def broken_host_module() -> str:
    source = readme_host_module()
    assert CLEANUP in source
    return source.replace(CLEANUP, "pass  # forgot: cleanup_worker(...)")


def test_a_host_that_forgets_disconnect_cleanup_is_reported(tmp_path: Path) -> None:
    with serve_module(tmp_path, broken_host_module(), "brokenhost") as host:
        target = HostTarget([host.url], Token("secret-token", "alice"), wait_seconds=2)
        policy = ModelPolicy(grace_seconds=0, claim_timeout_seconds=30, sweep_interval_seconds=0)
        with pytest.raises(Divergence) as found:
            run_state_machine_as_test(machine(target, policy), settings=budget(30, 20))
    report = str(found.value)
    assert "host diverged from the model after step" in report, report
    assert "torn down" in report or "closed" in report, report  # the disconnect step
    assert "'online'" in report or "workers" in report, report  # still shown as live
