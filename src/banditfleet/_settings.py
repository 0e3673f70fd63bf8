"""Per-job settings given at registration: validation into one array per setting.

Each setting of a batch-size optimizer that Zeus's batch-size-optimizer server
takes per job (``window_size``, ``prior_mean``, ``prior_precision``,
``num_exploration``, ``seed``, ``num_pruning_rounds``) may be given at
registration as one value for every job of the batch or as one value per job;
``None`` takes the optimizer's constructor value. A bad value is refused with
a :class:`~banditfleet.errors.ConfigurationError` naming the job and the value,
before anything is registered.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np

from banditfleet.errors import ConfigurationError

__all__: list[str] = []

# Setting -> kind, for every per-job setting (the names are the register_* keywords).
SETTING_KINDS = {
    "window_size": "window",
    "prior_mean": "real",
    "prior_precision": "precision",
    "num_exploration": "count",
    "seed": "seed",
    "num_pruning_rounds": "rounds",
}

# The largest history window: a window is allocated whole per arm (8 bytes a reward).
MAX_WINDOW = 2**20

# kind -> (dtype, description used in messages)
_KINDS = {
    "window": (np.int64, f"0 (keep every reward) or an integer from 2 to {MAX_WINDOW}"),
    "real": (np.float64, "a finite real number"),
    "precision": (np.float64, "a finite real number >= 0"),
    "count": (np.int64, "an integer >= 0"),
    "rounds": (np.int64, "an integer >= 1"),
    "seed": (np.uint64, "an integer in [0, 2**64)"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_one(kind: str, v: Any) -> Any:
    """The value as a Python number, or None when it is not valid for ``kind``."""
    if kind in ("real", "precision"):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            return None
        try:
            f = float(v)
        except OverflowError:
            return None
        if not math.isfinite(f) or (kind == "precision" and f < 0):
            return None
        return f
    if not _is_int(v):
        return None
    i = int(v)
    if kind == "window":
        return i if 0 <= i <= MAX_WINDOW and i != 1 else None
    if kind == "count":
        return i if 0 <= i < 2**63 else None
    if kind == "rounds":
        return i if 1 <= i < 2**63 else None
    return i if 0 <= i < 2**64 else None  # seed


def _bad(name: str, key: Hashable | None, value: Any, kind: str) -> ConfigurationError:
    who = f"job {key!r}: " if key is not None else ""
    return ConfigurationError(f"{who}{name}={value!r} is not valid: {name} must be {_KINDS[kind][1]}")


def job_settings(given: dict[str, Any], keys: list[Hashable]) -> dict[str, np.ndarray]:
    """Validate every given (not None) setting: name -> one value per key."""
    out = {}
    for name, value in given.items():
        if value is not None:
            out[name] = job_setting(name, value, SETTING_KINDS[name], keys)
    return out


def job_setting(name: str, value: Any, kind: str, keys: list[Hashable]) -> np.ndarray:
    """One validated value per key (``value`` is one for all, or one per key)."""
    n = len(keys)
    dtype = _KINDS[kind][0]
    if not isinstance(value, (list, tuple, range, np.ndarray)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        one = _check_one(kind, value.item() if isinstance(value, np.ndarray) else value)
        if one is None:
            raise _bad(name, keys[0] if n == 1 else None, value, kind)
        return np.full(n, one, dtype)
    if len(value) != n:
        raise ConfigurationError(f"{name}: expected {n} values (one per job), got {len(value)}")
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ConfigurationError(f"{name}: expected a 1-D array of {n} values, got shape {value.shape}")
        if value.dtype.kind in "iu" or (dtype is np.float64 and value.dtype.kind == "f"):
            if dtype is np.float64:
                arr = value.astype(np.float64)
                good = np.isfinite(arr)
                if kind == "precision":
                    good &= arr >= 0
            else:
                arr = value
                low = {"window": 0, "count": 0, "rounds": 1, "seed": 0}[kind]
                good = arr >= low
                if kind == "window":
                    good &= (arr != 1) & (arr <= MAX_WINDOW)
                if value.dtype.kind == "u" and dtype is np.int64:
                    good &= arr <= np.iinfo(np.int64).max
            if n and not good.all():
                i = int(np.argmin(good))
                raise _bad(name, keys[i], value[i].item(), kind)
            return arr.astype(dtype)
        values = value.tolist()
    else:
        values = list(value)
    out = np.empty(n, dtype)
    for i, v in enumerate(values):
        one = _check_one(kind, v)
        if one is None:
            raise _bad(name, keys[i], v, kind)
        out[i] = one
    return out
