"""Per-job state machine of Zeus 0.16.0's batch-size-optimizer server, journaled.

:class:`ZeusServerState` holds every registered job of a ``banditfleet serve``
folder in memory and makes the decisions Zeus's server
(``zeus.optimizer.batch_size.server``: ``optimizer.py``, ``explorer.py``,
``mab.py``, ``services/service.py``) makes from its SQL rows:

* **trials** are numbered 1, 2, ... per job (the next number is one more than
  the largest ever issued; a deleted and re-registered job starts at 1);
* **pruning stage**: for each round, the batch sizes from the round's default
  downwards, then upwards, each explored once per round; a dispatched
  exploration makes every other request a *concurrent* trial at the job's
  minimum-cost batch size; a direction stops at its first batch size that did
  not converge; the round's cheapest converged batch size is the next round's
  default and the converged ones its batch sizes; failed trials
  (``PATCH /trials`` before a report) are explored again;
* **MAB stage** (Gaussian Thompson sampling over the last round's converged
  batch sizes, each arm fitted on all its explorations): a random permutation
  of the arms picks one with fewer than ``mab_num_explorations``
  observations, else one normal sample per arm and the largest wins; a report
  refits its arm on the batch size's succeeded trials (the last
  ``window_size`` of them, 0 = all) and the new cost;
* **reports** stop a run once the metric reaches ``target_metric``
  (``higher_is_better_metric``), ``current_epoch`` reaches ``max_epochs``, or
  the cost ``eta_knob * energy + (1 - eta_knob) * max_power * time``
  exceeds ``beta_knob`` times the job's minimum cost; a repeated report gets
  ``stop_train`` and "is already reported.".

Random streams: every job has a ``numpy.random.default_rng`` stream, seeded at
registration with ``mab_seed``, or, when that is None, with a seed drawn from
the operating system and journaled (Zeus seeds those from the clock on every
request). The stream's state is kept across requests as Zeus's server keeps it
for seeded jobs, so a job registered with ``mab_seed`` gets the batch sizes
Zeus's server gives it (where that server's own generator persistence works:
see docs/compat.md).

Durability: every state change is one journal record (kinds ``register``,
``predict``, ``report``, ``end``, ``delete``, the inputs in the record's
extra fields); recovery replays them through the same code. The state object
does not wait for fsyncs itself: :attr:`ZeusServerState.durable_target` tells
the server which journal offset a response must wait for
(:mod:`banditfleet.serve.app` waits without blocking its event loop).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import time
import zlib
from typing import Any, Optional

import numpy as np

from banditfleet._journaled import Journaled
from banditfleet.checkpoint import atomic_write
from banditfleet.errors import CheckpointError, JournalError
from banditfleet.journal import encode_record

__all__ = ["ZeusServerState", "ZeusServerError", "zeus_cost"]

logger = logging.getLogger("banditfleet.serve")

EXPLORATION, CONCURRENT, MAB = "Exploration", "Concurrent", "MAB"
DISPATCHED, SUCCEEDED, FAILED = "Dispatched", "Succeeded", "Failed"
PRUNING = "Pruning"

_CKPT_MAGIC = b"BFZS1\n"


class ZeusServerError(Exception):
    """A refused request: HTTP ``status`` and the ``message`` of the ``{"message": ...}`` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def zeus_cost(energy: float, time_s: float, eta_knob: float, max_power: float) -> float:
    """Energy-time cost: ``eta_knob * energy + (1 - eta_knob) * max_power * time``
    (energy in joules, time in seconds, max_power in watts)."""
    return eta_knob * energy + (1 - eta_knob) * max_power * time_s


class _Trial:
    __slots__ = ("batch_size", "type", "status", "time", "energy", "converged")

    def __init__(self, batch_size: int, type_: str, status: str = DISPATCHED,
                 time_s: Optional[float] = None, energy: Optional[float] = None,
                 converged: Optional[bool] = None) -> None:
        self.batch_size = batch_size
        self.type = type_
        self.status = status
        self.time = time_s
        self.energy = energy
        self.converged = converged

    def to_list(self) -> list[Any]:
        return [self.batch_size, self.type, self.status, self.time, self.energy, self.converged]


