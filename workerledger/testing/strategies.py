"""Hypothesis strategies for a host's inputs: valid and hostile ids, payloads and commands.

The valid ones stay inside every limit a host enforces at its door (README, "Limits":
valid Unicode, finite numbers, shallow nesting, short names); the hostile ones each
break exactly one of those limits (`InputLimits` defaults: a 1 MiB body, nesting depth
64, room ids of 128 characters, job names of 128, categories of 64, keys of 255, error
texts of 64 KiB), so a host must refuse them with a 4xx before deciding anything.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from workerledger.core import (
    DEFAULT_CATEGORIES,
    Actor,
    ClaimTask,
    Command,
    RegisterJob,
    RegisterWorker,
    RemoveWorker,
    SubmitTask,
    TaskStatus,
    UpdateTask,
)

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_ROOM_ID_LENGTH = 128
MAX_JOB_NAME_LENGTH = 128
MAX_CATEGORY_LENGTH = 64
MAX_KEY_LENGTH = 255
MAX_ERROR_LENGTH = 64 * 1024

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)


# --- identifiers ----------------------------------------------------------------------


def worker_ids() -> st.SearchStrategy[str]:
    """Worker (and task) ids as hosts mint them: uuid4 text."""
    return st.uuids(version=4).map(str)


def room_ids() -> st.SearchStrategy[str]:
    """Valid room ids: no `@`, `:` or `/`, at most 128 characters."""
    alphabet = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs"),
                             exclude_characters="@:/?#%\\")  # fmt: skip
    return st.text(alphabet, min_size=1, max_size=24).filter(lambda s: s.strip() == s and s)


def hostile_room_ids() -> st.SearchStrategy[str]:
    """Room ids a host must refuse: too long, or holding `:` or a leading `@`."""
    return st.one_of(
        st.integers(MAX_ROOM_ID_LENGTH + 1, MAX_ROOM_ID_LENGTH + 64).map(lambda n: "r" * n),
        room_ids().map(lambda r: f"{r}:x"),
        room_ids().map(lambda r: f"@{r}"),
    )


def job_names() -> st.SearchStrategy[str]:
    """Valid job names: one line, no `:`, at most 128 characters."""
    alphabet = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs"),
                             exclude_characters=":/?#%\\")  # fmt: skip
    return st.text(alphabet, min_size=1, max_size=24)


def categories() -> st.SearchStrategy[str]:
    return st.sampled_from(DEFAULT_CATEGORIES)


def idempotency_keys() -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                   max_size=40)  # fmt: skip


# --- payloads -------------------------------------------------------------------------


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """JSON values within every limit: valid Unicode, finite numbers, shallow nesting."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False, allow_infinity=False), _TEXT,
    )  # fmt: skip
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
        max_leaves=max_leaves,
    )


def payloads() -> st.SearchStrategy[dict[str, Any]]:
    """Task payloads a host must accept, store and serve back unchanged."""
    return st.dictionaries(_TEXT, json_values(), max_size=4)


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@dataclass(frozen=True)
class HostileRequest:
    """One request a host must refuse at its door (a 4xx), changing nothing.

    `path` may hold `{room}` and `{job}` (filled in with the caller's room and job);
    `body` is sent as is (bytes), with `headers`."""

    why: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _submit(why: str, raw: bytes, headers: dict[str, str] | None = None) -> HostileRequest:
    return HostileRequest(why, "POST", "/rooms/{room}/tasks/{job}", raw, headers or {})


def hostile_payloads() -> st.SearchStrategy[HostileRequest]:
    """Submit bodies beyond a limit: too large, too deep, not valid Unicode, not finite."""
    return st.one_of(
        st.integers(MAX_JSON_DEPTH + 1, MAX_JSON_DEPTH + 200).map(
            lambda n: _submit(f"payload nested {n} deep",
                              json.dumps({"payload": {"x": _nested(n)}}).encode())
        ),
        st.sampled_from(["\\ud800", "\\udfff", "a\\udc00b"]).map(
            lambda s: _submit("a lone surrogate", b'{"payload": {"x": "' + s.encode() + b'"}}')
        ),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"]).map(
            lambda s: _submit(f"a non-finite number {s}",
                              b'{"payload": {"x": ' + s.encode() + b"}}")
        ),
        st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80"]).map(
            lambda b: _submit("invalid UTF-8", b'{"payload": {"x": "' + b + b'"}}')
        ),
        st.integers(1, 3).map(
            lambda extra: _submit(f"a body over {MAX_BODY_BYTES} bytes",
                                  b'{"payload": {"x": "' + b"a" * (MAX_BODY_BYTES + extra) + b'"}}')
        ),
        st.just(_submit("an unknown field", b'{"payload": {}, "priority": 1}')),
        st.just(_submit("not JSON", b'{"payload": ')),
    )  # fmt: skip


