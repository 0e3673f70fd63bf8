"""The demo learns, and the command line drives it.

The learning checks use baselines computed here, independently of the demo's
own summary: the cheapest arm is re-derived from the demo's cost curves, the
most-played arm from its play counts, and the chance level is 1/arms.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from banditfleet.cli import ProgressBar, build_parser, main
from banditfleet.demo import batch_sizes_for, run_demo

JOBS, ARMS, ROUNDS = 300, 8, 30


@pytest.fixture(scope="module")
def demo():
    return run_demo(jobs=JOBS, arms=ARMS, rounds=ROUNDS, seed=11)


def test_cheapest_arm_is_the_argmin_of_the_cost_curves(demo):
    curves = demo.cost_curves
    assert curves.shape == (JOBS, ARMS)
    assert np.all(np.isfinite(curves)) and np.all(curves > 0)
    expected = np.array([min(range(ARMS), key=lambda a, row=row: row[a]) for row in curves.tolist()])
    np.testing.assert_array_equal(demo.cheapest_arm, expected)
    # The minima are spread over the arms, so always picking one arm cannot score well.
    assert np.bincount(expected, minlength=ARMS).max() < 0.35 * JOBS


def test_play_counts_account_for_every_decision(demo):
    assert demo.play_counts.shape == (JOBS, ARMS)
    np.testing.assert_array_equal(demo.play_counts.sum(axis=1), np.full(JOBS, ROUNDS))
    np.testing.assert_array_equal(demo.random_play_counts.sum(axis=1), np.full(JOBS, ROUNDS))
    # num_exploration=1: every arm is tried once before Thompson sampling takes over.
    assert demo.play_counts.min() >= 1
    assert demo.decisions == JOBS * ROUNDS


def test_learning_beats_the_random_baseline(demo):
    most_played = np.array([int(np.argmax(row)) for row in demo.play_counts])
    hits = float(np.mean(most_played == demo.cheapest_arm))
    random_most_played = np.array([int(np.argmax(row)) for row in demo.random_play_counts])
    random_hits = float(np.mean(random_most_played == demo.cheapest_arm))
    chance = 1.0 / ARMS
    assert hits == pytest.approx(demo.fraction_most_played_cheapest)
    assert random_hits == pytest.approx(demo.random_fraction_most_played_cheapest)
    # 300 jobs: the random baseline stays near 1/8; learning is far above it.
    assert abs(random_hits - chance) < 0.07
    assert hits > 0.5
    assert hits > random_hits + 0.3
    # And the arms it settles on cost little more than the cheapest ones.
    rows = np.arange(JOBS)
    best = demo.cost_curves[rows, demo.cheapest_arm]
    excess = np.mean(demo.cost_curves[rows, most_played] / best - 1.0)
    random_excess = np.mean(demo.cost_curves[rows, random_most_played] / best - 1.0)
    assert excess == pytest.approx(demo.excess_cost_most_played)
    assert excess < 0.05 < random_excess


def test_known_precision_policy_learns_too():
    result = run_demo(jobs=200, arms=6, rounds=30, seed=3, policy="gts-known")
    assert result.reward_precision is not None and result.reward_precision > 0
    assert result.fraction_most_played_cheapest > result.random_fraction_most_played_cheapest + 0.3


def test_demo_is_deterministic_given_the_seed():
    a = run_demo(jobs=50, arms=4, rounds=10, seed=5)
    b = run_demo(jobs=50, arms=4, rounds=10, seed=5)
    c = run_demo(jobs=50, arms=4, rounds=10, seed=6)
    np.testing.assert_array_equal(a.cost_curves, b.cost_curves)
    np.testing.assert_array_equal(a.play_counts, b.play_counts)
    np.testing.assert_array_equal(a.random_play_counts, b.random_play_counts)
    assert not np.array_equal(a.cost_curves, c.cost_curves)


def test_progress_is_reported_every_round():
    calls = []
    run_demo(jobs=10, arms=3, rounds=4, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]


def test_batch_sizes_double_from_8():
    assert batch_sizes_for(8).tolist() == [8, 16, 32, 64, 128, 256, 512, 1024]


@pytest.mark.parametrize(
    "kwargs",
    [dict(jobs=0), dict(arms=1), dict(arms=33), dict(rounds=0), dict(seed=-1), dict(policy="ucb"), dict(noise=-0.1)],
)
def test_demo_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        run_demo(**{"jobs": 5, "rounds": 2, **kwargs})


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_stays_on_one_line_on_a_terminal():
    out = _Terminal()
    bar = ProgressBar("rounds", stream=out, width=10)
    bar.status("loading kernels")
    for i in range(0, 201):
        bar(i, 200)
    bar.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") <= 1 + 101  # the status line, then throttled redraws
    assert "loading kernels" in text
    assert "100%" in text and "200/200" in text.rsplit("\r", 1)[-1]


def test_progress_into_a_file_is_whole_lines():
    out = io.StringIO()  # not a terminal, like a log file or a pipe
    bar = ProgressBar("groups", stream=out)
    bar.status("loading kernels")
    for i in range(0, 1001):
        bar(i, 1000)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "groups: loading kernels"
    assert lines[1:-1] == [f"groups: {k * 100:,}/1,000 ({k * 10}%)" for k in range(11)]
    assert lines[-1].startswith("groups: 1,000/1,000 done in ")
    assert all(line.startswith("groups: ") for line in lines)


def test_main_without_a_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_parser_has_the_demo_subcommand():
    args = build_parser().parse_args(["demo", "--jobs", "7"])
    assert args.command == "demo" and args.jobs == 7 and args.rounds == 50 and args.arms == 8


def test_main_demo_in_process(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["demo", "--jobs", "40", "--rounds", "5", "--arms", "4", "--no-progress", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "decisions/s" in captured.out
    assert captured.err == ""  # --no-progress: nothing on stderr
    assert json.loads(out.read_text())["jobs"] == 40


def test_main_demo_reports_bad_settings(capsys):
    assert main(["demo", "--arms", "40", "--no-progress"]) == 2
    assert "arms" in capsys.readouterr().err
    assert main(["demo", "--reward-precision", "1", "--no-progress"]) == 2


def test_python_m_banditfleet_demo_writes_json(tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "banditfleet", "demo", "--jobs", "200", "--rounds", "10", "--no-progress", "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "decisions/s" in proc.stdout
    summary = json.loads(Path(out).read_text())
    assert summary["jobs"] == 200
    assert summary["rounds"] == 10
    assert summary["arms"] == 8
    assert summary["policy"] == "gts"
    assert summary["decisions"] == 2000
    assert summary["batch_sizes"] == [8, 16, 32, 64, 128, 256, 512, 1024]
    assert summary["chance_fraction"] == pytest.approx(1 / 8)
    for key in ("compile_seconds", "predict_seconds", "observe_seconds", "run_seconds"):
        assert summary[key] >= 0
    assert summary["decisions_per_second"] > 0
    assert summary["run_seconds"] == pytest.approx(summary["predict_seconds"] + summary["observe_seconds"])
    for key in ("fraction_most_played_cheapest", "random_fraction_most_played_cheapest"):
        assert 0.0 <= summary[key] <= 1.0
    # 10 rounds of 8 arms is mostly exploration, yet already better than chance.
    assert summary["fraction_most_played_cheapest"] > summary["random_fraction_most_played_cheapest"]
    assert isinstance(summary["version"], str)
