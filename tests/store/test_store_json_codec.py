"""json_codec: the same JSON as the `json` module and pydantic, at any nesting depth."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from workerledger.adapters.store.json_codec import (
    PlainJSONTranscoder,
    _dumps_iterative,
    _loads_iterative,
    dumps,
    loads,
    model_json,
    to_plain,
    validate_json,
)
from workerledger.core import TaskState

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)  # fmt: skip


@given(JSON, st.sampled_from([None, 2]))
def test_the_iterative_coder_writes_and_reads_what_json_does(
    value: Any, indent: int | None
) -> None:
    separators = (",", ":") if indent is None else (",", ": ")
    expected = json.dumps(value, ensure_ascii=False, separators=separators, indent=indent)
    assert _dumps_iterative(value, indent) == expected
    assert _loads_iterative(expected) == json.loads(expected)


def _deep(depth: int) -> Any:
    value: Any = {"leaf": ["x", 1.5, None]}
    for n in range(depth):
        value = [value] if n % 2 else {"k": value, "n": n}
    return value


@pytest.mark.parametrize("depth", [10, 900, 5000])
def test_deep_values_round_trip(depth: int) -> None:
    text = dumps(_deep(depth))
    assert dumps(loads(text)) == text
    transcoder = PlainJSONTranscoder()
    assert dumps(transcoder.decode(transcoder.encode(loads(text)))) == text
    assert dumps(loads(dumps(loads(text), indent=2))) == text


@pytest.mark.parametrize(
    "bad", ["", "[", "[1,]", '{"a" 1}', '{"a":1,}', "[1] x", "tru", "{1:2}", "01", '"\\x"']
)
def test_the_iterative_parser_refuses_what_json_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        _loads_iterative(bad)


def test_non_finite_floats_become_null_like_pydantic_and_cycles_fail() -> None:
    assert dumps([math.nan, math.inf, 1.0]) == "[null,null,1.0]"
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="circular"):
        dumps(cycle)


def test_models_past_pydantics_depth_limit() -> None:
    task = TaskState(
        id="t1", job_name="lab:modifiers:relax", room_id="lab", payload={"deep": _deep(900)},
        submitted_by="alice", created_at=datetime(2025, 6, 1, tzinfo=UTC),
    )  # fmt: skip
    with pytest.raises(ValueError, match="serialization depth"):
        task.model_dump_json()
    text = model_json(task)
    assert dumps(to_plain(validate_json(TaskState, text))) == dumps(to_plain(task))
    shallow = task.model_copy(update={"payload": {"a": 1}})
    assert model_json(shallow) == shallow.model_dump_json()  # the fast path is pydantic's
    assert to_plain(shallow) == shallow.model_dump(mode="json")
