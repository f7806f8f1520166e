"""HostStateMachine against zndraw-joblib 0.1.7 (its own virtualenv, bench/peer_zndraw).

The model's policy is 0.1.7's (`ZNDRAW_JOBLIB_017`: no grace window, no claim lease, a
RUNNING task of a worker that is gone fails). The peer host serves REST only (no
Socket.IO server, so no watcher and no worker connections), authenticates everyone as
one superuser, has no fencing fields and no history routes, so the machine runs with
`socketio=False, fencing=False, history=False, problem_codes=False`; a "disconnect" is
the worker's process going silent, which the lifecycle promises to release at once.

Each run is one search; a divergence ends it and is printed as found. The rules that
produced a finding are then left out (`--without`) to look for the next one, so the
printout is a list of distinct findings, not of one bug seen many times.

`python -m bench.testing_peer [--examples N] [--steps N] [--runs N]`
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis.stateful import run_state_machine_as_test

from bench import peer_zndraw
from workerledger.testing import (
    ZNDRAW_JOBLIB_017,
    Divergence,
    HostStateMachine,
    HostTarget,
    Token,
    machine_settings,
)

WORK = Path(__file__).resolve().parent / ".work"
PEER_USER = Token("any-token", "12345678-1234-5678-1234-567812345678", superuser=True)
# 0.1.7's default sweeper (60 s worker timeout, 30 s interval): a short timeout would reap
# the machine's idle workers too, which the machine does not heartbeat between steps
PEER_ENV: dict[str, str] = {}
RULES = ("disconnect", "leave", "report_stale_attempt", "send_hostile_input", "cancel",
         "report_progress", "forge_worker_id")  # fmt: skip


@contextmanager
def peer_host() -> Iterator[str]:
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK, prefix="testing-peer-") as folder:
        database = Path(folder) / "peer.db"
        with peer_zndraw.start_host(database, env=PEER_ENV) as server:
            yield server.base_url


def machine(url: str, without: set[str]) -> type[HostStateMachine]:
    target = HostTarget(
        [url], PEER_USER, socketio=False, fencing=False, history=False, problem_codes=False,
        wait_seconds=6,
    )  # fmt: skip
    body: dict[str, object] = {"target": target, "policy": ZNDRAW_JOBLIB_017, "runs": []}
    cls = type("PeerMachine", (HostStateMachine,), body)
    for name in without:  # a rule left out: never applicable
        rule = getattr(HostStateMachine, name)
        setattr(cls, name, _disabled(rule))
    return cls


def _disabled(rule: object) -> object:
    from hypothesis.stateful import precondition

    return precondition(lambda self: False)(rule)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--runs", type=int, default=5, help="searches at most")
    parser.add_argument("--shrink", action="store_true", help="shrink each finding (slow)")
    args = parser.parse_args(argv)
    installed = peer_zndraw.installed_version(peer_zndraw.ensure_venv())
    print(f"zndraw-joblib {installed} (its own virtualenv), policy ZNDRAW_JOBLIB_017")
    without: set[str] = set()
    findings = 0
    for run in range(1, args.runs + 1):
        with peer_host() as url:
            cls = machine(url, without)
            started = time.monotonic()
            try:
                run_state_machine_as_test(
                    cls, settings=machine_settings(args.examples, args.steps, shrink=args.shrink)
                )
            except (Divergence, ExceptionGroup) as error:
                found = _divergences(error)
                if not found:
                    raise
                seconds = time.monotonic() - started
                print(f"\nrun {run}: {len(cls.runs)} examples, {sum(cls.runs)} steps, "
                      f"{seconds:.0f} s, without {sorted(without)}")  # fmt: skip
                new = set()
                for divergence in found:
                    findings += 1
                    print(f"--- finding {findings} ---\n{divergence}")
                    culprit = _culprit(str(divergence))
                    if culprit is not None and culprit not in without:
                        new.add(culprit)
                if not new:
                    break
                without |= new
                continue
            print(f"\nrun {run}: no divergence in {len(cls.runs)} examples, {sum(cls.runs)} "
                  f"steps, without {sorted(without)}")  # fmt: skip
            break
    return 0


def _divergences(error: BaseException) -> list[Divergence]:
    if isinstance(error, Divergence):
        return [error]
    if isinstance(error, BaseExceptionGroup):
        return [d for sub in error.exceptions for d in _divergences(sub)]
    return []


def _culprit(report: str) -> str | None:
    """The rule of the last step of a divergence report."""
    last = [line.strip() for line in report.splitlines() if line.strip()[:1].isdigit()]
    step = last[-1] if last else ""
    keys = {
        "connection of": "disconnect", "DELETE": "leave", "stale report": "report_stale_attempt",
        "hostile input": "send_hostile_input", "cancels": "cancel",
        "holder reports": "report_progress",
        "forged": "forge_worker_id", "claims": "claim", "submit": "submit",
    }  # fmt: skip
    for text, rule in keys.items():
        if text in step:
            return rule
    return None


if __name__ == "__main__":
    sys.exit(main())
