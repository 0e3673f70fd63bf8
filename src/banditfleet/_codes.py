"""Every kernel family's result codes, and the error each one becomes: the one place.

Kernels return integer codes from one namespace per family
(:class:`~banditfleet.kernels.pruning.PruningCode`,
:class:`~banditfleet.kernels.thompson.ThompsonCode`,
:class:`~banditfleet.kernels.replay.ReplayCode`); the optimizers and the replay
turn a non-zero code into a :mod:`banditfleet.errors` exception through
:func:`pruning_error` and :func:`replay_error`, with the message templates below.
A code without an entry here is a bug (:data:`UNHANDLED`).
"""

from __future__ import annotations

from typing import Any

from banditfleet.errors import (
    InvalidObservationError,
    PruningExhaustedError,
    PruningOrderError,
    ReplayError,
    TraceError,
)
from banditfleet.kernels.pruning import PruningCode
from banditfleet.kernels.replay import ReplayCode
from banditfleet.kernels.thompson import ThompsonCode

__all__ = ["PruningCode", "ThompsonCode", "ReplayCode", "PRUNING_MESSAGES", "REPLAY_MESSAGES", "pruning_error", "replay_error"]

# (code, variant) -> (error class, message template). Variants pick the wording
# for the state the job is in; the templates' fields are filled by the caller.
PRUNING_MESSAGES: dict[tuple[PruningCode, str], tuple[type[Exception], str]] = {
    (PruningCode.AWAITING, "twice"): (
        PruningOrderError,
        "{who}: appears twice in one predict batch in pruning round {round}; the second entry "
        "would ask again before the result for the first one's batch size arrives{hint}",
    ),
    (PruningCode.AWAITING, "awaited"): (
        PruningOrderError,
        "{who}: asked for the next batch size in pruning round {round} while the result for batch "
        "size {awaited} is still awaited; report it first{hint}",
    ),
    (PruningCode.EXHAUSTED, ""): (
        PruningExhaustedError,
        "{who}: no batch size of pruning round {round} ({members}) reached the "
        "target metric, so no batch size survives pruning",
    ),
    (PruningCode.NO_CONVERGED, ""): (
        InvalidObservationError,
        "{who}: converged=None for batch size {value} during pruning; pruning needs to know "
        "whether the run reached the target metric",
    ),
    (PruningCode.UNEXPECTED, "awaited"): (
        PruningOrderError,
        "{who}: pruning asked for batch size {awaited}, got a result for batch size {value}",
    ),
    (PruningCode.UNEXPECTED, "manager"): (
        PruningOrderError,
        "{who}: got a result for batch size {value} but no result is awaited (call next_batch_size first)",
    ),
    (PruningCode.UNEXPECTED, "optimizer"): (
        PruningOrderError,
        "{who}: got a result for batch size {value} but pruning awaits no result "
        "(call predict first, or use concurrency=True to record runs pruning did not ask for)",
    ),
}

REPLAY_MESSAGES: dict[ReplayCode, tuple[type[Exception], str]] = {
    ReplayCode.DEFAULT_FAILED: (ReplayError, "The default batch size {default_bs} did not converge."),
    ReplayCode.TRIES: (ReplayError, "Job did not reach the target metric in {max_tries} tries."),
    ReplayCode.EXHAUSTED: (ReplayError, "{job}: no batch size survived pruning"),
    ReplayCode.NOT_PROFILED: (
        ReplayError,
        "{job}: a concurrent submission uses the best known batch size, whose power limits were never profiled",
    ),
    ReplayCode.NO_PATHS: (
        TraceError,
        "{job}: a batch size chosen has no training path at target metric {target_metric!r} in the trace",
    ),
    ReplayCode.UNKNOWN_PL: (TraceError, "{job}: the power-limit optimizer chose a power limit the trace does not have"),
    ReplayCode.UNKNOWN_BS: (ReplayError, "{job}: the batch-size optimizer chose a batch size the trace does not have"),
    ReplayCode.RETRY_LIMIT: (
        ReplayError,
        "{job}: failed runs were retried more than 100 x submissions + 1000 times, so the group stops here "
        "(a run that never starts is observed at cost 0 and may be chosen again and again; the reference retries forever)",
    ),
}

UNHANDLED = "{family} kernel returned code {code}, which banditfleet._codes does not map: a bug"


def pruning_error(code: int, variant: str = "", **fields: Any) -> Exception:
    """The exception for pruning-kernel ``code`` (``variant`` picks the wording)."""
    try:
        cls, template = PRUNING_MESSAGES[(PruningCode(code), variant)]
    except (KeyError, ValueError):
        return RuntimeError(UNHANDLED.format(family="pruning", code=code))
    return cls(template.format(**fields))


def replay_error(code: int, **fields: Any) -> Exception:
    """The exception for a replay unit that stopped with ``code``."""
    try:
        cls, template = REPLAY_MESSAGES[ReplayCode(code)]
    except (KeyError, ValueError):
        return ReplayError(f"{fields.get('job')}: replay stopped with error code {code}")
    return cls(template.format(**fields))
