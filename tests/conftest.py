"""Shared pytest configuration: Hypothesis profiles, chosen by HYPOTHESIS_PROFILE."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("fast", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=1000, stateful_step_count=40, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
