"""Shared pytest configuration: Hypothesis profiles, chosen by HYPOTHESIS_PROFILE.

`fast` (the default) for local runs, `ci` for `.ci/run` (`make test`), `soak` for the
long runs of `make soak` (the state machine's 1000 interleavings of 40 steps)."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("fast", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=250, stateful_step_count=40, deadline=None)
settings.register_profile("soak", max_examples=1000, stateful_step_count=40, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
