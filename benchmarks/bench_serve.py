"""The ``serve`` cases of ``banditfleet bench`` as pytest-benchmark benchmarks.

Each case starts ``banditfleet serve`` (and, where its interpreter is found,
Zeus 0.16.0's server on SQLite; see ``banditfleet.bench.serving``) and a load
generator as separate processes on 127.0.0.1, and times the load generator's
commands: training-run cycles from 1, 16, 128 and 1,024 concurrent simulated
jobs, the batch predict endpoint, and micro-batching on against off. With
benchmarks enabled, the ``-ours`` row records in ``extra_info`` the row
``banditfleet bench`` would print (the same-run ratio, p50/p99 latencies,
server and load-generator CPU).

With ``--benchmark-disable`` (CI) every row runs at most 8 concurrent jobs,
one cycle each, the batch request holds 20 jobs, Zeus's server runs only at
1 job, and each side runs once: this only proves every case works end to end.

Run: ``pytest benchmarks/bench_serve.py`` (``BANDITFLEET_BENCH_QUICK=1`` for
``--quick`` sizes).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from banditfleet.bench.cases import Case, Config, Prepared
from banditfleet.bench.runner import make_row, measure_pair
from banditfleet.bench.serve_cases import CASES

TINY = dict(jobs=40, arms=8, reference_jobs=10, scalar_calls=10, budget=0.0, min_repeats=1, max_repeats=1,
            reference_min_repeats=1)


def _config(pytest_config: pytest.Config) -> Config:
    if pytest_config.getoption("benchmark_disable"):
        return Config(quick=True, **TINY)
    return Config.standard(quick=os.environ.get("BANDITFLEET_BENCH_QUICK") == "1")


class _State:
    def __init__(self) -> None:
        self.shared: dict[str, Any] = {}
        self.prepared: dict[str, Prepared] = {}

    def get(self, case: Case, cfg: Config) -> Prepared:
        if case.name not in self.prepared:
            self.prepared[case.name] = case.setup(cfg, self.shared)
        return self.prepared[case.name]

    def drop(self) -> None:
        cleanup = self.shared.pop("_cleanup", None)
        self.shared.clear()
        self.prepared.clear()
        if cleanup is not None:
            cleanup()


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
def test_serve_case(benchmark, state, cfg, case: Case, side: str) -> None:
    benchmark.group = case.name
    p = state.get(case, cfg)
    if side == "comparison":
        if p.comparison is None:
            pytest.skip(p.missing or "no comparison")
        fn = p.comparison
    else:
        fn = p.ours
    if benchmark.disabled:
        benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)
    else:
        benchmark.pedantic(fn, rounds=max(cfg.min_repeats, 5), iterations=1, warmup_rounds=1)
    if side == "ours" and not benchmark.disabled:
        row = make_row(case, p, *measure_pair(p, cfg))
        if p.finalize is not None:
            p.finalize()
            row = make_row(case, p, row.ours, row.comparison)
        benchmark.extra_info.update(unit=case.unit, ratio=row.ratio, ratio_definition=row.ratio_definition,
                                    target=case.target, meets_target=row.meets_target, note=row.note, info=row.info)
