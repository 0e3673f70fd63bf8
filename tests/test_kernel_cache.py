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


def _run(cache: Path, out: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env.pop("NUMBA_DISABLE_JIT", None)
    subprocess.run([sys.executable, str(HERE / "cache_workload.py"), str(out)], check=True, env=env, cwd=HERE, timeout=1800)
    return json.loads(out.read_text())


@pytest.mark.timeout(3600)
def test_second_process_loads_every_family_from_cache(tmp_path):
    cache = tmp_path / "numba-cache"
    first = _run(cache, tmp_path / "first.json")
    # The first process compiled (missed) something in every family: the cache was empty.
    for family, dispatchers in first.items():
        assert dispatchers, f"the workload used no dispatcher of kernels.{family}"
        assert any(d["misses"] for d in dispatchers.values()), f"kernels.{family} did not compile into the fresh cache"
    second = _run(cache, tmp_path / "second.json")
    assert set(second) == set(first)
    for family, dispatchers in second.items():
        # Callees compiled only as part of a cached caller are not loaded on their own,
        # so the second process may use fewer dispatchers, but never new ones.
        assert dispatchers, f"the second process used no dispatcher of kernels.{family}"
        assert set(dispatchers) <= set(first[family]), family
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
