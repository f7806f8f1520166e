"""HostStateMachine against our own hosts: the reference host (`workerledger serve`),
the README's embedded host app ("Host App Integration", served as the README serves
it) and two `workerledger serve` hosts sharing PostgreSQL and Redis. Each run fails
with the first divergence between a host and the pure core's predictions."""

from __future__ import annotations

from pathlib import Path

import pytest
from hosts import ADMIN, ALICE, BOB, budget, serve, serve_module
from hypothesis.stateful import run_state_machine_as_test
from support.readme_blocks import Key, read_samples
from support.services import migrated_postgres, redis_prefix

from workerledger.testing import HostStateMachine, HostTarget, ModelPolicy, Token

ROOT = Path(__file__).resolve().parents[2]
SHORT = {  # short host settings, so the machine waits past deadlines within a run
    "disconnect_grace_seconds": 2,
    "claim_timeout_seconds": 4,
    "sweep_interval_seconds": 0.5,
    "heartbeat_timeout_seconds": 3,
}
SHORT_POLICY = ModelPolicy(
    grace_seconds=2,
    claim_timeout_seconds=4,
    sweep_interval_seconds=0.5,
    heartbeat_timeout_seconds=3,
)


def machine(target: HostTarget, policy: ModelPolicy) -> type[HostStateMachine]:
    return type("Machine", (HostStateMachine,), {"target": target, "policy": policy, "runs": []})


def run(cls: type[HostStateMachine], examples: int, steps: int) -> None:
    """Run the machine; it must have run steps (a host that answers nothing fails)."""
    run_state_machine_as_test(cls, settings=budget(examples, steps))
    assert cls.runs and sum(cls.runs) > len(cls.runs), cls.runs
    print(f"{cls.target.urls}: {len(cls.runs)} runs, {sum(cls.runs)} steps")


def test_the_reference_host_keeps_the_lifecycle(tmp_path: Path) -> None:
    with serve(tmp_path, database_url=f"sqlite:///{tmp_path / 'ref.db'}", **SHORT) as host:
        target = HostTarget([host.url], ALICE, other=BOB, admin=ADMIN)
        run(machine(target, SHORT_POLICY), 7, 20)
        assert "Traceback" not in host.output(), host.output()


def readme_host_module() -> str:
    (found,) = [s for s in read_samples(ROOT / "README.md")
                if Key("Host App Integration", "import logging").matches(s)]  # fmt: skip
    return found.text


def test_the_readme_host_app_keeps_the_lifecycle(tmp_path: Path) -> None:
    """The README's host: its own disconnect handler releases at once (grace 0), its
    sweeper runs every 5 s with the default 30 s claim lease; one token."""
    with serve_module(tmp_path, readme_host_module(), "myhost") as host:
        target = HostTarget([host.url], Token("secret-token", "alice"))
        policy = ModelPolicy(grace_seconds=0, claim_timeout_seconds=30, sweep_interval_seconds=5)
        run(machine(target, policy), 5, 15)
        assert "Traceback" not in host.output(), host.output()


@pytest.mark.services
def test_two_hosts_on_postgres_and_redis_keep_the_lifecycle(tmp_path: Path) -> None:
    """Requests and connections alternate between the hosts; the watcher is on the first,
    so the second's emissions reach it through Redis."""
    with migrated_postgres() as database, redis_prefix() as (redis_url, channel):
        shared = {"database_url": database, "socketio_manager_url": redis_url,
                  "socketio_channel": channel, **SHORT}  # fmt: skip
        with serve(tmp_path, **shared) as first, serve(tmp_path, **shared) as second:
            target = HostTarget([first.url, second.url], ALICE, other=BOB, admin=ADMIN)
            run(machine(target, SHORT_POLICY), 4, 15)
            for host in (first, second):
                assert "Traceback" not in host.output(), host.output()
