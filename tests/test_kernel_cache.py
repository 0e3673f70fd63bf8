"""A new process loads every kernel family from numba's on-disk cache without compiling.

The fleet handle is a numba structref, and caching functions over structrefs has
had numba bugs (a cached entry that will not load is silently recompiled in every
process). One process fills a fresh cache directory; a second one runs the same
workload and must report cache hits, and no misses, for every dispatcher it used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _run(cache: Path, out: Path, mode: str = "all") -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env.pop("NUMBA_DISABLE_JIT", None)
    subprocess.run([sys.executable, str(HERE / "cache_workload.py"), str(out), mode], check=True, env=env, cwd=HERE, timeout=1800)
    return json.loads(out.read_text())


#: Families the command line's replay uses; after it ran, nothing in them compiles again.
#: (Not ``power``: the compiled fleet driver answers JIT power limits from the trace.)
CLI_FAMILIES = ("replay", "pruning", "fleet", "handle", "streams")


@pytest.mark.timeout(3600)
def test_second_process_loads_every_family_from_cache(tmp_path):
    cache = tmp_path / "numba-cache"
    # 1. A new user's first command fills the cache with what it uses ...
    cli = _run(cache, tmp_path / "cli.json", "cli")
    for family in CLI_FAMILIES:
        assert any(d["misses"] for d in cli[family].values()), f"kernels.{family} did not compile into the fresh cache"
    # 2. ... and the Simulator (PruningGTS and GTS, groups and sequential jobs) reuses it:
    # no kernel the CLI compiled compiles again under another specialization.
    sim = _run(cache, tmp_path / "sim.json", "simulator")
    for family, dispatchers in sim.items():
        for name, d in dispatchers.items():
            if name in cli[family]:
                assert d["misses"] == [], f"kernels.{family}.{name} compiled again after the CLI warmed the cache: {d['misses']}"
    # 3. Every family, through every public entry point.
    first = _run(cache, tmp_path / "first.json")
    for family, dispatchers in first.items():
        assert dispatchers, f"the workload used no dispatcher of kernels.{family}"
        assert any(d["misses"] for run in (cli, sim, first) for d in run[family].values()), (
            f"kernels.{family} did not compile into the fresh cache"
        )
    # 4. A new process compiles nothing at all.
    second = _run(cache, tmp_path / "second.json")
    assert set(second) == set(first)
    for family, dispatchers in second.items():
        # Callees compiled only as part of a cached caller are not loaded on their own,
        # so the second process may use fewer dispatchers, but never new ones.
        assert dispatchers, f"the second process used no dispatcher of kernels.{family}"
        assert set(dispatchers) <= set(first[family]) | set(sim[family]) | set(cli[family]), family
        for name, d in dispatchers.items():
            assert d["misses"] == [], f"kernels.{family}.{name} compiled again: {d['misses']}"
            assert d["hits"], f"kernels.{family}.{name} was not loaded from the cache"


def test_numba_pin_matches_the_tested_range():
    """pyproject pins numba to the range kernels/_config.py says was tested, and it is installed."""
    import numba
    from banditfleet.kernels._config import NUMBA_TESTED

    text = (HERE.parent / "pyproject.toml").read_text()
    assert f'"numba{NUMBA_TESTED}"' in text
    low, high = NUMBA_TESTED.split(",")
    version = tuple(int(p) for p in numba.__version__.split(".")[:3])
    assert version >= tuple(int(p) for p in low.lstrip(">=").split("."))
    assert version < tuple(int(p) for p in high.lstrip("<").split(".")) + (0,) * (3 - len(high.lstrip("<").split(".")))
