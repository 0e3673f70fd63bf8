"""Per-job settings given at registration: validation into one array per setting.

Each setting of a batch-size optimizer that Zeus's batch-size-optimizer server
takes per job (``window_size``, ``prior_mean``, ``prior_precision``,
``num_exploration``, ``seed``, ``num_pruning_rounds``) may be given at
registration as one value for every job of the batch or as one value per job;
``None`` takes the optimizer's constructor value. The values obey the
boundary's per-job constraints (:mod:`banditfleet._boundary`, ``JOB_*``): a
bad value is refused with a :class:`~banditfleet.errors.ConfigurationError`
naming the job and the value, before anything is registered.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from banditfleet import _boundary as B

__all__: list[str] = []

# Setting (the register_* keyword, ``seed`` for ``seeds``) -> its per-job constraint.
SETTINGS = {
    "window_size": B.JOB_WINDOW_SIZE,
    "prior_mean": B.JOB_PRIOR_MEAN,
    "prior_precision": B.JOB_PRIOR_PRECISION,
    "num_exploration": B.JOB_NUM_EXPLORATION,
    "seed": B.JOB_SEED,
    "num_pruning_rounds": B.JOB_NUM_PRUNING_ROUNDS,
}

# The largest history window.
MAX_WINDOW = B.MAX_WINDOW


def job_settings(given: dict[str, Any], keys: list[Hashable]) -> dict[str, np.ndarray]:
    """Validate every given (not None) setting: name -> one value per key."""
    out = {}
    who = lambda i: f"job {keys[i]!r}"  # noqa: E731
    for name, value in given.items():
        if value is not None:
            out[name] = SETTINGS[name].check_many(value, len(keys), who)
    return out


def one_job_settings(given: dict[str, Any], key: Hashable) -> dict[str, Any]:
    """``register_job``'s settings: each None or one value (a list is refused), checked."""
    return {name: None if value is None else SETTINGS[name].check(value, f"job {key!r}") for name, value in given.items()}
