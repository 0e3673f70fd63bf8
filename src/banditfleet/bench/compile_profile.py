"""Per-kernel compile time of one ``banditfleet`` command, from numba's event API.

    NUMBA_CACHE_DIR=$(mktemp -d) python -m banditfleet.bench.compile_profile [--json OUT] [--top N] -- replay

runs ``banditfleet.cli.main(argv)`` in this process with a listener on numba's
``numba:compile`` event and prints, per kernel (dispatcher), its compiles
(specializations, with their argument types when there are several) and its
exclusive ("self": without the kernels it compiled on the way; "of it LLVM":
the part spent in LLVM, optimizing and emitting machine code for the kernel and
the compiled callees linked into it) and inclusive CPU seconds, then the process's totals: import, compiling (top-level compile
events), numba's cache loads and writes, and the rest (the command's own work).
In an empty ``NUMBA_CACHE_DIR`` this is the first run after install;
``banditfleet bench`` runs it so for its first-run row
(:func:`banditfleet.bench.scaling.compile_times`). Times are process CPU
seconds (the machine may be shared) next to wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from typing import Any

__all__ = ["profile_command", "format_profile", "main"]


def _kernel_name(dispatcher: Any) -> str:
    f = getattr(dispatcher, "py_func", None)
    module = (getattr(f, "__module__", None) or "?").replace("banditfleet.kernels.", "")
    return f"{module}.{getattr(f, '__qualname__', type(dispatcher).__name__)}"


def profile_command(argv: list[str]) -> dict[str, Any]:
    """Run ``banditfleet <argv>`` here and return its compile profile.

    Keys: ``process_cpu`` (CPU seconds since the process started), ``process_wall``
    (wall seconds of this call), ``import_cpu``, ``compile_cpu``/``compile_wall`` (top-level
    compile events), ``cache_loads``/``cache_load_cpu`` (numba's on-disk cache,
    hits and misses), ``cache_writes``/``cache_write_cpu``, ``compiles`` and
    ``kernels`` (counts), ``rc`` (the command's exit code) and ``table``: one
    entry per kernel with ``compiles``, ``self_cpu``, ``cpu`` (inclusive),
    ``wall`` and ``signatures``, slowest first.
    """
    w0 = time.perf_counter()
    from numba.core import caching
    from numba.core import event as ev

    stack: list[list[Any]] = []  # [kernel, wall at start, cpu at start, children's wall, children's cpu]
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"compiles": 0, "wall": 0.0, "cpu": 0.0, "self_cpu": 0.0, "llvm_cpu": 0.0, "signatures": []})
    top = {"wall": 0.0, "cpu": 0.0}

    class _Listener(ev.Listener):
        def on_start(self, event: Any) -> None:
            key = _kernel_name(event.data["dispatcher"])
            rows[key]["signatures"].append("(" + ", ".join(str(a) for a in event.data["args"]) + ")")
            stack.append([key, time.perf_counter(), time.process_time(), 0.0, 0.0])

        def on_end(self, event: Any) -> None:
            key, w, c, child_w, child_c = stack.pop()
            dw, dc = time.perf_counter() - w, time.process_time() - c
            r = rows[key]
            r["compiles"] += 1
            r["wall"] += dw
            r["cpu"] += dc
            r["self_cpu"] += dc - child_c
            if stack:
                stack[-1][3] += dw
                stack[-1][4] += dc
            else:
                top["wall"] += dw
                top["cpu"] += dc

    io = {"cache_loads": 0, "cache_load_cpu": 0.0, "cache_writes": 0, "cache_write_cpu": 0.0}
    orig_load, orig_save = caching.Cache.load_overload, caching.Cache.save_overload

    def _load(self: Any, *a: Any, **k: Any) -> Any:
        c = time.process_time()
        try:
            return orig_load(self, *a, **k)
        finally:
            io["cache_loads"] += 1
            io["cache_load_cpu"] += time.process_time() - c

    def _save(self: Any, *a: Any, **k: Any) -> Any:
        c = time.process_time()
        try:
            return orig_save(self, *a, **k)
        finally:
            io["cache_writes"] += 1
            io["cache_write_cpu"] += time.process_time() - c

    llvm: list[float] = []

    class _LLVMListener(ev.Listener):
        # LLVM's share of a kernel's own compile (optimization and machine code of the
        # kernel and of the compiled callees linked into it)
        def on_start(self, event: Any) -> None:
            llvm.append(time.process_time())

        def on_end(self, event: Any) -> None:
            dc = time.process_time() - llvm.pop()
            if stack and not llvm:
                rows[stack[-1][0]]["llvm_cpu"] += dc

    listener, llvm_listener = _Listener(), _LLVMListener()
    caching.Cache.load_overload, caching.Cache.save_overload = _load, _save
    ev.register("numba:compile", listener)
    ev.register("numba:llvm_lock", llvm_listener)
    try:
        from banditfleet.cli import main as cli_main

        import_cpu = time.process_time()  # since the process started: the interpreter and every import
        rc = int(cli_main(list(argv)))
    finally:
        ev.unregister("numba:compile", listener)
        ev.unregister("numba:llvm_lock", llvm_listener)
        caching.Cache.load_overload, caching.Cache.save_overload = orig_load, orig_save
    table = sorted(({"kernel": k, **v} for k, v in rows.items()), key=lambda r: -r["self_cpu"])
    return {
        "argv": list(argv), "rc": rc, "cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "process_cpu": time.process_time(), "process_wall": time.perf_counter() - w0, "import_cpu": import_cpu,
        "compile_cpu": top["cpu"], "compile_wall": top["wall"], **io,
        "kernels": len(table), "compiles": sum(r["compiles"] for r in table), "table": table,
    }


def format_profile(p: dict[str, Any], top: int = 40) -> list[str]:
    """The profile as text lines: totals, the slowest kernels, and every kernel compiled more than once."""
    rest = p["process_cpu"] - p["import_cpu"] - p["compile_cpu"]
    lines = [
        f"`banditfleet {' '.join(p['argv'])}`: process {p['process_cpu']:.1f} s CPU ({p['process_wall']:.1f} s wall): "
        f"import {p['import_cpu']:.1f} s, compiling {p['compile_cpu']:.1f} s ({p['compiles']} compiles of {p['kernels']} kernels), "
        f"the rest {rest:.1f} s (of which numba cache loads {p['cache_load_cpu']:.2f} s, writes {p['cache_write_cpu']:.2f} s)",
        f"  {'kernel':46s} {'compiles':>8s} {'self CPU s':>10s} {'of it LLVM':>10s} {'incl. CPU s':>11s}",
    ]
    for r in p["table"][:top]:
        lines.append(f"  {r['kernel'][:46]:46s} {r['compiles']:8d} {r['self_cpu']:10.2f} {r['llvm_cpu']:10.2f} {r['cpu']:11.2f}")
    for r in p["table"]:
        if r["compiles"] > 1:
            lines.append(f"  {r['kernel']}: {r['compiles']} specializations: " + "; ".join(s[:200] for s in r["signatures"]))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m banditfleet.bench.compile_profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, metavar="PATH", help="write the profile as JSON here")
    ap.add_argument("--top", type=int, default=40, help="kernels to print (default 40)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then banditfleet's arguments")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    p = profile_command(command)
    print("\n".join(format_profile(p, args.top)), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(p, f, indent=1)
    return p["rc"]


if __name__ == "__main__":
    sys.exit(main())
