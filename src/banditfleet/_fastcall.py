"""Calling a compiled kernel without numba's per-call type dispatch.

A numba dispatcher works out the type of every argument on every call,
which for the scalar API (one job, a dozen arrays) costs several times the
kernel itself. The scalar paths always pass the same store arrays (same
dtypes and layouts) and Python scalars, so they resolve the compiled entry
point once per argument-type signature and call it directly. Batch paths
keep the ordinary dispatcher: their per-call overhead is amortized.
"""

from __future__ import annotations

from typing import Any, Callable

import numba

__all__ = ["entry_point"]

_ENTRY: dict[tuple[Any, tuple[Any, ...]], Callable[..., Any]] = {}


def entry_point(dispatcher: Any, args: tuple[Any, ...]) -> Callable[..., Any]:
    """The compiled function of ``dispatcher`` for the types of ``args`` (compiled or
    loaded from numba's cache on first use). Only call it with arguments of those types."""
    types = tuple(numba.typeof(a) for a in args)
    key = (dispatcher, types)
    fn = _ENTRY.get(key)
    if fn is None:
        fn = dispatcher.compile(types)
        if not callable(fn):  # pragma: no cover - older numba returned the result object
            fn = dispatcher.overloads[types].entry_point
        _ENTRY[key] = fn
    return fn
