"""Every case of ``banditfleet bench`` as pytest-benchmark benchmarks.

One group per case (``banditfleet.bench.cases.CASES``), holding our side
(``-ours``) and its comparison (``-comparison``): numpy's draws, a raw file
write or read (the floors), or the zeus==0.16.0 reference's loop. The case
definitions, sizes and fleets are the ones ``banditfleet bench`` uses; this
file only parametrizes them. When benchmarks are enabled, the ``-ours`` row
also records in ``extra_info`` the row ``banditfleet bench`` would print
(both medians per unit, the same-run ratio and its target), measured with
the sides timed alternately.

Sizes: ``banditfleet bench``'s standard ones, or its ``--quick`` ones with
``BANDITFLEET_BENCH_QUICK=1``. With ``--benchmark-disable`` (CI) the fleets
are tiny and each side runs once, which only proves every case works.
Comparisons against the reference are skipped when zeus is not installed.

Run: ``pytest benchmarks/bench_cases.py`` (``-k ts.predict`` for one case).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from banditfleet.bench.cases import CASES, Case, Config, Prepared
from banditfleet.bench.runner import make_row, measure_pair

#: Sizes with --benchmark-disable: every case runs once, in seconds.
TINY = dict(
    jobs=40, arms=8, reference_jobs=10, checkpoint_jobs=500, replay_groups=20, reference_groups=2, cli_groups=20, scalar_calls=10,
    budget=0.0, min_repeats=1, max_repeats=1, reference_min_repeats=1,
)


def _config(pytest_config: pytest.Config) -> Config:
    if pytest_config.getoption("benchmark_disable"):
        return Config(quick=True, **TINY)
    return Config.standard(quick=os.environ.get("BANDITFLEET_BENCH_QUICK") == "1")


class _State:
    """Fleets shared by the cases of one group, and each case's prepared callables."""

    def __init__(self) -> None:
        self.group: str | None = None
        self.shared: dict[str, Any] = {}
        self.prepared: dict[str, Prepared] = {}

    def drop(self) -> None:
        for p in self.prepared.values():
            if p.cleanup is not None:
                p.cleanup()
        cleanup = self.shared.pop("_cleanup", None)
        if cleanup is not None:
            cleanup()
        self.shared.clear()
        self.prepared.clear()

    def get(self, case: Case, cfg: Config) -> Prepared:
        if case.group != self.group:
            self.drop()
            self.group = case.group
        if case.name not in self.prepared:
            self.prepared[case.name] = case.setup(cfg, self.shared)
        return self.prepared[case.name]


@pytest.fixture(scope="module")
def state():
    s = _State()
    yield s
    s.drop()


@pytest.fixture(scope="module")
def cfg(request) -> Config:
    return _config(request.config)


PARAMS = [pytest.param(case, side, id=f"{case.name}-{side}") for case in CASES for side in ("ours", "comparison")]


@pytest.mark.parametrize(("case", "side"), PARAMS)
def test_case(benchmark, state, cfg, case: Case, side: str) -> None:
    benchmark.group = case.name
    p = state.get(case, cfg)
    if side == "comparison":
        if p.comparison is None:
            pytest.skip(p.missing or "no comparison")
        fn, before = p.comparison, p.comparison_before
    else:
        fn, before = p.ours, p.ours_before
    if before is not None or benchmark.disabled:
        rounds = 1 if benchmark.disabled else max(cfg.min_repeats, 5)
        benchmark.pedantic(fn, setup=before, rounds=rounds, iterations=1, warmup_rounds=0 if benchmark.disabled else 1)
    else:
        benchmark(fn)
    if side == "ours" and not benchmark.disabled:
        row = make_row(case, p, *measure_pair(p, cfg))
        benchmark.extra_info.update(
            unit=case.unit,
            units=row.units,
            comparison=case.comparison,
            comparison_units=row.comparison_units,
            ours_per_unit_ns=row.ours_per_unit * 1e9 if row.ours_per_unit else None,
            comparison_per_unit_ns=row.comparison_per_unit * 1e9 if row.comparison_per_unit else None,
            ratio=row.ratio,
            ratio_cpu=row.ratio_cpu,
            ratio_definition=row.ratio_definition,
            target=case.target,
            meets_target=row.meets_target,
            note=row.note,
        )
