"""Shared pytest configuration: hypothesis profiles.

``ci`` (the default) keeps example counts modest so the whole suite stays
fast; ``thorough`` is for occasional deep runs:
``HYPOTHESIS_PROFILE=thorough pytest tests``. ``ci-boundscheck`` is for the
second, bounds-checked pass of the kernel tests in ``.ci/run``
(``NUMBA_BOUNDSCHECK=1``): every explicit ``@example`` still runs, with fewer
random examples, because the same tests already ran at full count unchecked
(see docs/testing.md).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci-boundscheck",
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The kernel/policy twins in tests/naive.py are imported as ``naive`` whatever
# pytest's import mode.
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)
