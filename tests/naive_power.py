"""A slow, obviously-correct model of the JIT power-limit policy, for differential tests.

Written from the policy's description, not from banditfleet's kernels: per
(job, batch size), count observations and keep the power limit of the lowest
cost, where a later observation replaces the kept one only when strictly
cheaper. A pair never observed needs profiling (``None``).
"""

from __future__ import annotations

from collections.abc import Hashable


class NaivePowerLimit:
    """Plain dicts keyed by (job, batch size) -> [best power limit, best cost, count]."""

    def __init__(self) -> None:
        self.entries: dict[tuple[Hashable, int], list] = {}

    def predict(self, job: Hashable, batch_size: int) -> int | None:
        entry = self.entries.get((job, batch_size))
        return None if entry is None else entry[0]

    def observe(self, job: Hashable, batch_size: int, power_limit: int, cost: float) -> None:
        key = (job, batch_size)
        entry = self.entries.get(key)
        if entry is None:
            self.entries[key] = [power_limit, cost, 1]
            return
        entry[2] += 1
        if cost < entry[1]:
            entry[0] = power_limit
            entry[1] = cost

    def state(self, job: Hashable) -> dict[int, tuple[int, float, int]]:
        """Observed batch sizes of ``job`` in first-observation order."""
        return {bs: (e[0], e[1], e[2]) for (j, bs), e in self.entries.items() if j == job}

    def jobs(self) -> list[Hashable]:
        """Observed jobs, in first-observation order."""
        return list(dict.fromkeys(j for j, _ in self.entries))
