"""`workerledger drain | requeue | remove`: operator commands against a running host.

Each sends one operator route (`POST /v1/joblib/workers/{id}/drain`, `.../remove`,
`/tasks/{id}/requeue`) to `--url` with `--token` (or WORKERLEDGER_TOKEN); the host
records the caller and `--reason` in the log. A worker may be named by a unique prefix
of its id (as `workerledger workers` prints it). A host that cannot be reached, a
refused token or a refused command stops with one line (cli_errors.py, exit 2).
`drain --wait` returns once every drained worker has ended (exit 1 if the wait ran
out first).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import httpx

from .cli_errors import ConfigError
from .cli_sources import ENV_TOKEN, PREFIX, HostApi

POLL_SECONDS = 0.2
ENDED = ("lost", "left", "deleted")
WAIT_MARGIN_SECONDS = 30.0  # past a drain deadline, time for the host's sweep to end it


def add_commands(subparsers: Any) -> None:
    host = argparse.ArgumentParser(add_help=False)
    host.add_argument("--url", required=True, metavar="URL",
                      help="the running host, e.g. http://127.0.0.1:8000")  # fmt: skip
    host.add_argument("--token", help=f"bearer token (default: ${ENV_TOKEN})")
    host.add_argument("--reason", required=True, help="why; recorded in the log with who")
    host.add_argument("--json", action="store_true", help="print the host's answers as JSON")

    p = subparsers.add_parser(
        "drain",
        parents=[host],
        help="drain workers: no new claims, finish, then leave",
        description="Drain each worker: from now on it claims nothing, finishes the tasks "
        "it holds and then ends (an idle one at once). A worker SDK stops and exits on "
        "its own; a zndraw-joblib 0.1.7 worker is ended by the host. Owner or superuser.",
    )
    p.add_argument("workers", nargs="+", metavar="WORKER_ID", help="worker id or unique prefix")
    p.add_argument("--deadline", type=_seconds, metavar="SECONDS",
                   help="after this long the host ends the worker and releases what it "
                   "still holds per its job's policy (default: no deadline)")  # fmt: skip
    p.add_argument("--wait", action="store_true",
                   help="return once every drained worker has ended (with --deadline: at "
                   f"most the deadline plus {WAIT_MARGIN_SECONDS:.0f} s)")  # fmt: skip
    p.set_defaults(func=_drain)

    p = subparsers.add_parser(
        "requeue",
        parents=[host],
        help="put a claimed or running task back in its queue",
        description="Requeue a claimed or running task: it goes back to pending; a late "
        "report from the worker that held it is refused as stale. The holder's owner or "
        "a superuser.",
    )
    p.add_argument("task", metavar="TASK_ID", help="the task's full id")
    p.set_defaults(func=_requeue)

    p = subparsers.add_parser(
        "remove",
        parents=[host],
        help="end a worker at once, releasing what it holds",
        description="Remove each worker at once: what it holds is released per its job's "
        "policy (claimed tasks requeued; running ones failed or requeued). By its owner "
        "it left, by a superuser it was deleted.",
    )
    p.add_argument("workers", nargs="+", metavar="WORKER_ID", help="worker id or unique prefix")
    p.set_defaults(func=_remove)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


# --- the commands --------------------------------------------------------------------


def _drain(args: argparse.Namespace) -> int:
    api = HostApi(args.url, args.token)
    try:
        body: dict[str, Any] = {"reason": args.reason}
        if args.deadline is not None:
            body["deadline_seconds"] = args.deadline
        ids = [_worker_id(api, text) for text in args.workers]
        started = time.monotonic()
        for worker_id in ids:
            answer = _post(api, f"workers/{worker_id}/drain", body)
            _say(args, answer, _drain_line(answer))
        if not args.wait:
            return 0
        limit = None if args.deadline is None else args.deadline + WAIT_MARGIN_SECONDS
        return _wait_ended(args, api, ids, started, limit)
    finally:
        api.close()


def _remove(args: argparse.Namespace) -> int:
    api = HostApi(args.url, args.token)
    try:
        for worker_id in [_worker_id(api, text) for text in args.workers]:
            answer = _post(api, f"workers/{worker_id}/remove", {"reason": args.reason})
            _say(args, answer, f"worker {answer['id']}: {answer['end_reason']}")
        return 0
    finally:
        api.close()


def _requeue(args: argparse.Namespace) -> int:
    task_id = _full_id(args.task, "TASK_ID", "`workerledger tasks --url URL --room ROOM --json`")
    api = HostApi(args.url, args.token)
    try:
        answer = _post(api, f"tasks/{task_id}/requeue", {"reason": args.reason})
        position = answer.get("queue_position")
        _say(args, answer, f"task {answer['id']}: pending again (queue position {position})")
        return 0
    finally:
        api.close()


# --- helpers -------------------------------------------------------------------------


def _drain_line(worker: dict[str, Any]) -> str:
    if worker["status"] in ENDED:
        return f"worker {worker['id']}: held nothing, ended at once ({worker['end_reason']})"
    held = len(worker["tasks"])
    until = f"; deadline {worker['drain_deadline']}" if worker.get("drain_deadline") else ""
    return (
        f"worker {worker['id']}: draining; ends when its {held} task(s) finish{until} "
        f"(drained by {worker['drained_by']}: {worker['drain_reason']})"
    )


def _wait_ended(
    args: argparse.Namespace, api: HostApi, ids: list[str], started: float, limit: float | None
) -> int:
    waiting = list(ids)
    while waiting:
        for worker_id in list(waiting):
            if _live(api, worker_id):
                continue
            waiting.remove(worker_id)
            elapsed = time.monotonic() - started
            ended = api.get(f"workers/{worker_id}/history")["state"]
            _say(args, ended, f"worker {worker_id}: {ended['end_reason']} "
                              f"({elapsed:.1f} s after the drain)")  # fmt: skip
        if waiting and limit is not None and time.monotonic() - started > limit:
            print(f"still draining after {limit:.0f} s: {', '.join(waiting)}")
            return 1
        if waiting:
            time.sleep(POLL_SECONDS)
    return 0


def _live(api: HostApi, worker_id: str) -> bool:
    """Whether the worker has not ended yet (the host answers 404 once it has)."""
    target = f"{PREFIX}/workers/{worker_id}"
    try:
        response = api.http.get(target)
    except httpx.HTTPError as error:
        raise ConfigError(f"--url {api.url}: lost the host while waiting ({error})") from error
    if response.status_code not in (200, 404):
        raise ConfigError(f"GET {target} answered {response.status_code}: {_why(response)}")
    return response.status_code == 200


def _say(args: argparse.Namespace, answer: dict[str, Any], line: str) -> None:
    print(json.dumps(answer) if args.json else line, flush=True)


def _full_id(text: str, name: str, where: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ConfigError(f"{name} {text!r}: give the full id ({where} prints it)") from None


def _worker_id(api: HostApi, text: str) -> str:
    """A worker's full id from its id or a unique prefix of a live worker's id."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        pass
    found = [w["id"] for w in api.pages("workers") if str(w["id"]).startswith(text)]
    if len(found) != 1:
        what = "no live worker" if not found else f"{len(found)} live workers"
        raise ConfigError(f"WORKER_ID {text!r}: {what} with that id prefix "
                          "(`workerledger workers --url URL` lists them)")  # fmt: skip
    return str(found[0])


def _post(api: HostApi, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer of POST `path` under /v1/joblib; any refusal is a ConfigError."""
    target = f"{PREFIX}/{path}"
    try:
        response = api.http.post(target, json=body)
    except httpx.HTTPError as error:
        raise ConfigError(
            f"--url {api.url}: cannot reach the host ({error or type(error).__name__}): "
            "is `workerledger serve` running there?"
        ) from error
    if response.status_code == 401:
        raise ConfigError(
            f"--token / {ENV_TOKEN}: the host at {api.url} refused the token (401): give one "
            "of its WORKERLEDGER_AUTH_TOKENS, or the admin token `serve` printed"
        )
    if response.status_code >= 300:
        raise ConfigError(f"POST {target} answered {response.status_code}: {_why(response)}")
    answer: dict[str, Any] = response.json()
    return answer


def _why(response: httpx.Response) -> str:
    """The problem's detail (or FastAPI's validation messages), on one line."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    detail = body.get("detail") or body.get("title") if isinstance(body, dict) else body
    if isinstance(detail, list):
        detail = "; ".join(str(issue.get("msg")) for issue in detail if isinstance(issue, dict))
    return " ".join(str(detail).split())[:300]
