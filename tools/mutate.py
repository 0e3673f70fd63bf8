#!/usr/bin/env python3
"""Plant known bugs one at a time in a scratch copy of the repository and report survivors.

Usage (from the repository root, with the project's virtual environment)::

    python tools/mutate.py                 # every mutation
    python tools/mutate.py --list          # list them
    python tools/mutate.py -k pruning -k power   # ids containing any of these words
    python tools/mutate.py --json results.json

Each mutation is ``(id, file, original snippet, replacement, test files)``: the
snippet must occur exactly once in the file. The script

1. copies the working tree (not ``.git``, ``.venv``, caches) to a temporary
   directory, and points ``banditfleet`` and ``banditfleet.kernels`` at the copy
   (``PYTHONPATH``, plus a ``src/banditfleet/kernels`` symlink so the editable
   install's finder never supplies the live kernels); the live tree is never
   written;
2. runs every test file named by the selected mutations once, unmutated, with a
   fresh numba cache (``NUMBA_CACHE_DIR``); they must pass, and that cache
   becomes the warm base;
3. for each mutation: plants it, copies the warm cache, deletes the cache
   entries of the mutated kernel module and of every kernel module that imports
   it (numba does not invalidate callers' caches when a callee changes), runs
   the mutation's tests with ``-x``, and restores the file.

A mutation is *killed* when pytest fails (exit code 1), or errors in any
other way (the report says which); it *survives* when the tests pass. Mutations
marked ``boundscheck`` are memory-safety bugs (an out-of-bounds write) that
only a run with ``NUMBA_BOUNDSCHECK=1`` can see reliably, as in ``.ci/run``;
they run that way and are reported as such.

The report goes to stdout (and ``--json``); docs/testing.md records the last
results and the survivors accepted, with why.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Test files per area, fast and focused ones first (runs stop at the first failure).
T_GTS = ["tests/test_boundaries.py", "tests/test_refused_calls.py", "tests/test_gts.py", "tests/test_gts_reference.py"]
T_STREAMS = ["tests/test_streams.py"]
T_STATS = ["tests/test_stats.py", "tests/test_boundaries.py"]
T_PRUNING = ["tests/test_boundaries.py", "tests/test_refused_calls.py", "tests/test_pruning.py", "tests/test_pruning_reference.py"]
T_POWER = ["tests/test_boundaries.py", "tests/test_power.py"]
T_REPLAY = ["tests/test_replay_edges.py", "tests/test_replay_random.py"]
T_CHECKPOINT = ["tests/test_boundaries.py", "tests/test_checkpoint_format.py"]
T_JOURNAL = ["tests/test_boundaries.py", "tests/test_journal.py"]


@dataclass
class Mutation:
    id: str
    file: str
    original: str
    replacement: str
    tests: list[str]
    boundscheck: bool = False
    note: str = ""


M = Mutation
MUTATIONS: list[Mutation] = [
    # ------------------------------------------------------------ kernels/thompson.py
    M("thompson-scratch-not-grown", "kernels/thompson.py", "    max_n += slots.shape[0]\n", "", ["tests/test_boundaries.py", "tests/test_gts.py"], boundscheck=True,
      note="heap overrun when a batch repeats a slot (window 0)"),
    M("thompson-explore-le", "kernels/thompson.py", "explore |= on & (observation_count[slot] < need)", "explore |= on & (observation_count[slot] <= need)", T_GTS),
    M("thompson-explore-choice-le", "kernels/thompson.py", "            if observation_count[slot] < need:", "            if observation_count[slot] <= need:", T_GTS),
    M("thompson-first-draw-not-taken", "kernels/thompson.py", "    best = posterior_mean[slot] + math.sqrt(1.0 / posterior_precision[slot]) * z\n", "    best = 0.0\n", T_GTS),
    M("thompson-tie-takes-last", "kernels/thompson.py", "better = draw > best", "better = draw >= best", ["tests/test_decide.py"] + T_GTS),
    M("thompson-skip-parity", "kernels/thompson.py", "np.uint8(0), _U32(value >> _U64(32))), flag", "np.uint8(0), st[5]), flag", ["tests/test_decide.py"],
      note="the stale buffered half numpy leaves after an even number of 32-bit draws"),
    M("thompson-skip-no-redo", "kernels/thompson.py", "    if rare:\n        st = _choose_exact(saved, k, active, order, taken)\n", "", ["tests/test_decide.py"],
      note="a rejected draw of the skipped permutation must redo the job exactly"),
    M("thompson-skip-range", "kernels/thompson.py", "        e0 = a if a < b else b\n", "        e0 = a\n", ["tests/test_decide.py"]),
    M("thompson-ring-position", "kernels/thompson.py", "history_values[offset + n % window] = reward", "history_values[offset + (n + 1) % window] = reward", T_STATS[1:] + T_PRUNING[2:]),
    M("thompson-gather-fill", "kernels/thompson.py", "fill = n if n < window else window", "fill = n if n <= window else window", T_STATS[1:] + T_PRUNING[2:],
      note="equivalent: at n == window both give window"),
    M("thompson-scale-precision", "kernels/thompson.py", "draw = posterior_mean[slot] + math.sqrt(1.0 / posterior_precision[slot]) * z", "draw = posterior_mean[slot] + 1.0 / math.sqrt(posterior_precision[slot]) * z",
      ["tests/test_near_ties.py"] + T_GTS, note="algebraically equal; differs in the last ulp (killed by a constructed tie)"),
    # ------------------------------------------------------------ kernels/stats.py
    M("stats-sum-with-no-identity", "kernels/stats.py", "        return 0.0 + _pairwise_leaf(values, 0, n)\n    return 0.0 + pairwise_sum_with",
      "        return _pairwise_leaf(values, 0, n)\n    return pairwise_sum_with", T_STATS + T_GTS[2:]),
    M("stats-array-sum-no-identity", "kernels/stats.py", "    return 0.0 + pairwise_sum(values, 0, n)", "    return pairwise_sum(values, 0, n)", T_STATS),
    M("stats-zero-variance-precision", "kernels/stats.py", "    if variance == 0.0:\n        return np.inf", "    if variance == 0.0:\n        return 0.0", T_STATS + T_GTS[2:]),
    M("stats-increment-order", "kernels/stats.py", "new_mean = (precision * mean + reward_precision * (0.0 + reward)) / new_precision",
      "new_mean = (reward_precision * (0.0 + reward) + precision * mean) / new_precision", T_STATS + T_GTS[2:],
      note="equivalent: IEEE addition is commutative (only association changes a result)"),
    M("stats-leaf-threshold", "kernels/stats.py", "    if n < 8:\n        res = 0.0", "    if n < 9:\n        res = 0.0", T_STATS),
    # ------------------------------------------------------- kernels/streams.py, distributions.py
    M("streams-rotation", "kernels/streams.py", "rot = new_hi >> _U64(58)", "rot = new_hi >> _U64(59)", T_STREAMS),
    M("streams-uint32-half", "kernels/streams.py", "return (st[0], st[1], st[2], st[3], np.uint8(1), np.uint32(value >> _U64(32))), np.uint32(value & _MASK32)",
      "return (st[0], st[1], st[2], st[3], np.uint8(1), np.uint32(value & _MASK32)), np.uint32(value >> _U64(32))", T_STREAMS),
    M("streams-double-bits", "kernels/streams.py", "np.float64(value >> _U64(11)) * (1.0 / 9007199254740992.0)", "np.float64(value >> _U64(12)) * (1.0 / 4503599627370496.0)", T_STREAMS),
    M("distributions-lemire32-threshold", "kernels/distributions.py", "        while leftover < threshold:\n            st, draw = next_uint32_s(st)",
      "        while leftover <= threshold:\n            st, draw = next_uint32_s(st)", T_STREAMS),
    M("distributions-floyd-taken", "kernels/distributions.py", "        if taken[val]:\n            val = j", "        if taken[val]:\n            val = j - 1", T_STREAMS),
    M("distributions-zero-range", "kernels/distributions.py", "    if rng == _U64(0):\n        return st, _U64(0)", "    if rng == _U64(0):\n        return next_uint64_s(st)[0], _U64(0)", T_STREAMS),
    M("distributions-normal-tail-sign", "kernels/distributions.py", "if (rabs >> _U64(8)) & _U64(1):", "if (rabs >> _U64(9)) & _U64(1):", T_STREAMS,
      note="the ziggurat's tail (idx 0) is hit about once in 5e4 draws"),
    # ------------------------------------------------------------ kernels/pruning.py
    M("pruning-best-known-slot0", "kernels/pruning.py", "    if st.conv_slot[row] >= 0:\n        return arm_value[st.conv_slot[row]]",
      "    if st.conv_slot[row] > 0:\n        return arm_value[st.conv_slot[row]]", T_PRUNING),
    M("pruning-best-cost-not-reset", "kernels/pruning.py", "            st.round_default[row] = st.best_slot[row]\n        st.best_slot[row] = -1\n        st.best_cost[row] = np.inf\n",
      "            st.round_default[row] = st.best_slot[row]\n        st.best_slot[row] = -1\n", T_PRUNING),
    M("pruning-round-after-sides", "kernels/pruning.py",
      "        st.round[row] += 1\n        st.pos[row] = -1\n        st.current[row] = -1\n        st.expecting[row] = 0\n        _count_sides(st, row, arm_start, arm_count, arm_value)\n",
      "        st.pos[row] = -1\n        st.current[row] = -1\n        st.expecting[row] = 0\n        _count_sides(st, row, arm_start, arm_count, arm_value)\n        st.round[row] += 1\n", T_PRUNING),
    M("pruning-tie-takes-last", "kernels/pruning.py", "if st.best_cost[row] > st.pending_cost[row]:", "if st.best_cost[row] >= st.pending_cost[row]:", T_PRUNING),
    M("pruning-down-side-round0", "kernels/pruning.py", "        return slot <= d\n", "        return slot < d\n", T_PRUNING),
    M("pruning-failed-down-skips-round", "kernels/pruning.py", "            pos = st.n_down[row] - 1  # skip the rest of the down list",
      "            pos = st.n_down[row] + st.n_up[row] - 1  # skip the rest of the down list", T_PRUNING),
    M("pruning-last-round", "kernels/pruning.py", "    last = st.round[row] + 1 >= num_rounds\n", "    last = st.round[row] + 2 >= num_rounds\n", T_PRUNING),
    M("pruning-default-kept", "kernels/pruning.py", "        if st.best_slot[row] >= 0:\n            st.round_default[row] = st.best_slot[row]\n", "", T_PRUNING),
    M("pruning-concurrent-unexpected", "kernels/pruning.py", "        if awaited != 0 and awaited == values[i]:\n            scratch.expecting[row] = 0\n        elif not concurrency:",
      "        if awaited == values[i]:\n            scratch.expecting[row] = 0\n        elif not concurrency:", T_PRUNING,
      note="equivalent: batch sizes are positive, so awaited == 0 never equals one"),
    # ------------------------------------------------------------ kernels/power.py
    M("power-probe-trusts-fingerprint", "kernels/power.py", "            if entry_row[e] == row and entry_batch_size[e] == batch_size:", "            if entry_row[e] == row:", T_POWER),
    M("power-tie-takes-last", "kernels/power.py", "            if best_cost[e] > cost:", "            if best_cost[e] >= cost:", T_POWER),
    M("power-count-not-kept", "kernels/power.py", "            observe_count[e] += 1\n", "", T_POWER),
    M("power-rebuild-order", "kernels/power.py", "    for e in range(n_entries):\n        pos = _probe", "    for e in range(n_entries - 1, -1, -1):\n        pos = _probe", T_POWER,
      note="probe chains change after a rebuild"),
    # ------------------------------------------------------------ kernels/replay.py
    M("replay-never-started-beta", "kernels/replay.py", "q_cost[qn] = 100.0 * beta * mc", "q_cost[qn] = 100.0 * mc", T_REPLAY),
    M("replay-retry-cap-off-by-one", "kernels/replay.py", "if retries[u] > u_retry_cap[u]:", "if retries[u] >= u_retry_cap[u]:", T_REPLAY),
    M("replay-max-tries-off-by-one", "kernels/replay.py", "if tries[u] > MAX_TRIES:", "if tries[u] >= MAX_TRIES:", T_REPLAY),
    M("replay-cost-association", "kernels/replay.py", "                cost = eta * energy + (1.0 - eta) * max_power * time\n                cost_acc[u] += cost",
      "                cost = eta * energy + (1.0 - eta) * (max_power * time)\n                cost_acc[u] += cost", T_REPLAY),
    M("replay-epoch-cost-association", "kernels/replay.py", "cost_per_epoch = eta * epe + (1.0 - eta) * arm_max_pl[arm] * tpe",
      "cost_per_epoch = eta * epe + (1.0 - eta) * (arm_max_pl[arm] * tpe)", T_REPLAY,
      note="last-ulp change of the epoch cost; visible only when cost_ub // cost_per_epoch sits on an integer boundary"),
    M("replay-min-cost-not-kept", "kernels/replay.py", "                if reached:\n                    if min_cost[u] > cost:", "                if reached:\n                    if min_cost[u] > cost * 2.0:", T_REPLAY),
    # ------------------------------------------------------------ src state machines and files
    M("traces-max-pl-whole-trace", "src/banditfleet/replay/traces.py", "a_max_pl.append(float(power_df.power_limit.max().item()))", "a_max_pl.append(float(trace.max_power))", T_REPLAY),
    M("pruning-observe-grows-before-validate", "src/banditfleet/pruning.py",
      "            if vcode != ERR_NONE:\n                raise self._observe_error(row, bs, vcode, int(scratch.expecting[row]))\n            s.reserve_history_chunks(1)",
      "            s.reserve_history_chunks(1)",
      ["tests/test_refused_calls.py", "tests/test_pruning.py"]),
    M("checkpoint-trailing-bytes", "src/banditfleet/checkpoint.py", "if size > expected_size or _read_at(", "if _read_at(", T_CHECKPOINT),
    M("checkpoint-no-fsync-before-rename", "src/banditfleet/checkpoint.py", "            f.flush()\n            os.fsync(f.fileno())\n        os.replace(tmp, path)", "            f.flush()\n        os.replace(tmp, path)",
      T_CHECKPOINT),
    M("journal-batch-no-fsync", "src/banditfleet/journal.py", "        if self.fsync == \"batch\":\n            return end", "        if self.fsync == \"batch\":\n            return None", T_JOURNAL),
]

_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache", "*.egg-info", ".benchmarks", "*.nbi", "*.nbc", "build", "dist")
_CHILDREN: set[subprocess.Popen] = set()
_LOCK = threading.Lock()


def _kernel_dependents() -> dict[str, set[str]]:
    """kernel module stem -> stems of the kernel modules that import it, transitively (itself included)."""
    imports: dict[str, set[str]] = {}
    for path in (ROOT / "kernels").glob("*.py"):
        imports[path.stem] = set(re.findall(r"^from \.(\w+) import", path.read_text(), re.M))
    out = {}
    for stem in imports:
        deps, frontier = {stem}, [stem]
        while frontier:
            cur = frontier.pop()
            for mod, imp in imports.items():
                if cur in imp and mod not in deps:
                    deps.add(mod)
                    frontier.append(mod)
        out[stem] = deps
    return out


def _run(cmd, cwd, env, log, timeout):
    """Run in a new session (so the whole tree can be stopped); (exit code, seconds, output)."""
    t0 = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with _LOCK:
            _CHILDREN.add(proc)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        finally:
            with _LOCK:
                _CHILDREN.discard(proc)
    return rc, time.time() - t0, Path(log).read_text()


def _stop_children(*_):
    with _LOCK:
        for proc in list(_CHILDREN):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    sys.exit(130)


def _summary_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    fails = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    return (fails[0] if fails else "") + (" | " if fails else "") + (lines[-1] if lines else "")


def _relocate_cache(cache: Path, old_repo: Path, new_repo: Path) -> None:
    """numba's user cache mirrors each source file's absolute folder under the cache dir;
    move the entries made for ``old_repo`` to where ``new_repo``'s sources look for them."""
    old = cache / str(old_repo).lstrip(os.sep)
    if old.is_dir():
        new = cache / str(new_repo).lstrip(os.sep)
        new.parent.mkdir(parents=True, exist_ok=True)
        old.rename(new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", action="append", default=[], help="run mutations whose id contains this (repeatable)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--jobs", type=int, default=1, help="mutations tested at once, each in its own copy (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--timeout", type=float, default=1500.0, help="seconds per test run")
    ap.add_argument("--profile", default="ci", help="hypothesis profile (default: ci)")
    args = ap.parse_args()

    chosen = [m for m in MUTATIONS if not args.k or any(k in m.id for k in args.k)]
    if args.list:
        for m in chosen:
            print(f"{m.id:42s} {m.file}{'  [boundscheck]' if m.boundscheck else ''}")
        print(f"{len(chosen)} mutations")
        return 0
    for m in chosen:
        count = (ROOT / m.file).read_text().count(m.original)
        if count != 1:
            print(f"error: {m.id}: the original snippet occurs {count} times in {m.file}", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _stop_children)
    signal.signal(signal.SIGINT, _stop_children)

    scratch = Path(tempfile.mkdtemp(prefix="banditfleet-mutate."))
    try:
        return _mutate(args, chosen, scratch)
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def _mutate(args, chosen, scratch: Path) -> int:
    repo = scratch / "repo-0"
    shutil.copytree(ROOT, repo, ignore=_IGNORE, symlinks=True)
    (repo / "src" / "banditfleet" / "kernels").symlink_to(repo / "kernels", target_is_directory=True)
    logs = scratch / "logs"
    logs.mkdir()
    env = dict(os.environ)
    env.update(HYPOTHESIS_PROFILE=args.profile, PYTHONDONTWRITEBYTECODE="1")
    env.pop("NUMBA_BOUNDSCHECK", None)

    def repo_env(r: Path) -> dict:
        return dict(env, PYTHONPATH=str(r / "src"))

    check = subprocess.run(
        [sys.executable, "-c", "import banditfleet, banditfleet.kernels as k; print(banditfleet.__file__); print(k.__file__)"],
        cwd=repo, env=repo_env(repo), capture_output=True, text=True,
    )
    if check.returncode != 0 or any(not p.startswith(str(repo)) for p in check.stdout.split()):
        print(f"error: the scratch copy does not import its own code:\n{check.stdout}{check.stderr}", file=sys.stderr)
        return 2
    pytest = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]

    bases = {False: scratch / "numba-base"}
    all_tests = sorted({t for m in chosen for t in m.tests})
    print(f"scratch: {scratch}")
    print(f"baseline: {len(all_tests)} test files, unmutated, cold numba cache ...", flush=True)
    rc, secs, text = _run(pytest + all_tests, repo, dict(repo_env(repo), NUMBA_CACHE_DIR=str(bases[False])), logs / "baseline.log", args.timeout * 3)
    print(f"baseline: exit {rc} in {secs:.0f} s: {_summary_line(text)}", flush=True)
    if rc != 0:
        print(f"error: the unmutated tests fail; see {logs / 'baseline.log'}", file=sys.stderr)
        return 2
    if any(m.boundscheck for m in chosen):
        bases[True] = scratch / "numba-base-boundscheck"
        bc_tests = sorted({t for m in chosen if m.boundscheck for t in m.tests})
        rc, secs, text = _run(pytest + bc_tests, repo, dict(repo_env(repo), NUMBA_CACHE_DIR=str(bases[True]), NUMBA_BOUNDSCHECK="1"), logs / "baseline-boundscheck.log", args.timeout * 3)
        print(f"baseline (NUMBA_BOUNDSCHECK=1): exit {rc} in {secs:.0f} s: {_summary_line(text)}", flush=True)
        if rc != 0:
            print("error: the unmutated tests fail with bounds checks", file=sys.stderr)
            return 2

    # One copy per worker, with the source mtimes of the first (numba's cache stamps).
    repos = [repo]
    for w in range(1, max(args.jobs, 1)):
        r = scratch / f"repo-{w}"
        shutil.copytree(repo, r, symlinks=True)
        (r / "src" / "banditfleet" / "kernels").unlink()
        (r / "src" / "banditfleet" / "kernels").symlink_to(r / "kernels", target_is_directory=True)
        repos.append(r)
    free = list(repos)
    dependents = _kernel_dependents()
    results: list[dict] = []
    done = [0]

    def one(i: int, m: Mutation) -> dict:
        with _LOCK:
            r = free.pop()
        try:
            target = r / m.file
            original_text = target.read_text()
            stamp = target.stat()
            target.write_text(original_text.replace(m.original, m.replacement, 1))
            cache = scratch / f"numba-{i}"
            shutil.copytree(bases[m.boundscheck], cache)
            if r != repo:
                _relocate_cache(cache, repo, r)
            if m.file.startswith("kernels/"):
                stale = dependents[Path(m.file).stem]
                for p in cache.rglob("*"):
                    if p.suffix in (".nbi", ".nbc") and p.name.split(".", 1)[0] in stale:
                        p.unlink()
            run_env = dict(repo_env(r), NUMBA_CACHE_DIR=str(cache))
            if m.boundscheck:
                run_env["NUMBA_BOUNDSCHECK"] = "1"
            try:
                rc, secs, text = _run(pytest + m.tests, r, run_env, logs / f"{m.id}.log", args.timeout)
            finally:
                target.write_text(original_text)
                os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # numba's cache stamp of the file
                shutil.rmtree(cache, ignore_errors=True)
        finally:
            with _LOCK:
                free.append(r)
        status = "survived" if rc == 0 else "killed" if rc == 1 else f"killed (exit {rc})"
        res = dict(id=m.id, file=m.file, status=status, seconds=round(secs, 1), boundscheck=m.boundscheck, detail=_summary_line(text), note=m.note)
        with _LOCK:
            done[0] += 1
            print(f"[{done[0]}/{len(chosen)}] {m.id:42s} {status:18s} {secs:6.0f} s  {_summary_line(text)[:150]}", flush=True)
        return res

    with ThreadPoolExecutor(max_workers=len(repos)) as pool:
        results = list(pool.map(lambda im: one(*im), enumerate(chosen, 1)))

    killed = [r for r in results if r["status"] != "survived"]
    print()
    print(f"killed {len(killed)} of {len(results)} ({100.0 * len(killed) / max(len(results), 1):.0f} %)")
    for r in results:
        if r["status"] == "survived":
            print(f"  survived: {r['id']} ({r['file']}){': ' + r['note'] if r['note'] else ''}")
    if args.json:
        args.json.write_text(json.dumps(dict(results=results, killed=len(killed), total=len(results)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
