"""The ``banditfleet`` command line (also ``python -m banditfleet``).

Subcommands are registered in :data:`COMMANDS`; each has an ``add_arguments``
function that fills its argparse sub-parser and a ``run`` function that takes
the parsed namespace and returns the exit code. Only this module prints;
library code logs through :mod:`logging` (``-v`` shows it).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from banditfleet import __version__
from banditfleet.demo import POLICIES, run_demo

__all__ = ["main", "build_parser", "ProgressBar"]


class ProgressBar:
    """Progress on stderr, called as ``bar(done, total)``.

    On a terminal it is a tqdm bar: ``status(text)`` shows a message (for
    example while the kernels load) until the first progress call, and tqdm
    throttles the redraws. Into a file or a pipe a redrawn bar would leave its
    carriage returns in the log, so there it writes whole lines instead: each
    status, then at most one line per tenth of the work.
    """

    def __init__(self, label: str, stream: TextIO | None = None, width: int | None = None) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        isatty = getattr(self._stream, "isatty", None)
        self._lines = not (isatty is not None and isatty())
        self._bar = None
        self._started = time.perf_counter()
        self._next_line = 0  # the next tenth of the work that gets a line
        self._done = self._total = 0
        if not self._lines:
            from tqdm import tqdm

            self._bar = tqdm(
                total=None, desc=label, file=self._stream, ncols=width and width + 60,
                leave=True, mininterval=0.2, bar_format="{desc}",
            )

    @property
    def label(self) -> str:
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        self._label = value
        if self._bar is not None:
            self._bar.set_description_str(value, refresh=False)

    def status(self, text: str) -> None:
        """Show a message: on the bar's line until the next redraw, or as a line of its own."""
        if self._bar is not None:
            self._bar.set_description_str(f"{self._label}: {text}")
        else:
            self._write(text)

    def __call__(self, done: int, total: int) -> None:
        bar = self._bar
        if bar is None:
            if total != self._total:
                self._total, self._next_line = total, 0
            self._done = done
            if total > 0 and done * 10 >= self._next_line * total:
                self._write(f"{done:,}/{total:,} ({100 * done // total}%)")
                self._next_line = done * 10 // total + 1
            return
        if bar.total != total:
            bar.total = total
            bar.bar_format = None
            bar.set_description_str(self._label, refresh=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._total:
            self._write(f"{self._done:,}/{self._total:,} done in {time.perf_counter() - self._started:.1f} s")

    def _write(self, text: str) -> None:
        self._stream.write(f"{self._label}: {text}\n")
        self._stream.flush()


# ---------------------------------------------------------------------- demo
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=_positive_int, default=10_000, help="jobs in the fleet (default: 10000)")
    parser.add_argument(
        "--arms", type=_positive_int, default=8, help="batch sizes per job: 8, 16, 32, ... (default: 8)"
    )
    parser.add_argument("--rounds", type=_positive_int, default=50, help="predict/observe rounds (default: 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fleet, the noise and the optimizer (default: 0)")
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        default="gts",
        help="gts: learn each arm's reward precision (default); gts-known: use --reward-precision",
    )
    parser.add_argument(
        "--noise",
        type=_nonnegative_float,
        default=0.1,
        help="standard deviation of the log-normal cost noise (default: 0.1)",
    )
    parser.add_argument(
        "--reward-precision",
        type=float,
        default=None,
        help="known reward precision for --policy gts-known (default: 1/(noise*1000)^2)",
    )
    parser.add_argument("--json", metavar="PATH", type=Path, default=None, help="also write the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="do not draw the progress bar on stderr")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _run_demo(args: argparse.Namespace) -> int:
    if args.reward_precision is not None and args.policy != "gts-known":
        print("banditfleet demo: error: --reward-precision applies only to --policy gts-known", file=sys.stderr)
        return 2
    bar = None
    if not args.no_progress:
        bar = ProgressBar("rounds")
        bar.status("loading kernels (numba compiles them on the first run, then caches them)")
    try:
        result = run_demo(
            jobs=args.jobs,
            arms=args.arms,
            rounds=args.rounds,
            seed=args.seed,
            policy=args.policy,
            noise=args.noise,
            reward_precision=args.reward_precision,
            progress=bar,
        )
    except ValueError as exc:
        if bar is not None:
            bar.close()
        print(f"banditfleet demo: error: {exc}", file=sys.stderr)
        return 2
    if bar is not None:
        bar.close()

    s = result.summary()
    bs = result.batch_sizes
    if result.policy == "gts":
        how = "GTS, learned reward precision"
    else:
        how = f"GTS, known reward precision {result.reward_precision:.3g}"
    print(
        f"banditfleet demo: {s['jobs']:,} jobs x {s['arms']} batch sizes ({bs[0]}..{bs[-1]}), "
        f"{s['rounds']} rounds, {how}, noise {s['noise']:g}, seed {s['seed']}"
    )
    print(f"  numba compile / cache load (first calls, excluded below): {s['compile_seconds']:.2f} s")
    print(
        f"  decisions: {s['decisions']:,} in {s['run_seconds']:.2f} s = {s['decisions_per_second']:,.0f} decisions/s "
        f"(predict_many {s['predict_seconds']:.2f} s, observe_many {s['observe_seconds']:.2f} s)"
    )
    print(
        f"  most-played batch size is the truly cheapest: {_pct(s['fraction_most_played_cheapest'])} of jobs "
        f"(uniform-random baseline {_pct(s['random_fraction_most_played_cheapest'])}, "
        f"chance 1/{s['arms']} = {_pct(s['chance_fraction'])})"
    )
    print(
        f"  cost of the most-played batch size above the cheapest: {_pct(s['excess_cost_most_played'])} on average "
        f"(uniform-random baseline {_pct(s['random_excess_cost_most_played'])})"
    )
    if args.json is not None:
        s["version"] = __version__
        args.json.write_text(json.dumps(s, indent=2) + "\n")
        print(f"  summary written to {args.json}")
    return 0


# -------------------------------------------------------------------- replay
_REPLAY_POLICIES = ("pruning-gts", "gts", "gts-known", "grid-search", "default", "oracle")

def _float_list_arg(name: str, low: float, high: float, allow_inf: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if math.isnan(value) or not (low <= value <= high) or (math.isinf(value) and not allow_inf):
            raise argparse.ArgumentTypeError(f"{name} must be in [{low:g}, {high:g}], got {text}")
        return value

    return parse


def _beta(text: str) -> float:
    value = _float_list_arg("beta knob", 0.0, math.inf, allow_inf=True)(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"beta knob must be > 0 (inf: no early stopping), got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("fleet (default: the built-in synthetic fleet)")
    src.add_argument("--trace-dir", type=Path, default=None, help="a Zeus trace folder (summary_train.csv, summary_power_<gpu>.csv, optional groups.csv and jobs.csv)")
    src.add_argument("--gpu", default=None, help="power trace to use from --trace-dir (default: v100, or the only one there)")
    src.add_argument("--groups", type=Path, default=None, help="groups CSV (group, start_time, end_time, dataset, runtime_ratio); default: groups.csv in --trace-dir, else generated groups")
    src.add_argument("--jobs", type=Path, default=None, help="job specs CSV per dataset (default: jobs.csv in --trace-dir, else the Zeus artifacts' defaults)")
    src.add_argument("--synthetic-groups", type=_positive_int, default=5000, metavar="N", help="groups to generate when no groups file is used (default: 5000)")
    src.add_argument("--fleet-seed", type=int, nargs="+", default=[0], help="seed of the generated fleet; several values replay one fleet per seed, as replicates of the statistics (default: 0)")
    src.add_argument("--export-trace", type=Path, default=None, metavar="DIR", help="write the fleet in the Zeus trace format to DIR and exit")
    sw = parser.add_argument_group("settings (several values make a sweep over every combination)")
    sw.add_argument("--eta-knob", type=_float_list_arg("eta knob", 0.0, 1.0), nargs="+", default=[0.5], help="energy-time trade-off (default: 0.5)")
    sw.add_argument("--beta-knob", type=_beta, nargs="+", default=[2.0], help="early-stopping threshold, inf for none (default: 2.0)")
    sw.add_argument("--seed", type=_nonnegative_int, nargs="+", default=[0], help="seed replicates; 0 seeds each group with adler32(group id) as the Zeus artifacts (default: 0)")
    sw.add_argument("--policy", nargs="+", default=["pruning-gts"], choices=_REPLAY_POLICIES, metavar="POLICY",
                    help="policies to replay (several join the sweep): pruning-gts (Zeus's, default), gts (learned precision), "
                         "gts-known (--reward-precision), grid-search, default (the baseline, replayed), oracle (best fixed config in hindsight)")
    sw.add_argument("--reward-precision", type=_nonnegative_float, default=None, metavar="P",
                    help="known reward precision (1 / variance of -cost) of --policy gts-known")
    sw.add_argument("--window-size", type=_nonnegative_int, default=0, help="PruningGTS window size, 0 keeps every reward (default: 0)")
    dist = parser.add_argument_group("distributed (needs banditfleet[distributed]; see docs/distributed.md)")
    where = dist.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="ADDRESS", help="replay on a running Dask cluster, e.g. tcp://host:8786")
    where.add_argument("--workers", type=_positive_int, default=None, metavar="N", help="replay on a new local Dask cluster of N worker processes")
    dist.add_argument("--shards", type=_positive_int, default=None, metavar="N", help="shards of groups to send (default: 4 per worker thread)")
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N", help="local threads to replay on (default: every core, as numba.get_num_threads(); results are the same for any N)")
    st = parser.add_argument_group("statistics (see docs/replay.md)")
    st.add_argument("--confidence", type=_float_list_arg("confidence", 0.5, 0.999), default=0.95, help="level of the confidence intervals (default: 0.95)")
    st.add_argument("--bootstrap", type=_nonnegative_int, default=None, metavar="N", help="bootstrap resamples over groups, 0 for none (default: 2000, fewer above 10,000 groups, at least 200)")
    st.add_argument("--bootstrap-seed", type=_nonnegative_int, default=0, help="seed of the bootstrap resamples (default: 0)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=None, metavar="DIR", help="write the history, summary.csv, summary.json and PNG plots to DIR")
    out.add_argument("--history-format", choices=("parquet", "csv", "none"), default="parquet", help="history file in --out: history.parquet (default), history.csv, or none")
    out.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots in --out")
    out.add_argument("--no-progress", action="store_true", help="do not draw the progress bar on stderr")


def _load_fleets(args: argparse.Namespace) -> list:
    """One fleet per ``--fleet-seed`` (several only where the fleet is generated)."""
    seeds = list(dict.fromkeys(args.fleet_seed))
    if len(seeds) > 1 and args.trace_dir is not None:
        groups_file = args.groups if args.groups is not None else (args.trace_dir / "groups.csv" if (args.trace_dir / "groups.csv").is_file() else None)
        if groups_file is not None:
            raise ValueError(f"several --fleet-seed values need generated groups, but the groups come from {groups_file}")
    fleets = []
    for seed in seeds:
        args.fleet_seed = seed
        fleets.append(_load_fleet(args))
    args.fleet_seed = seeds
    return fleets


def _load_fleet(args: argparse.Namespace):
    from banditfleet.errors import TraceError
    from banditfleet.replay.fleet import Fleet
    from banditfleet.replay.synthetic import generate_groups, synthetic_fleet
    from banditfleet.replay.traces import Trace, build_workloads, jobs_for, read_jobs

    if args.trace_dir is None:
        for flag, value in (("--gpu", args.gpu), ("--groups", args.groups), ("--jobs", args.jobs)):
            if value is not None:
                raise ValueError(f"{flag} needs --trace-dir")
        return synthetic_fleet(args.synthetic_groups, args.fleet_seed)
    d = args.trace_dir
    if not d.is_dir():
        raise TraceError(f"--trace-dir: no such folder {str(d)!r}" if not d.exists() else f"--trace-dir: {str(d)!r} is not a folder")
    for flag, value in (("--groups", args.groups), ("--jobs", args.jobs)):
        if value is not None and not value.is_file():
            raise TraceError(f"{flag}: no such file {str(value)!r}")
    gpu = args.gpu
    if gpu is None:
        have = sorted(p.name[len("summary_power_") : -4] for p in d.glob("summary_power_*.csv"))
        gpu = "v100" if "v100" in have or not have else (have[0] if len(have) == 1 else None)
        if gpu is None:
            raise ValueError(f"{d} has power traces for {have}; choose one with --gpu")
    trace = Trace.from_dir(d, gpu)
    jobs_file = args.jobs if args.jobs is not None else (d / "jobs.csv" if (d / "jobs.csv").is_file() else None)
    specs = read_jobs(jobs_file) if jobs_file is not None else None
    groups_file = args.groups if args.groups is not None else (d / "groups.csv" if (d / "groups.csv").is_file() else None)
    if groups_file is not None:
        return Fleet.from_frames(trace, groups_file, specs, source=f"{groups_file} on {d} ({gpu})")
    datasets = sorted(specs) if specs is not None else trace.datasets()
    jobs = jobs_for(trace, datasets, specs)
    workloads = build_workloads([(trace, jobs[x]) for x in datasets])
    fleet = generate_groups(workloads, args.synthetic_groups, args.fleet_seed)
    fleet.source = f"{args.synthetic_groups} generated groups (seed {args.fleet_seed}) on {d} ({gpu})"
    return fleet


def _run_replay(args: argparse.Namespace) -> int:
    from banditfleet.errors import BanditFleetError, OutputError
    from banditfleet.replay.fleet import replay_fleet, sweep
    from banditfleet.replay.synthetic import export_trace

    try:
        policies = list(dict.fromkeys(args.policy))
        if args.reward_precision is not None and "gts-known" not in policies:
            raise ValueError("--reward-precision applies only to --policy gts-known")
        settings = sweep(
            args.eta_knob, args.beta_knob, args.seed, policies, window_size=args.window_size,
            reward_precision=args.reward_precision or 0.0,
        )
        if args.window_size == 1:
            raise ValueError("--window-size 1 cannot work (a single reward has no variance); use 0 or >= 2")
        if args.out is not None and args.out.exists() and not args.out.is_dir():
            raise OutputError(f"--out: {str(args.out)!r} exists and is not a folder")
        if args.export_trace is not None and len(set(args.fleet_seed)) > 1:
            raise ValueError("--export-trace writes one fleet: give one --fleet-seed")
        fleets = _load_fleets(args)
        fleet = fleets[0]
        if args.export_trace is not None:
            files = export_trace(fleet, args.export_trace)
            print(f"banditfleet replay: wrote {fleet.source} ({len(fleet):,} groups, {fleet.n_submissions:,} submissions) in the Zeus trace format:")
            for f in files:
                print(f"  {f}")
            return 0
    except (BanditFleetError, ValueError, OSError) as exc:
        print(f"banditfleet replay: error: {exc}", file=sys.stderr)
        return 2
    for fleet in fleets:
        print(
            f"banditfleet replay: {fleet.source}: {len(fleet):,} groups, {fleet.n_submissions:,} submissions, "
            f"{len(fleet.workloads)} workloads; {len(settings)} setting(s)"
        )
    bar = None
    if not args.no_progress:
        bar = ProgressBar("groups")
        bar.status("loading kernels (numba compiles them on the first run, then caches them)")
    client = None
    results = []
    try:
        if args.scheduler is not None or args.workers is not None:
            from banditfleet.replay.distributed import connect, local_cluster, replay_fleet_distributed, quiet_dask_logs

            quiet_dask_logs(args.verbose)

            if bar is not None:
                bar.status("connecting to the Dask cluster" if args.scheduler else f"starting {args.workers} local Dask workers")
            client = connect(args.scheduler) if args.scheduler is not None else local_cluster(args.workers)
            t0 = time.perf_counter()
            replay_fleet_distributed(fleets[0].subset([0]), settings[:1], client=client, shards=1)  # warm the workers' kernels
            warm = time.perf_counter() - t0
            if bar is not None:
                bar.label = "shards"
            for fleet in fleets:
                results.append(replay_fleet_distributed(fleet, settings, client=client, shards=args.shards, progress=bar))
        else:
            t0 = time.perf_counter()
            # compile or load the kernels outside the timing: one setting of each policy
            replay_fleet(fleets[0].subset([0]), list({s.policy: s for s in settings}.values()), threads=1)
            warm = time.perf_counter() - t0
            for fleet in fleets:
                results.append(replay_fleet(fleet, settings, progress=bar, threads=args.threads))
    except (BanditFleetError, ValueError, OSError) as exc:
        if bar is not None:
            bar.close()
        print(f"banditfleet replay: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if client is not None and args.workers is not None:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
    if bar is not None:
        bar.close()
    pending = None
    if args.out is not None and not args.no_plots and len(results) == 1:
        # This result's plots are drawn by a child process while the statistics are computed.
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            pass
        else:
            from banditfleet.replay.plots import start_result_plots

            try:
                pending = start_result_plots(results[0], args.out)
            except OSError:
                pending = None
    try:
        return _report_replay(args, settings, fleets, results, warm, pending)
    finally:
        if pending is not None:
            try:
                os.waitpid(pending[0], 0)  # reaped already unless the report failed early
            except ChildProcessError:
                pass


def _report_replay(args: argparse.Namespace, settings: list, fleets: list, results: list, warm: float, pending: Any) -> int:
    from banditfleet.errors import BanditFleetError
    from banditfleet.replay.plots import write_comparison_plot
    from banditfleet.replay.report import format_table, summarize, write_outputs
    from banditfleet.replay.stats import compare, format_comparison, write_statistics

    n_runs = sum(res.n_runs for res in results)
    seconds = sum(res.result.seconds for res in results)
    rounds = sum(res.result.rounds for res in results)
    print(
        f"  replayed {n_runs:,} runs in {seconds:.2f} s ({n_runs / max(seconds, 1e-9):,.0f} runs/s, "
        f"{rounds:,} decision rounds); kernels ready in {warm:.1f} s (numba compiles them on the first run, then loads its cache)"
    )
    fleet_names = [f.meta.get("seed", i) for i, f in enumerate(fleets)] if len(fleets) > 1 else [fleets[0].meta.get("seed", 0)]
    summaries = [summarize(res) for res in results]
    if len(settings) == 1 and len(results) == 1:
        s = settings[0]
        print(f"\nsetting {s.label}: energy, time and cost; vs base: change in % against the baseline (default batch size at the maximum power limit)")
        print(format_table(summaries[0], s.label))
        total = summaries[0].loc[(summaries[0].setting == s.label) & (summaries[0].dataset == "TOTAL")].iloc[0]
        print(f"regret against the oracle (best fixed batch size and power limit in hindsight): {total.regret_J:.4g} J "
              f"({total.regret_pct:+.1f}% of the oracle's cost {total.oracle_cost_J:.4g} J)")
    comparison = compare(results, fleet_names, confidence=args.confidence, n_resamples=args.bootstrap, bootstrap_seed=args.bootstrap_seed)
    print()
    print(format_comparison(comparison))
    if args.out is not None:
        written = []
        skipped = None
        try:
            for fleet_name, res, summary in zip(fleet_names, results, summaries):
                where = args.out if len(results) == 1 else args.out / f"fleet-seed-{fleet_name}"
                files, skipped = write_outputs(
                    res, summary, where, {"source": res.fleet.source, "replay_seconds": res.result.seconds, "version": __version__},
                    history_format=args.history_format, plots=not args.no_plots,
                    comparison=comparison if len(results) == 1 else None, pending_plots=pending,
                )
                written += [f.relative_to(args.out) for f in files]
            written += [f.relative_to(args.out) for f in write_statistics(comparison, args.out)]
            if skipped is None and len(results) > 1:
                written.append(write_comparison_plot(comparison, args.out).relative_to(args.out))
        except (BanditFleetError, OSError) as exc:
            print(f"banditfleet replay: error: cannot write to {args.out}: {exc}", file=sys.stderr)
            return 2
        print(f"\n  wrote {len(written)} files to {args.out}: {', '.join(str(f) for f in written)}")
        if skipped:
            print(f"  plots skipped: {skipped}")
    return 0


# --------------------------------------------------------------------- bench
def _arms_arg(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 arms, got {value}")
    return value


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (under 30 s on 2 cores)")
    parser.add_argument("--jobs", type=_positive_int, default=None, help="jobs of every fleet, checkpoint and replay case (default: 10000; checkpoint 1000000; --quick 2000)")
    parser.add_argument("--arms", type=_arms_arg, default=None, help="batch sizes per job (default: 8)")
    parser.add_argument("--reference-jobs", type=_positive_int, default=None, metavar="N", help="jobs the zeus reference loops run on; fewer than --jobs scales it per job (default: up to 10000; --quick 200)")
    parser.add_argument("--case", action="append", default=None, metavar="NAME", help="only this case or group (repeatable; groups: rng, thompson, scalar, pruning, power, checkpoint, lifecycle, replay, threads, journal, serve)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling sweep over jobs and arms")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time measurement")
    parser.add_argument("--json", metavar="PATH", type=Path, default=None, help="also write the whole report as JSON")
    parser.add_argument("--plot", metavar="DIR", type=Path, default=None, help="write the scaling plots (PNG) to DIR")
    parser.add_argument("--no-progress", action="store_true", help="do not draw the progress bar on stderr")


def _run_bench(args: argparse.Namespace) -> int:
    from banditfleet.bench import Config, format_report, run_bench, select

    try:
        cfg = Config.standard(quick=args.quick, jobs=args.jobs, arms=args.arms, reference_jobs=args.reference_jobs)
        select(args.case)
    except ValueError as exc:
        print(f"banditfleet bench: error: {exc}", file=sys.stderr)
        return 2
    bar = None if args.no_progress else ProgressBar("bench")

    def progress(done: int, total: int, what: str) -> None:
        if bar is not None:
            bar.status(f"[{done}/{total}] {what}")

    report = run_bench(cfg, args.case, scaling=not args.no_scaling, compile_time=not args.no_compile, plot_dir=args.plot, progress=progress)
    if bar is not None:
        bar.close()
    print("\n".join(format_report(report)))
    if args.json is not None:
        report.write_json(args.json)
        print(f"report written to {args.json}")
    return 1 if any(r.status == "error" for r in report.rows) else 0


def _fsync_arg(text: str) -> str | float:
    if text in ("batch", "never"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'batch', 'never' or milliseconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"fsync interval must be a positive number of milliseconds, got {text!r}")
    return value


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--folder", required=True, type=Path, help="state folder (created when missing, recovered otherwise; one server per folder)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    parser.add_argument("--fsync", type=_fsync_arg, default="batch", help="'batch' (default: no response before its effect is fsynced; fsyncs shared), 'never', or milliseconds between fsyncs")
    parser.add_argument("--checkpoint-bytes", type=_positive_int, default=None, metavar="N", help="checkpoint whenever the journal reaches N bytes (default: only at shutdown)")
    parser.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log; off by default)")
    parser.add_argument("--http", choices=("direct", "uvicorn"), default="direct", help="'direct' (default): uvicorn's httptools protocol answers the Zeus endpoints without an ASGI task; 'uvicorn': every request through ASGI (same answers, more CPU per request)")
    parser.add_argument("--token-file", type=Path, default=None, metavar="FILE", help="every request must carry 'Authorization: Bearer <token>', the token being FILE's content")
    parser.add_argument("--insecure", action="store_true", help="allow binding a non-loopback address without --token-file")
    parser.add_argument("--max-body-bytes", type=_positive_int, default=16 * 1024 * 1024, metavar="N", help="answer 413 to request bodies over N bytes (default: 16 MiB)")
    parser.add_argument("--microbatch", action=argparse.BooleanOptionalAction, default=True, help="decide concurrent GET /jobs/batch_size requests as one batch, one kernel call (default: on; measured 1.15-1.6x the cycles/s at 128 jobs, see docs/performance.md)")


def _run_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from banditfleet.serve.edge import build_app
        from banditfleet.serve.security import InsecureBindError, TokenFileError, check_bind, load_token
    except ImportError as exc:
        print(f"banditfleet serve: error: {exc.name or exc} is not installed; install banditfleet[serve]", file=sys.stderr)
        return 2
    from banditfleet.errors import BanditFleetError

    try:
        token = load_token(args.token_file) if args.token_file is not None else None
        check_bind(args.host, token, args.insecure)
    except (InsecureBindError, TokenFileError) as exc:
        print(f"banditfleet serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        app = build_app(args.folder, token=token, max_body_bytes=args.max_body_bytes, microbatch=args.microbatch,
                        fsync=args.fsync, checkpoint_bytes=args.checkpoint_bytes)
    except BanditFleetError as exc:
        print(f"banditfleet serve: error: {exc}", file=sys.stderr)
        return 2
    http: object = "auto"
    if args.http == "direct" and not args.access_log:  # the access log is uvicorn's, written by its ASGI path
        from banditfleet.serve.direct_http import direct_protocol

        http = direct_protocol(app) or "auto"
        if http != "auto":
            logging.getLogger("banditfleet.serve").info(
                "the Zeus endpoints are answered from uvicorn's httptools protocol directly (--http direct)")
    try:
        uvicorn.run(app, host=args.host, port=args.port, workers=1, access_log=args.access_log,
                    log_level="info", lifespan="on", http=http)
    finally:
        app.state.bf.close()  # no-op after a clean shutdown (uvicorn ran the lifespan)
    return 0


# ------------------------------------------------------------------ commands
Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

#: (name, one-line help, add_arguments, run) of every subcommand.
COMMANDS: list[Command] = [
    (
        "demo",
        "drive a synthetic fleet through batched Thompson sampling and report speed and learning",
        _add_demo_arguments,
        _run_demo,
    ),
    (
        "replay",
        "replay a fleet of recurring-job groups (built-in or Zeus traces) and report savings against the baseline",
        _add_replay_arguments,
        _run_replay,
    ),
    (
        "bench",
        "time the engine against numpy's random draws and the zeus reference; scaling, memory and compile time",
        _add_bench_arguments,
        _run_bench,
    ),
    (
        "serve",
        "serve Zeus's batch-size-optimizer protocol over HTTP on a journaled folder (needs banditfleet[serve])",
        _add_serve_arguments,
        _run_serve,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="banditfleet",
        description="Fleets of Gaussian Thompson-sampling bandits (Zeus batch-size policies), vectorized.",
    )
    parser.add_argument("--version", action="version", version=f"banditfleet {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log library messages (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text, add_arguments, run in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``banditfleet`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args._run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
