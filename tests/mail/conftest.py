"""Hypothesis profiles for the parser properties: a bounded example count for CI.

``HYPOTHESIS_PROFILE=thorough`` runs many more; the long fuzz run is
``benchmarks/fuzz_parsers.py``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