class _Job:
    """One job's rows: spec, job-level state, trials, arms and random stream."""

    __slots__ = ("spec", "stage", "min_cost", "min_cost_batch_size", "seed", "rng", "trials",
                 "next_trial", "explorations", "succeeded", "arms")

    def __init__(self, spec: dict[str, Any], seed: int) -> None:
        self.spec = spec
        self.stage = PRUNING
        self.min_cost: Optional[float] = None
        self.min_cost_batch_size: int = spec["default_batch_size"]
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.trials: dict[int, _Trial] = {}
        self.next_trial = 1
        # batch size -> trial numbers of its non-failed explorations, ascending.
        self.explorations: dict[int, list[int]] = {}
        # batch size -> trial numbers of its succeeded trials (every type), ascending.
        self.succeeded: dict[int, list[int]] = {}
        # batch size -> [param_mean, param_precision, reward_precision, num_observations],
        # in creation order (ascending batch size).
        self.arms: dict[int, list[Any]] = {}

    def cost(self, energy: float, time_s: float) -> float:
        return zeus_cost(energy, time_s, self.spec["eta_knob"], self.spec["max_power"])

    def to_doc(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "stage": self.stage,
            "min_cost": self.min_cost,
            "min_cost_batch_size": self.min_cost_batch_size,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "next_trial": self.next_trial,
            "trials": {str(n): t.to_list() for n, t in self.trials.items()},
            "arms": [[bs, *a] for bs, a in self.arms.items()],
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "_Job":
        job = cls(doc["spec"], doc["seed"])
        job.stage = doc["stage"]
        job.min_cost = doc["min_cost"]
        job.min_cost_batch_size = doc["min_cost_batch_size"]
        job.rng.bit_generator.state = doc["rng"]
        job.next_trial = doc["next_trial"]
        for n, (bs, type_, status, t, e, conv) in sorted(((int(k), v) for k, v in doc["trials"].items())):
            job.trials[n] = _Trial(bs, type_, status, t, e, conv)
            if type_ == EXPLORATION and status != FAILED:
                job.explorations.setdefault(bs, []).append(n)
            if status == SUCCEEDED:
                job.succeeded.setdefault(bs, []).append(n)
        for bs, mean, prec, rprec, nobs in doc["arms"]:
            job.arms[bs] = [mean, prec, rprec, nobs]
        return job


def _fit_arm(prior_mean: float, prior_precision: float, rewards: np.ndarray) -> list[Any]:
    """Zeus's conjugate update of one arm on all its rewards (reward = -cost)."""
    variance = np.var(rewards)
    reward_prec = np.inf if variance == 0.0 else np.reciprocal(variance)
    if reward_prec == np.inf:
        new_prec = np.inf
        new_mean = rewards.mean()
    else:
        new_prec = prior_precision + len(rewards) * reward_prec
        new_mean = (prior_precision * prior_mean + reward_prec * rewards.sum()) / new_prec
    return [float(new_mean), float(new_prec), float(reward_prec), int(len(rewards))]


class ZeusServerState(Journaled):
    """Every job of a Zeus-protocol server, its decisions, and its journal.

    The operations take validated protocol values (plain Python values, see
    :mod:`banditfleet.serve.zeus_protocol`) and return the response body, or
    raise :class:`ZeusServerError`; a refused operation changes nothing and
    records nothing. Open one on a folder with ``ZeusServerState.open(folder,
    fsync=...)`` (one writer process per folder).
    """

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.jobs: dict[str, _Job] = {}
        self._replaying = False
        self._last_offset: Optional[int] = None

    # ------------------------------------------------------------ journal hooks
    def _settings(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | os.PathLike) -> int:
        """Write every job as one checkpoint file (atomically); returns its size in bytes."""
        doc = json.dumps({"jobs": {k: j.to_doc() for k, j in self.jobs.items()}}, allow_nan=True).encode()
        blob = _CKPT_MAGIC + zlib.crc32(doc).to_bytes(4, "little") + doc
        atomic_write(path, [blob])
        return len(blob)

    @classmethod
    def load(cls, path: str | os.PathLike, verbose: bool = False) -> "ZeusServerState":
        """Read a checkpoint written by :meth:`save` (:class:`CheckpointError` if it is not one)."""
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
        head = len(_CKPT_MAGIC)
        if not blob.startswith(_CKPT_MAGIC) or len(blob) < head + 4:
            raise CheckpointError(f"{path}: not a banditfleet serve checkpoint")
        doc = blob[head + 4 :]
        if zlib.crc32(doc) != int.from_bytes(blob[head : head + 4], "little"):
            raise CheckpointError(f"{path}: checksum mismatch")
        state = cls(verbose=verbose)
        for key, jd in json.loads(doc)["jobs"].items():
            state.jobs[key] = _Job.from_doc(jd)
        return state

    def _replay(self, kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self._replaying = True
        try:
            if kind == "register":
                self._apply_register(extra["spec"], extra["seed"])
            elif kind == "predict":
                self.predict(extra["job_id"])
            elif kind == "report":
                self.report(extra["result"])
            elif kind == "end":
                self.end_trial(extra["job_id"], extra["batch_size"], extra["trial_number"])
            elif kind == "delete":
                self.delete_job(extra["job_id"])
            else:
                raise JournalError(f"unknown serve journal record kind {kind!r}")
        finally:
            self._replaying = False

    def _record(self, kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any] | None = None) -> None:
        """Append a record; the durability wait is left to the caller (:attr:`durable_target`)."""
        folder = self._folder
        if folder is None or self._replaying:
            return
        try:
            offset = folder.append(encode_record(kind, arrays, extra))
        except OSError as exc:
            self._detach_folder()
            raise JournalError(f"{folder.path}: could not journal a {kind} call ({exc}); the folder is closed, restart the server to recover") from exc
        if offset is not None:
            self._last_offset = offset
        limit = folder.checkpoint_bytes
        if limit is not None and folder.journal_bytes >= limit:
            logger.info("%s: journal passed %d bytes, checkpointing", folder.path, limit)
            self.checkpoint()

    @property
    def durable_target(self) -> Optional[int]:
        """The journal offset an fsync must cover before a response may be sent, or None.

        Under ``fsync="batch"`` that is everything written so far, so a response
        that read a state another request just changed waits for that change too.
        Under a millisecond policy it is the last append that asked for an fsync.
        """
        folder = self._folder
        if folder is None:
            return None
        if folder.fsync == "batch":
            return folder._written
        offset, self._last_offset = self._last_offset, None
        return offset

    @property
    def folder(self):
        """The open :class:`~banditfleet.journal.OptimizerFolder`, or None."""
        return self._folder

    def _new_seed(self) -> int:
        return int.from_bytes(os.urandom(8), "little") >> 1

    # --------------------------------------------------------------- operations
    def register(self, spec: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Register a job (``spec``: a validated ``JobSpecFromClient`` as a dict).

        Returns ``(created, echoed spec)``: True for a new job (HTTP 201), False
        when the job exists with the identical spec (200). A different spec under
        an existing id raises 409. A None ``job_id`` gets one made from the prefix.
        """
        spec = dict(spec)
        if spec["job_id"] is None:
            while True:
                job_id = f"{spec['job_id_prefix']}-{hashlib.sha256(str(time.time()).encode()).hexdigest()[:8]}"
                if job_id not in self.jobs:
                    break
            spec["job_id"] = job_id
        else:
            existing = self.jobs.get(spec["job_id"])
            if existing is not None:
                if existing.spec != spec:
                    raise ZeusServerError(409, "JobSpec doesn't match with existing jobSpec. Use a new job_id for different configuration")
                return False, spec
        seed = spec["mab_seed"] if spec["mab_seed"] is not None else self._new_seed()
        self._apply_register(spec, seed)
        self._record("register", {}, {"spec": spec, "seed": seed})
        return True, spec

    def _apply_register(self, spec: dict[str, Any], seed: int) -> None:
        self.jobs[spec["job_id"]] = _Job(spec, seed)

    def predict(self, job_id: str) -> dict[str, Any]:
        """The next trial of a job: ``{"job_id", "batch_size", "trial_number"}``."""
        job = self.jobs.get(job_id)
        if job is None:
            raise ZeusServerError(400, f"Unknown job({job_id}). Please register the job first")
        if job.stage == MAB:
            bs, type_ = self._mab_predict(job), MAB
        else:
            res = self._pruning_next(job)
            if isinstance(res, list):
                self._construct_mab(job, res)
                bs, type_ = self._mab_predict(job), MAB
            else:
                bs, type_ = res
        n = job.next_trial
        job.next_trial = n + 1
        job.trials[n] = _Trial(bs, type_)
        if type_ == EXPLORATION:
            job.explorations.setdefault(bs, []).append(n)
        self._record("predict", {}, {"job_id": job_id})
        return {"job_id": job_id, "batch_size": bs, "trial_number": n}

    def _pruning_next(self, job: _Job) -> tuple[int, str] | list[int]:
        """Zeus's PruningExploreManager.next_batch_size: ``(batch size, trial type)``, or the
        converged batch sizes once every round is over. Reads only."""
        spec = job.spec
        batch_sizes = list(spec["batch_sizes"])
        exp_default_bs = spec["default_batch_size"]
        expl = job.explorations
        trials = job.trials
        for rnd in range(spec["num_pruning_rounds"]):
            converged_bs: list[int] = []
            min_cost_of_round = float("inf")
            min_bs_of_round = 0
            batch_sizes.sort()
            idx = batch_sizes.index(exp_default_bs)
            down = sorted(batch_sizes[: idx + 1], reverse=True)
            up = sorted(batch_sizes[idx + 1 :])
            for bs_list in (down, up):
                for bs in bs_list:
                    numbers = expl.get(bs)
                    if numbers is not None and len(numbers) > rnd:
                        t = trials[numbers[rnd]]
                        if t.status == DISPATCHED:
                            return job.min_cost_batch_size, CONCURRENT
                        if not t.converged:
                            break
                        converged_bs.append(bs)
                        cost = job.cost(t.energy, t.time)
                        if cost < min_cost_of_round:
                            min_cost_of_round = cost
                            min_bs_of_round = bs
                    else:
                        return bs, EXPLORATION
            exp_default_bs = min_bs_of_round
            batch_sizes = converged_bs
            if len(batch_sizes) == 0:
                raise ZeusServerError(409, "No converged batch sizes has observed. Reconfigure batch_sizes and re-launch the job.")
        return sorted(batch_sizes)

    def _construct_mab(self, job: _Job, good_bs: list[int]) -> None:
        spec = job.spec
        for bs in good_bs:
            rewards = []
            for n in job.explorations[bs]:
                t = job.trials[n]
                rewards.append(-job.cost(t.energy, t.time))
            job.arms[bs] = _fit_arm(spec["mab_prior_mean"], spec["mab_prior_precision"], np.array(rewards))
        job.stage = MAB

    def _mab_predict(self, job: _Job) -> int:
        arms = job.arms
        rng = job.rng
        choices = rng.choice(np.array(list(arms)), len(arms), replace=False)
        num_exploration = job.spec["mab_num_explorations"]
        for arm in choices:
            if arms[int(arm)][3] < num_exploration:
                return int(arm)
        best_bs, best = 0, None
        for bs, (mean, prec, _, _) in arms.items():
            sample = rng.normal(mean, np.sqrt(np.reciprocal(prec)))
            if best is None or sample > best:
                best_bs, best = bs, sample
        return best_bs

    def report(self, result: dict[str, Any]) -> dict[str, Any]:
        """A training result (a validated ``TrainingResult`` as a dict) -> ``ReportResponse`` dict."""
        job = self.jobs.get(result["job_id"])
        if job is None:
            raise ZeusServerError(400, f"Unknown job {result['job_id']}")
        tn = result["trial_number"]
        trial = job.trials.get(tn)
        if trial is None or trial.batch_size != result["batch_size"]:
            raise ZeusServerError(400, f"Unknown trial {_training_result_str(result)}")
        if trial.status != DISPATCHED:
            if trial.converged is None:
                raise ZeusServerError(400, f"Trial({tn}) is already reported but converged is not set.")
            return {"stop_train": True, "converged": trial.converged,
                    "message": f"Result for this trial({tn}) is already reported."}
        spec = job.spec
        cost_ub = np.inf
        if spec["beta_knob"] is not None and job.min_cost is not None:
            cost_ub = spec["beta_knob"] * job.min_cost
        reported_cost = job.cost(result["energy"], result["time"])
        within_cost_range = cost_ub >= reported_cost
        metric = result["metric"]
        converged = (spec["higher_is_better_metric"] and spec["target_metric"] <= metric) or (
            not spec["higher_is_better_metric"] and spec["target_metric"] >= metric
        )
        if within_cost_range and result["current_epoch"] < spec["max_epochs"] and not converged:
            return {"stop_train": False, "converged": False, "message": "Stop condition not met, keep training"}
        if converged and within_cost_range:
            message = "Train succeeded"
        elif not within_cost_range:
            message = f"""Batch Size({result['batch_size']}) exceeded the cost upper bound: current cost({reported_cost}) >
                    beta_knob({spec['beta_knob']})*min_cost({job.min_cost})"""
        else:
            message = f"Train failed to converge within max_epoch({spec['max_epochs']})"
        if result["time"] < 0 or result["energy"] < 0:
            # The reference fails here with 500 (its UpdateTrial requires both >= 0).
            raise _negative_result_error(result)
        ok = bool(converged and within_cost_range)
        if job.stage == MAB:
            self._mab_report(job, trial, result)
        self._finish_trial(job, tn, trial, result["time"], result["energy"], ok)
        self._record("report", {}, {"result": result})
        return {"stop_train": True, "converged": ok, "message": message}

    def _mab_report(self, job: _Job, trial: _Trial, result: dict[str, Any]) -> None:
        """Refit the arm of the reported batch size (raises before changing anything)."""
        spec = job.spec
        bs = result["batch_size"]
        window = spec["window_size"]
        # Zeus: the batch size's succeeded trials, newest first, at most `window` of them.
        history = job.succeeded.get(bs, [])[::-1]
        if window > 0:
            history = history[:window]
            if len(history) >= window:
                history.pop()
                history.reverse()
        costs = [-job.cost(job.trials[n].energy, job.trials[n].time) for n in history]
        costs.append(-job.cost(result["energy"], result["time"]))
        if bs not in job.arms:
            raise ZeusServerError(400, f"MAB stage but Arm for batch size({bs}) is not found.")
        new_arm = _fit_arm(spec["mab_prior_mean"], spec["mab_prior_precision"], np.array(costs))
        if trial.type != MAB:
            raise ZeusServerError(400, "Cannot update an arm since this trial is not issued from MAB stage.")
        job.arms[bs] = new_arm

    def _finish_trial(self, job: _Job, number: int, trial: _Trial, time_s: float, energy: float, converged: bool) -> None:
        bisect.insort(job.succeeded.setdefault(trial.batch_size, []), number)
        trial.status = SUCCEEDED
        trial.time = time_s
        trial.energy = energy
        trial.converged = converged
        cur_cost = job.cost(energy, time_s)
        if job.min_cost is None or job.min_cost > cur_cost:
            job.min_cost = cur_cost
            job.min_cost_batch_size = trial.batch_size

    def end_trial(self, job_id: str, batch_size: int, trial_number: int) -> None:
        """Mark a trial ended (``PATCH /trials``): a still-dispatched trial becomes failed."""
        job = self.jobs.get(job_id)
        trial = None if job is None else job.trials.get(trial_number)
        if trial is None or trial.batch_size != batch_size:
            raise ZeusServerError(404, f"Could not find the trial: job_id={job_id!r} batch_size={batch_size} trial_number={trial_number}")
        if trial.status == DISPATCHED:
            trial.status = FAILED
            if trial.type == EXPLORATION:
                job.explorations[batch_size].remove(trial_number)
            self._record("end", {}, {"job_id": job_id, "batch_size": batch_size, "trial_number": trial_number})

    def delete_job(self, job_id: str) -> None:
        """Forget a job and all its trials and arms (404 if unknown)."""
        if self.jobs.pop(job_id, None) is None:
            raise ZeusServerError(404, "No job was deleted.")
        self._record("delete", {}, {"job_id": job_id})

    def job_state(self, job_id: str) -> dict[str, Any]:
        """A read-only snapshot of one job (spec, stage, min cost, trials, arms) for inspection and tests."""
        job = self.jobs.get(job_id)
        if job is None:
            raise ZeusServerError(404, f"Unknown job {job_id}")
        return json.loads(json.dumps(job.to_doc()))


def _negative_result_error(result: dict[str, Any]) -> ZeusServerError:
    """The refusal of an ending report with negative time or energy (Zeus answers 500)."""
    return ZeusServerError(
        400,
        f"Invalid training result {_training_result_str(result)}: time and energy must be >= 0 to end the trial",
    )


def _training_result_str(r: dict[str, Any]) -> str:
    """``str()`` of Zeus's pydantic-v1 ``TrainingResult`` (its error messages quote it)."""
    return (f"job_id={r['job_id']!r} batch_size={r['batch_size']!r} trial_number={r['trial_number']!r} "
            f"time={r['time']!r} energy={r['energy']!r} metric={r['metric']!r} current_epoch={r['current_epoch']!r}")
