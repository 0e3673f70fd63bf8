"""Memory and checkpoint size under churn (job removal), at the issue's scale.

``churn-250k-50k``: 250,000 registrations with at most 50,000 live jobs
(GTS, learned reward precision, 8 batch sizes, every live job predicted and
observed once per round; :mod:`banditfleet.bench.churn`). ``extra_info``
holds the checkpoint bytes of the churned fleet, of a fresh fleet holding
only the live jobs (fed the same observations) and of the same churn without
removal, the allocated array bytes of each, and the ratios: the churned
checkpoint must stay within 1.2x the fresh fleet's and its allocated arrays
within 2x the live state. The timing is the churn itself against the same
churn without removal (same-run ratio in ``extra_info``). With
``--benchmark-disable`` the sizes are 25,000 / 5,000.
"""

from __future__ import annotations

import time

from banditfleet.bench.churn import churn_figures, churn_fleet


def test_churn_memory_and_checkpoint(benchmark, tmp_path):
    full = not benchmark.disabled
    registrations, max_live = (250_000, 50_000) if full else (25_000, 5_000)
    figures = churn_figures(registrations, max_live, workdir=str(tmp_path))
    assert figures["checkpoint_vs_fresh"] <= 1.2
    assert figures["allocated_vs_live"] <= 2.0
    t0 = time.perf_counter()
    churn_fleet(registrations, max_live, remove=False)
    no_removal = time.perf_counter() - t0
    benchmark.pedantic(churn_fleet, args=(registrations, max_live), rounds=1, iterations=1)
    with_removal = benchmark.stats.stats.median if benchmark.stats is not None else no_removal
    benchmark.extra_info.update(figures)
    benchmark.extra_info["time_vs_no_removal"] = with_removal / no_removal
