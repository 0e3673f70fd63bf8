"""Distributed replay: the built-in fleet locally vs on a 2-worker LocalCluster, and the
overhead per shard.

``extra_info`` holds the same-run comparison: ``ratio_vs_local`` (cluster
time / local time) and ``overhead_per_shard_ms`` (the extra time per shard
of a run cut into many shards over one cut into two, divided by the extra
shards). With ``--benchmark-disable`` the fleet is tiny and only checks that
everything runs.
"""

from __future__ import annotations

import statistics
import time

import pytest

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")

from banditfleet.replay.distributed import replay_fleet_distributed  # noqa: E402
from banditfleet.replay.fleet import Setting, replay_fleet  # noqa: E402
from banditfleet.replay.synthetic import synthetic_fleet  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _groups(benchmark) -> int:
    return 200 if benchmark.disabled else 20_000


def _median(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@pytest.mark.benchmark(group="replay-distributed")
def test_local_replay(benchmark):
    fleet = synthetic_fleet(groups=_groups(benchmark), seed=0)
    replay_fleet(fleet.subset(range(5)), [Setting()])  # compile / load kernels first
    result = benchmark.pedantic(replay_fleet, args=(fleet, [Setting()]), rounds=1 if benchmark.disabled else 3, iterations=1)
    benchmark.extra_info.update(groups=len(fleet), runs=result.n_runs)


@pytest.mark.benchmark(group="replay-distributed")
def test_two_worker_local_cluster(benchmark, client):
    fleet = synthetic_fleet(groups=_groups(benchmark), seed=0)
    replay_fleet_distributed(fleet.subset(range(8)), [Setting()], client=client, shards=2)  # warm the workers
    result = benchmark.pedantic(
        replay_fleet_distributed, args=(fleet, [Setting()]), kwargs={"client": client, "shards": 8}, rounds=1 if benchmark.disabled else 3, iterations=1
    )
    benchmark.extra_info.update(groups=len(fleet), runs=result.n_runs, shards=8)
    if benchmark.disabled:
        return
    local = _median(lambda: replay_fleet(fleet, [Setting()]))
    cluster = _median(lambda: replay_fleet_distributed(fleet, [Setting()], client=client, shards=8))
    few = _median(lambda: replay_fleet_distributed(fleet, [Setting()], client=client, shards=2))
    many = _median(lambda: replay_fleet_distributed(fleet, [Setting()], client=client, shards=200))
    benchmark.extra_info.update(
        local_s=local,
        cluster_s=cluster,
        ratio_vs_local=cluster / local,
        overhead_per_shard_ms=(many - few) / (200 - 2) * 1e3,
    )