def hostile_requests() -> st.SearchStrategy[HostileRequest]:
    """Hostile payloads, identifiers and headers on the task and job routes."""
    long_category = "c" * (MAX_CATEGORY_LENGTH + 1)
    long_name = "n" * (MAX_JOB_NAME_LENGTH + 1)
    return st.one_of(
        hostile_payloads(),
        hostile_room_ids().map(
            lambda room: HostileRequest(
                f"room id {room[:20]!r}... ({len(room)} characters)",
                "PUT", f"/rooms/{room}/jobs",
                json.dumps({"category": "modifiers", "name": "x", "schema": {}}).encode(),
            )
        ),
        st.just(HostileRequest(
            f"a category of {len(long_category)} characters", "PUT", "/rooms/{room}/jobs",
            json.dumps({"category": long_category, "name": "x", "schema": {}}).encode(),
        )),
        st.just(HostileRequest(
            f"a job name of {len(long_name)} characters", "PUT", "/rooms/{room}/jobs",
            json.dumps({"category": "modifiers", "name": long_name, "schema": {}}).encode(),
        )),
        st.integers(MAX_KEY_LENGTH + 1, MAX_KEY_LENGTH + 50).map(
            lambda n: _submit(f"an Idempotency-Key of {n} characters", b'{"payload": {}}',
                              {"Idempotency-Key": "k" * n})
        ),
        st.just(HostileRequest(
            f"an error text over {MAX_ERROR_LENGTH} characters", "PATCH",
            f"/tasks/{uuid.uuid4()}",
            json.dumps({"status": "failed", "error": "e" * (MAX_ERROR_LENGTH + 1)}).encode(),
        )),
    )  # fmt: skip


# --- commands for the pure model ----------------------------------------------------------


def commands(
    *,
    workers: list[str] | None = None,
    tasks: list[str] | None = None,
    jobs: tuple[tuple[str, str, str], ...] = (("r1", "modifiers", "a"), ("r1", "analysis", "b")),
    actors: tuple[Actor, ...] = (Actor(user="alice"), Actor(user="bob")),
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> st.SearchStrategy[Command]:
    """Core commands over small pools of ids, for driving `LifecycleModel` directly;
    many are illegal in a given state, which is the point (the model must refuse them)."""
    worker_pool = st.sampled_from(workers or ["w1", "w2", "w3"])
    task_pool = st.sampled_from(tasks or ["t1", "t2", "t3", "t4"])
    actor = st.sampled_from(actors)
    now = st.integers(0, 3600).map(lambda s: start + timedelta(seconds=s))
    job = st.sampled_from(jobs)
    return st.one_of(
        st.builds(RegisterWorker, now=now, actor=actor, worker_id=worker_pool),
        st.builds(
            lambda n, a, w, j, create: RegisterJob(
                now=n, actor=a, worker_id=w, room_id=j[0], category=j[1], name=j[2],
                create_worker=create,
            ),
            now, actor, worker_pool, job, st.booleans(),
        ),
        st.builds(
            lambda n, a, t, j, p: SubmitTask(
                now=n, actor=a, task_id=t, job_name=":".join(j), room_id=j[0], payload=p
            ),
            now, actor, task_pool, job, payloads(),
        ),
        st.builds(ClaimTask, now=now, actor=actor, task_id=task_pool, worker_id=worker_pool),
        st.builds(
            UpdateTask, now=now, actor=actor, task_id=task_pool,
            status=st.sampled_from(list(TaskStatus)), worker_id=st.none() | worker_pool,
            attempt=st.none() | st.integers(1, 3),
        ),
        st.builds(RemoveWorker, now=now, actor=actor, worker_id=worker_pool),
    )  # fmt: skip
