"""Every error banditfleet raises on bad input or misuse.

All are subclasses of ``ValueError`` or ``KeyError`` (and of
:class:`BanditFleetError`), so code written against the reference, which
raises ``ValueError``/``KeyError`` in the same places, keeps working. Each
message names the job and the offending value. When one of these is raised
by a batch call, nothing in the optimizer has changed: batches are validated
whole before anything is written.
"""

from __future__ import annotations

__all__ = [
    "BanditFleetError",
    "ConfigurationError",
    "InvalidObservationError",
    "InvalidArmsError",
    "UnknownJobError",
    "InvalidJobKeyError",
    "ForeignRowsError",
    "StaleRowsError",
    "UnknownBatchSizeError",
    "JobConflictError",
    "PruningOrderError",
    "PruningExhaustedError",
    "CheckpointError",
    "JournalError",
    "FolderLockedError",
    "TraceError",
    "ReplayError",
    "OutputError",
    "MissingDependencyError",
]


class BanditFleetError(Exception):
    """Base class of banditfleet's errors."""


class ConfigurationError(BanditFleetError, ValueError):
    """Optimizer settings that cannot work (for example NaN posterior means)."""


class InvalidObservationError(BanditFleetError, ValueError):
    """A cost, flag or array in an observation batch is unusable (NaN, wrong length, dtype, ...)."""


class InvalidArmsError(BanditFleetError, ValueError):
    """A job's batch-size list is empty, has duplicates or non-positive values."""


class UnknownJobError(BanditFleetError, KeyError):
    """A job key or row that was never registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ForeignRowsError(UnknownJobError):
    """Tagged rows (:class:`banditfleet.rows.Rows`) of another optimizer, or rows that
    are not tagged where tagged rows are required."""


class StaleRowsError(ForeignRowsError):
    """Tagged rows taken before jobs were removed from their optimizer (a row may
    now hold another job); resolve the keys again with ``rows()``."""


class UnknownBatchSizeError(BanditFleetError, ValueError):
    """A batch size that is not one of the job's registered batch sizes."""


class JobConflictError(BanditFleetError, ValueError):
    """A job registered again with a different batch-size list or default."""


class InvalidJobKeyError(UnknownJobError, JobConflictError):
    """A job key that cannot be one (it is not hashable). Both a ``KeyError`` (as a
    lookup of it is) and a :class:`JobConflictError` (as registering it is)."""


class PruningOrderError(BanditFleetError, ValueError):
    """A pruning-stage call out of order: a result for a batch size that was not asked
    for, or a second prediction while a result is still awaited (without concurrency)."""


class PruningExhaustedError(BanditFleetError, ValueError):
    """No batch size reached the target metric in a pruning round, so nothing survives."""


class CheckpointError(BanditFleetError, ValueError):
    """A checkpoint file that is missing, truncated, corrupted, of another optimizer or of a
    newer format, or state that cannot be saved (such as a job key of an unsupported type)."""


class JournalError(BanditFleetError, ValueError):
    """A journal folder whose contents cannot be recovered, or settings that contradict it."""


class FolderLockedError(BanditFleetError, ValueError):
    """Another live process has the journal folder open for writing."""


class TraceError(BanditFleetError, ValueError):
    """A trace or groups file that cannot be replayed: missing columns, unknown datasets,
    a default batch size absent from the trace, negative or unordered times, ..."""


class ReplayError(BanditFleetError, RuntimeError):
    """A replayed job that cannot go on, where the reference simulator raises too: the
    default batch size failing in the first recurrence, no success in 20 tries, a
    concurrent launch with a batch size whose power limits were never profiled, ..."""


class OutputError(BanditFleetError, ValueError):
    """An output that cannot be written: an output folder that is a file, an unknown
    history format, ..."""


class MissingDependencyError(BanditFleetError, ImportError):
    """An optional dependency a feature needs is not installed; the message says how to install it."""
