"""LifecycleModel on its own (no host): any sequence of commands, legal or not, leaves a
state its log replays to, and a refusal changes nothing; the hostile requests are the
ones the boundary refuses."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from workerledger.adapters.input_limits import DEFAULT_LIMITS, InputRefused, parse_json

from workerledger.testing import LifecycleModel, strategies


@settings(max_examples=60, deadline=None)
@given(st.lists(strategies.commands(), max_size=30))
def test_the_model_replays_its_log_and_refusals_change_nothing(commands) -> None:
    model = LifecycleModel()
    for command in commands:
        before = model.state
        outcome = model.apply(command)
        if not outcome.accepted:
            assert model.state == before
        assert model.replays()


@settings(max_examples=40, deadline=None)
@given(strategies.hostile_payloads())
def test_hostile_payloads_are_refused_at_the_boundary(hostile) -> None:
    assert hostile.body is not None
    too_large = len(hostile.body) > DEFAULT_LIMITS.max_body_bytes
    if too_large or hostile.why in ("an unknown field",):
        return  # refused by the byte cap and the strict request model, not by the parser
    with pytest.raises(InputRefused):
        parse_json(hostile.body, DEFAULT_LIMITS)


@settings(max_examples=40, deadline=None)
@given(strategies.payloads())
def test_valid_payloads_pass_the_boundary(payload) -> None:
    assert (
        parse_json(json.dumps({"payload": payload}).encode(), DEFAULT_LIMITS)["payload"] == payload
    )
