"""The numba option sets of every kernel module, and why each exists.

Every kernel module imports its decorators' options from here, so a change of
policy (a numba upgrade, a new option) is made once. The sets:

``JIT``
    Public kernels, called from Python or from other kernels.
    ``cache=True``: compiled code is written to numba's on-disk cache, so a new
    process loads it instead of compiling (tests/test_kernel_cache.py checks every
    family loads without compiling). ``nogil=True``: long kernels release the GIL.
    ``error_model="numpy"``: division by zero gives inf/nan as in numpy (the
    reference's ``1/np.var(window)`` is infinite for a constant window) instead of
    raising, and the division needs no zero check.

``JIT_HELPER``
    Per-row / per-slot helpers that neither allocate nor keep references.
    ``_nrt=False`` (a private numba option, hence the pinned numba range in
    pyproject.toml) compiles them without NRT reference counting: otherwise every
    call increfs and decrefs every array it is given (numba prunes those only
    within one function, not across calls or branches), which cost ~0.5 us per
    call. A helper compiled so must never allocate an array.

``INLINE``
    Small helpers inlined into their callers at numba's IR level
    (``inline="always"``): numba does not inline one compiled function into
    another, and a compiled call per draw or per probe (state tuples passed
    through memory) cost more than the work itself (bounded integers ~2.5x
    slower, a refit ~100 ns more).

``INLINE_HELPER``
    ``INLINE`` for helpers called only from NRT-free helpers: inlining adds no
    reference counting there (a pruning-stage ``predict_many`` is ~12% faster,
    compile time unchanged).

``JIT_PARALLEL``
    ``JIT`` with ``parallel=True``, for the chunked ``prange`` kernels.
"""

from __future__ import annotations

__all__ = ["JIT", "JIT_HELPER", "INLINE", "INLINE_HELPER", "JIT_PARALLEL", "NUMBA_TESTED"]

JIT = dict(cache=True, nogil=True, error_model="numpy")
JIT_HELPER = dict(JIT, _nrt=False)
INLINE = dict(JIT, inline="always")
INLINE_HELPER = dict(JIT_HELPER, inline="always")
JIT_PARALLEL = dict(JIT, parallel=True)

# The numba releases these options (the private ``_nrt`` among them) and the
# fleet handle's structref caching were tested with; pyproject.toml pins the same range.
NUMBA_TESTED = ">=0.68.1,<0.69"
