"""Explicit hypothesis example counts that follow the loaded profile.

An explicit ``@settings(max_examples=N)`` overrides the profile, so a test that
needs a count of its own asks for ``examples(N)``: N under the default ``ci``
profile (60 examples), scaled by the loaded profile's ``max_examples / 60``
otherwise (``thorough``: 16x, ``ci-boundscheck``: 1/4), never below 3.
"""

from __future__ import annotations

from hypothesis import settings

_CI_EXAMPLES = 60


def examples(n: int) -> int:
    return max(3, n * settings.default.max_examples // _CI_EXAMPLES)
