"""Fleet replay sharded across a Dask cluster (``pip install 'banditfleet[distributed]'``).

Every group is replayed by its own optimizer rows and its own random
streams, seeded from its group id, so a group's history does not depend on
which other groups share its process. :func:`replay_fleet_distributed`
therefore splits the fleet into contiguous shards of groups, replays each
shard with :func:`~banditfleet.replay.fleet.replay_fleet` on a worker, ships
the histories back as arrays (a handful per shard, never one Python object
per run), and merges them in group order. The merged result equals the
single-process replay entry by entry for any number of shards and workers.

Faults: a task whose worker dies is rescheduled by Dask on another worker
(and retried up to ``retries`` times on other exceptions of the worker
itself); its result is the same, because a shard's replay is a pure
function of its groups and settings. A shard that fails for a data reason
(a :class:`~banditfleet.errors.BanditFleetError`, e.g. a trace a group
cannot run on) is not retried: the whole replay fails with the shard's
groups and the reason named.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from banditfleet.errors import BanditFleetError, MissingDependencyError, ReplayError
from banditfleet.replay.engine import UnitsResult, merge_shards
from banditfleet.replay.fleet import Fleet, FleetResult, Setting, replay_fleet

__all__ = ["replay_fleet_distributed", "connect", "local_cluster", "quiet_dask_logs", "shard_bounds"]

logger = logging.getLogger("banditfleet")

_INSTALL_HINT = "distributed replay needs Dask: pip install 'banditfleet[distributed]' (or: pip install 'dask[distributed]')"

_PER_UNIT = ("status", "error", "runs", "min_cost")
_HISTORY = ("sub", "bs", "pl", "energy", "time", "reached")


def _distributed():
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching in tests
        raise MissingDependencyError(_INSTALL_HINT) from exc
    return distributed


def quiet_dask_logs(verbose: int = 0) -> None:
    """Dask's own loggers at ERROR (``verbose`` 0), INFO (1) or DEBUG (2 and more).

    Importing ``distributed`` sets its loggers to INFO, which prints a few
    dozen lines for a local cluster that starts and stops; the command line
    calls this so that they show only with ``-v``.
    """
    _distributed()  # imported first: its import configures the levels this overrides
    level = logging.ERROR if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    for name in ("distributed", "dask", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(level)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed."):
            lg = logging.getLogger(name)
            if lg.level != logging.NOTSET:
                lg.setLevel(level)


def connect(scheduler: Any) -> Any:
    """A ``dask.distributed.Client`` for a client, or a scheduler address such as ``tcp://host:8786``."""
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        return scheduler
    if not isinstance(scheduler, str):
        raise ReplayError(f"scheduler must be a dask.distributed.Client or an address like tcp://host:8786, got {scheduler!r}")
    return distributed.Client(scheduler, timeout=10)


def local_cluster(workers: int, threads_per_worker: int = 1) -> Any:
    """A client of a new local cluster of ``workers`` processes, listening on loopback only."""
    distributed = _distributed()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ReplayError(f"workers must be a positive integer, got {workers!r}")
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=threads_per_worker, processes=True, host="127.0.0.1", dashboard_address=None
    )
    return distributed.Client(cluster)


def shard_bounds(n_groups: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous, non-empty ``[start, stop)`` ranges of groups, as even as possible."""
    shards = max(1, min(int(shards), n_groups)) if n_groups else 1
    edges = np.linspace(0, n_groups, shards + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a] or [(0, 0)]


def _replay_shard(fleet: Fleet, settings: list[Setting]) -> dict[str, Any]:
    """Worker side: replay one shard; return its result as arrays (or a data error)."""
    try:
        result = replay_fleet(fleet, settings).result
    except BanditFleetError as exc:
        return {"data_error": f"{type(exc).__name__}: {exc}"}
    out: dict[str, Any] = {name: getattr(result, name) for name in _PER_UNIT + _HISTORY}
    out["unit"] = result.unit
    out["seconds"] = result.seconds
    out["rounds"] = result.rounds
    return out


def replay_fleet_distributed(
    fleet: Fleet,
    settings: Sequence[Setting] | None = None,
    client: Any = None,
    shards: int | None = None,
    retries: int = 2,
    progress: Callable[[int, int], None] | None = None,
    timeout: float | None = None,
) -> FleetResult:
    """Replay ``fleet`` under ``settings`` on a Dask cluster; equal to :func:`replay_fleet`.

    Args:
        fleet: The groups to replay.
        settings: Settings to replay every group under (default: one default setting).
        client: A ``dask.distributed.Client`` or a scheduler address.
        shards: Number of shards (default: four per worker thread, at most one per group).
        retries: Retries of a shard on other failures than a worker's death
            (Dask reschedules tasks of dead workers by itself).
        progress: Called with (shards done, shards) as shards complete.
        timeout: Seconds to wait for all shards before giving up with
            :class:`~banditfleet.errors.ReplayError` (default: wait forever).
    """
    distributed = _distributed()
    settings = list(settings) if settings is not None else [Setting()]
    if not settings:
        raise ReplayError("no setting to replay")
    if client is None:
        raise ReplayError("replay_fleet_distributed needs a dask.distributed.Client or a scheduler address")
    client = connect(client)
    G = len(fleet)
    if shards is None:
        threads = sum(client.nthreads().values()) or 1
        shards = 4 * threads
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise ReplayError(f"shards must be a positive integer, got {shards!r}")
    bounds = shard_bounds(G, int(shards))
    t0 = time.perf_counter()
    token = uuid.uuid4().hex[:12]
    futures = []
    for i, (a, b) in enumerate(bounds):
        shard = fleet.subset(np.arange(a, b, dtype=np.int64))
        futures.append(client.submit(_replay_shard, shard, settings, key=f"banditfleet-shard-{token}-{i}", retries=retries, pure=False))
    index_of = {f.key: i for i, f in enumerate(futures)}
    parts: list[dict[str, Any] | None] = [None] * len(futures)
    done = 0
    try:
        completed = distributed.as_completed(futures, timeout=timeout)
        for future in completed:
            i = index_of[future.key]
            part = future.result()
            if "data_error" in part:
                a, b = bounds[i]
                names = f"{fleet.group_ids[a]}" if b - a == 1 else f"{fleet.group_ids[a]} .. {fleet.group_ids[b - 1]}"
                raise ReplayError(f"shard {i} (groups {names}) failed: {part['data_error']}")
            parts[i] = part
            done += 1
            if progress is not None:
                progress(done, len(futures))
    except TimeoutError:
        raise ReplayError(f"distributed replay: {done} of {len(futures)} shards done after {timeout} s; giving up") from None
    finally:
        for f in futures:
            if not f.done():
                f.cancel()
    result = _merge(parts, bounds, G, len(settings))  # type: ignore[arg-type]
    result.seconds = time.perf_counter() - t0
    logger.info("distributed replay: %d groups x %d settings in %d shards, %.2f s", G, len(settings), len(bounds), result.seconds)
    return FleetResult(fleet, settings, result)


def _merge(parts: list[dict[str, Any]], bounds: list[tuple[int, int]], n_groups: int, n_settings: int) -> UnitsResult:
    """Shard results in global unit order (unit = setting * groups + group): see :func:`merge_shards`."""
    results = [
        UnitsResult(offsets=np.zeros(0, np.int64), rounds=int(p["rounds"]), **{name: p[name] for name in _PER_UNIT + _HISTORY + ("unit",)})
        for p in parts
    ]
    return merge_shards(results, bounds, n_groups, n_settings)
