"""Trace-driven replay of recurring-job fleets (see docs/replay.md).

:class:`Simulator` is the reference-shaped API (``zeus._legacy.simulate``);
:mod:`banditfleet.replay.fleet` replays thousands of job groups at once.
"""

from banditfleet.replay.simulator import HistoryEntry, Simulator

__all__ = ["HistoryEntry", "Simulator"]
