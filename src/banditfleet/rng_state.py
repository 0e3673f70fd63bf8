"""Move one stream's state to and from numpy's ``bit_generator.state`` dict.

A row of :class:`banditfleet.kernels.streams.Streams` holds exactly what
numpy's ``PCG64`` holds, so the conversion is lossless both ways:

>>> import numpy as np
>>> from banditfleet.kernels.streams import allocate_streams
>>> streams = allocate_streams(1)
>>> rng = np.random.default_rng(7)
>>> import_state(streams, 0, rng.bit_generator.state)
>>> export_state(streams, 0) == rng.bit_generator.state
True

After an import the row continues numpy's sequence draw for draw, including
a pending buffered 32-bit half (``has_uint32``/``uinteger``).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

__all__ = ["export_state", "import_state"]

_MASK64 = (1 << 64) - 1
_LIMIT128 = 1 << 128
_LIMIT32 = 1 << 32


def _check_row(streams, row: int) -> int:
    try:
        row = operator.index(row)
    except TypeError:
        raise TypeError(f"row must be an integer, not {type(row).__name__}") from None
    n = len(streams.state_hi)
    if not 0 <= row < n:
        raise IndexError(f"row {row} out of range for {n} streams")
    return row


def export_state(streams, row: int) -> dict[str, Any]:
    """Row ``row``'s stream as numpy's ``PCG64().state`` dict (plain Python ints).

    Setting ``np.random.PCG64().state`` to the result gives a generator that
    continues this stream's draws exactly.
    """
    row = _check_row(streams, row)
    state = (int(streams.state_hi[row]) << 64) | int(streams.state_lo[row])
    inc = (int(streams.inc_hi[row]) << 64) | int(streams.inc_lo[row])
    return {
        "bit_generator": "PCG64",
        "state": {"state": state, "inc": inc},
        "has_uint32": int(streams.has_uint32[row]),
        "uinteger": int(streams.uinteger[row]),
    }


def _int_field(value: Any, name: str, limit: int) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"state field {name!r} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(
            f"state field {name!r} must be an integer, got {type(value).__name__}"
        ) from None
    if not 0 <= value < limit:
        raise ValueError(f"state field {name!r} = {value} is outside [0, {limit})")
    return value


def import_state(streams, row: int, state: Mapping[str, Any]) -> None:
    """Set row ``row``'s stream from numpy's ``PCG64`` state dict.

    Accepts what ``np.random.PCG64().state`` returns (extra keys are ignored,
    as numpy does). Raises :class:`ValueError` naming the offending field when
    the dict is not a PCG64 state: wrong ``bit_generator``, a missing key, a
    non-integer, ``state``/``inc`` outside ``[0, 2**128)``, ``has_uint32`` not
    0 or 1, or ``uinteger`` outside ``[0, 2**32)``. Nothing is written unless
    the whole dict is valid.
    """
    row = _check_row(streams, row)
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a dict, got {type(state).__name__}")
    try:
        bitgen = state["bit_generator"]
        inner = state["state"]
        has_uint32 = state["has_uint32"]
        uinteger = state["uinteger"]
    except KeyError as missing:
        raise ValueError(f"state dict is missing the key {missing.args[0]!r}") from None
    if bitgen != "PCG64":
        raise ValueError(f"state must be for a PCG64 PRNG, got bit_generator={bitgen!r}")
    if not isinstance(inner, Mapping):
        raise ValueError(f"state['state'] must be a dict, got {type(inner).__name__}")
    try:
        lcg_state = inner["state"]
        inc = inner["inc"]
    except KeyError as missing:
        raise ValueError(f"state['state'] is missing the key {missing.args[0]!r}") from None
    lcg_state = _int_field(lcg_state, "state", _LIMIT128)
    inc = _int_field(inc, "inc", _LIMIT128)
    if isinstance(has_uint32, bool):
        has_uint32 = int(has_uint32)
    has_uint32 = _int_field(has_uint32, "has_uint32", 2)
    uinteger = _int_field(uinteger, "uinteger", _LIMIT32)

    streams.state_hi[row] = lcg_state >> 64
    streams.state_lo[row] = lcg_state & _MASK64
    streams.inc_hi[row] = inc >> 64
    streams.inc_lo[row] = inc & _MASK64
    streams.has_uint32[row] = has_uint32
    streams.uinteger[row] = uinteger
