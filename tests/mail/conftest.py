"""Hypothesis profiles for the parser properties.

``mail-ci`` (the default) keeps the example count bounded for CI; set
``MAILFERRY_HYPOTHESIS=mail-thorough`` for a longer local run. Only the tests here use
them (they are applied per test, not loaded globally). The long fuzz run is
``benchmarks/fuzz_parsers.py``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "mail-ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "mail-thorough", max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
