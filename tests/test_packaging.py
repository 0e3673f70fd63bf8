"""banditfleet installs as one package, kernels included, with its console script.

The repository keeps the jitted kernels in a top-level ``kernels/`` directory
that setuptools installs as the subpackage ``banditfleet.kernels``. From a
regular (wheel) install, as CI does with ``pip install .``, that subpackage
must live inside the installed ``banditfleet`` directory in site-packages and
its kernels must run there. From an editable install it maps back to the
repository's ``kernels/``. With the environment variable ``CI`` set, only the
installed-wheel layout is accepted: that is the real proof that a user's
``pip install`` gets a working package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import banditfleet
import banditfleet.cli
import banditfleet.kernels

REPO = Path(__file__).resolve().parents[1]


def _installed_dist() -> metadata.Distribution:
    """The distribution pip installed.

    Not simply ``metadata.distribution("banditfleet")``: a build from the
    checkout leaves ``banditfleet.egg-info`` in the repository root, and with
    the root on ``sys.path`` (``python -m pytest``) that one would be found first.
    """
    found = [
        d
        for d in metadata.distributions()
        if (d.metadata["Name"] or "").lower() == "banditfleet" and d.read_text("INSTALLER") is not None
    ]
    assert len(found) == 1, f"expected one installed banditfleet, found {[str(d._path) for d in found]}"
    return found[0]


def _is_editable() -> bool:
    """Whether pip recorded the installed distribution as editable (PEP 610)."""
    text = _installed_dist().read_text("direct_url.json")
    if not text:
        return False
    return bool(json.loads(text).get("dir_info", {}).get("editable", False))


def _site_dirs() -> list[Path]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return [Path(p).resolve() for p in paths]


def _kernels_run() -> None:
    from banditfleet.kernels.distributions import standard_normal
    from banditfleet.kernels.streams import allocate_streams, next_uint64, seed_streams

    streams = allocate_streams(2)
    seed_streams(streams, np.arange(2, dtype=np.int64), np.array([42, 7], np.uint64))
    raw = np.random.default_rng(42).bit_generator.random_raw(3)
    assert [int(next_uint64(streams, 0)) for _ in range(3)] == [int(x) for x in raw]
    assert standard_normal(streams, 1) == np.random.default_rng(7).standard_normal()


def test_kernels_subpackage_layout():
    kernels_init = Path(banditfleet.kernels.__file__).resolve()
    package_dir = Path(banditfleet.__file__).resolve().parent
    if os.environ.get("CI") or not _is_editable():
        assert not _is_editable(), "CI must test a regular (non-editable) install: pip install ."
        assert kernels_init == package_dir / "kernels" / "__init__.py"
        assert any(site in package_dir.parents for site in _site_dirs()), (
            f"banditfleet imported from {package_dir}, not from site-packages {_site_dirs()}"
        )
        # A virtual environment inside the clone (README's `.venv`) puts
        # site-packages under REPO, so what matters is not the source tree.
        assert package_dir != REPO / "src" / "banditfleet", f"banditfleet imported from the checkout {package_dir}"
        assert kernels_init != REPO / "kernels" / "__init__.py", f"kernels imported from the checkout {kernels_init}"
        for module in ("streams", "distributions", "stats", "thompson", "_ziggurat_tables"):
            assert (package_dir / "kernels" / f"{module}.py").is_file(), f"kernels/{module}.py was not installed"
    else:
        assert kernels_init == REPO / "kernels" / "__init__.py"
        assert package_dir == REPO / "src" / "banditfleet"


def test_installed_kernels_run():
    _kernels_run()


def test_kernels_are_not_a_top_level_package():
    """Only ``banditfleet`` is installed at the top level; ``kernels`` is not."""
    dist = _installed_dist()
    top_level = (dist.read_text("top_level.txt") or "").split()
    if top_level:
        assert top_level == ["banditfleet"]
    if not _is_editable():
        installed = [Path(str(f)) for f in dist.files or []]
        assert any(p.parts[:2] == ("banditfleet", "kernels") for p in installed)
        assert not any(p.parts[0] == "kernels" for p in installed)


def test_console_script_is_declared():
    ours = [ep for ep in _installed_dist().entry_points if ep.group == "console_scripts"]
    assert [(ep.name, ep.value) for ep in ours] == [("banditfleet", "banditfleet.cli:main")]
    assert ours[0].load() is banditfleet.cli.main
    # And through the global registry that tools consult.
    scripts = metadata.entry_points(group="console_scripts")
    assert {ep.value for ep in scripts if ep.name == "banditfleet"} == {"banditfleet.cli:main"}


def _script_path() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / ("banditfleet.exe" if os.name == "nt" else "banditfleet")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("banditfleet")
    if found is None:
        pytest.fail("the banditfleet console script is not installed next to this Python or on PATH")
    return found


def test_console_script_help_runs():
    proc = subprocess.run([_script_path(), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: banditfleet" in proc.stdout
    assert "demo" in proc.stdout


def test_python_m_banditfleet_help_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "banditfleet", "demo", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "--jobs" in proc.stdout and "--no-progress" in proc.stdout and "--json" in proc.stdout


def test_version_matches_metadata():
    assert banditfleet.__version__ == _installed_dist().version


# ------------------------------------------------------------------- README
README = REPO / "README.md"
VENV = "python3 -m venv .venv && . .venv/bin/activate && "
QUICK_START = [VENV + 'python -m pip install ".[plot]" && banditfleet replay', VENV + 'python -m pip install ".[test]" && python -m pytest']


def _readme() -> str:
    if not README.is_file():
        pytest.skip("README.md is not next to the tests (not running from a checkout)")
    return README.read_text()


def test_readme_quick_start_is_the_two_commands():
    import re

    text = _readme()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]
    assert commands == QUICK_START
    ci = (REPO / ".ci" / "run").read_text()
    assert any(line.strip() == QUICK_START[1] for line in ci.splitlines()), ".ci/run must run the README's test command"


def test_readme_names_only_exported_classes():
    import re

    text = _readme()
    table = text.split("The reference-shaped classes", 1)[1].split("\n\n", 2)[1]
    names = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert "GTSBatchSizeOptimizer" in names
    assert {"GTSBatchSizeOptimizer", "PruningGTSBatchSizeOptimizer", "JITPowerLimitOptimizer"} <= set(names)
    missing = [n for n in names if n not in banditfleet.__all__]
    assert not missing, f"README documents classes banditfleet does not export: {missing}"


def test_readme_links_point_to_files():
    import re

    links = re.findall(r"\]\(((?!https?://)[^)#]+)(?:#[^)]*)?\)", _readme())
    assert links
    missing = [link for link in links if not (REPO / link).exists()]
    assert not missing, f"README links to missing files: {missing}"
