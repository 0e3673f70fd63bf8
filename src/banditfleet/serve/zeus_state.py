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

Layout: the decision state is struct-of-arrays (see :class:`ZeusServerState`
and docs/architecture.md): a :class:`~banditfleet.store.FleetStore` row per
job (stage, cached next pruning decision, minimum-cost batch size, next trial
number, PCG64 stream; per batch size the MAB arm), and a trial table with a
row per trial. A batch of predictions (:meth:`ZeusServerState.predict_many`)
is one :func:`~banditfleet.kernels.thompson.thompson_predict` call plus numpy
bookkeeping.

Durability: every state change is one journal record (kinds ``register``,
``predict``, ``report``, ``end``, ``delete``, and ``predicts`` / ``reports``
for a whole batch, the inputs in the record's extra fields); recovery
replays them through the same code. The state object
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
from banditfleet.errors import CheckpointError, JournalError, UnknownJobError
from banditfleet.journal import encode_record
from banditfleet.kernels.thompson import thompson_predict
from banditfleet.rng_state import export_state, import_state
from banditfleet.store import HISTORY_NONE, MAX_ARMS_PER_JOB, FleetStore

__all__ = ["ZeusServerState", "ZeusServerError", "zeus_cost"]

logger = logging.getLogger("banditfleet.serve")

EXPLORATION, CONCURRENT, MAB = "Exploration", "Concurrent", "MAB"
DISPATCHED, SUCCEEDED, FAILED = "Dispatched", "Succeeded", "Failed"
PRUNING = "Pruning"

_CKPT_MAGIC = b"BFZS1\n"


class ZeusServerError(Exception):
    """A refused request: HTTP ``status`` and the ``message`` of the ``{"message": ...}`` body."""

    def __init__(self, status: int, message: str, index: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        #: The entry of a batch call that was refused (None for a single-job call).
        self.index = index


def zeus_cost(energy: float, time_s: float, eta_knob: float, max_power: float) -> float:
    """Energy-time cost: ``eta_knob * energy + (1 - eta_knob) * max_power * time``
    (energy in joules, time in seconds, max_power in watts)."""
    return eta_knob * energy + (1 - eta_knob) * max_power * time_s


class _Trial:
    """A read-only snapshot of one trial (row ``g`` of the :class:`_TrialTable`)."""

    __slots__ = ("batch_size", "type", "status", "time", "energy", "converged", "g")

    def __init__(self, batch_size: int, type_: str, status: str = DISPATCHED,
                 time_s: Optional[float] = None, energy: Optional[float] = None,
                 converged: Optional[bool] = None, g: int = -1) -> None:
        self.batch_size = batch_size
        self.type = type_
        self.status = status
        self.time = time_s
        self.energy = energy
        self.converged = converged
        self.g = g

    def to_list(self) -> list[Any]:
        return [self.batch_size, self.type, self.status, self.time, self.energy, self.converged]


_T_EXPLORATION, _T_CONCURRENT, _T_MAB = 0, 1, 2
_TYPE_NAMES = (EXPLORATION, CONCURRENT, MAB)
_TYPE_CODES = {name: code for code, name in enumerate(_TYPE_NAMES)}
_S_DISPATCHED, _S_SUCCEEDED, _S_FAILED = 0, 1, 2
_STATUS_NAMES = (DISPATCHED, SUCCEEDED, FAILED)
_STATUS_CODES = {name: code for code, name in enumerate(_STATUS_NAMES)}
_TRIAL_BITS = 32  # a trial's key is (job uid << 32) | trial number


class _TrialTable:
    """Every trial of every job as columns (struct of arrays), appended a batch at a time.

    Row ``g`` holds one trial: ``bs`` (batch size), ``type`` and ``status``
    (codes of :data:`_TYPE_NAMES`, :data:`_STATUS_NAMES`), and, once it
    succeeded, ``time`` (s), ``energy`` (J) and ``conv`` (converged, 0/1).
    ``index`` maps ``(job uid << 32) | trial number`` to the row: a batch of
    predictions adds its rows with numpy writes and one ``dict.update``, no
    Python object per trial. Rows of deleted jobs are dropped by
    :meth:`compact` once they outnumber the live ones.
    """

    def __init__(self) -> None:
        cap = 1024
        self.bs = np.zeros(cap, np.int64)
        self.type = np.zeros(cap, np.uint8)
        self.status = np.zeros(cap, np.uint8)
        self.time = np.zeros(cap, np.float64)
        self.energy = np.zeros(cap, np.float64)
        self.conv = np.zeros(cap, np.uint8)
        self.n = 0
        self.dead = 0
        self.index: dict[int, int] = {}
        self.next_uid = 1

    _COLUMNS = ("bs", "type", "status", "time", "energy", "conv")

    def _reserve(self, m: int) -> None:
        need = self.n + m
        cap = self.bs.shape[0]
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        for name in self._COLUMNS:
            old = getattr(self, name)
            new = np.zeros(cap, old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def append(self, uids: np.ndarray, numbers: np.ndarray, bs: np.ndarray, types: np.ndarray) -> None:
        """Add dispatched trials (``uids``, ``numbers``, ``bs``, ``types``: one entry each)."""
        m = int(numbers.shape[0])
        self._reserve(m)
        lo, hi = self.n, self.n + m
        self.bs[lo:hi] = bs
        self.type[lo:hi] = types
        self.status[lo:hi] = _S_DISPATCHED
        self.n = hi
        keys = (uids << _TRIAL_BITS) | numbers
        self.index.update(zip(keys.tolist(), range(lo, hi)))

    def add(self, uid: int, number: int, trial: _Trial) -> None:
        """Add one trial as it stands (a checkpoint's)."""
        self._reserve(1)
        g = self.n
        self.bs[g] = trial.batch_size
        self.type[g] = _TYPE_CODES[trial.type]
        self.status[g] = _STATUS_CODES[trial.status]
        if trial.status == SUCCEEDED:
            self.time[g] = trial.time
            self.energy[g] = trial.energy
            self.conv[g] = bool(trial.converged)
        self.n = g + 1
        self.index[(uid << _TRIAL_BITS) | number] = g

    def get(self, uid: int, number: int) -> Optional[_Trial]:
        """A snapshot of trial ``number`` of the job ``uid``, or None."""
        if not 0 < number < (1 << _TRIAL_BITS):
            return None
        g = self.index.get((uid << _TRIAL_BITS) | number)
        if g is None:
            return None
        if self.status[g] == _S_SUCCEEDED:
            return _Trial(int(self.bs[g]), _TYPE_NAMES[self.type[g]], SUCCEEDED, float(self.time[g]),
                          float(self.energy[g]), bool(self.conv[g]), g)
        return _Trial(int(self.bs[g]), _TYPE_NAMES[self.type[g]], _STATUS_NAMES[self.status[g]], g=g)

    def cost_inputs(self, g: int) -> tuple[float, float]:
        """``(energy, time)`` of a succeeded trial's row."""
        return float(self.energy[g]), float(self.time[g])

    def succeed(self, g: int, time_s: float, energy: float, converged: bool) -> None:
        self.status[g] = _S_SUCCEEDED
        self.time[g] = time_s
        self.energy[g] = energy
        self.conv[g] = converged

    def fail(self, g: int) -> None:
        self.status[g] = _S_FAILED

    def forget(self, uid: int, count: int) -> None:
        """Drop trials 1..count of job ``uid`` (a deleted job); compacts when dead rows dominate."""
        index = self.index
        base = uid << _TRIAL_BITS
        for number in range(1, count + 1):
            index.pop(base | number, None)
        self.dead += count
        if self.dead > max(4096, self.n - self.dead):
            self.compact()

    def compact(self) -> None:
        """Move the live rows down, in order, and renumber the index."""
        keys = np.fromiter(self.index.keys(), np.int64, len(self.index))
        old = np.fromiter(self.index.values(), np.int64, len(self.index))
        order = np.argsort(old, kind="stable")
        keys, old = keys[order], old[order]
        for name in self._COLUMNS:
            col = getattr(self, name)
            new = np.zeros(max(1024, 2 * len(old)), col.dtype)
            new[: len(old)] = col[old]
            setattr(self, name, new)
        self.n = len(old)
        self.dead = 0
        self.index = dict(zip(keys.tolist(), range(len(old))))


class _TrialMap:
    """One job's trials as a read-only mapping ``trial number -> _Trial`` snapshot."""

    __slots__ = ("table", "uid")

    def __init__(self, table: _TrialTable, uid: int) -> None:
        self.table = table
        self.uid = uid

    def get(self, number: int) -> Optional[_Trial]:
        return self.table.get(self.uid, number)

    def __getitem__(self, number: int) -> _Trial:
        t = self.table.get(self.uid, number)
        if t is None:
            raise KeyError(number)
        return t


class _Job:
    """One job's Python-side rows: spec, minimum cost, seed, its trials' key and lists.

    Everything a decision reads lives in the state's :class:`FleetStore` row
    of the job instead (stage, decision hint, minimum-cost batch size, next
    trial number, MAB arms and the PCG64 stream): see :class:`ZeusServerState`.
    """

    __slots__ = ("spec", "min_cost", "seed", "uid", "trials", "explorations", "succeeded", "eta", "max_power")

    def __init__(self, spec: dict[str, Any], seed: int, table: _TrialTable) -> None:
        self.spec = spec
        self.min_cost: Optional[float] = None
        self.seed = seed
        # The job's key in the trial table (never reused, so a re-registered job starts afresh).
        self.uid = table.next_uid
        table.next_uid += 1
        self.trials = _TrialMap(table, self.uid)
        # batch size -> trial numbers of its non-failed explorations, ascending.
        self.explorations: dict[int, list[int]] = {}
        # batch size -> trial numbers of its succeeded trials (every type), ascending.
        self.succeeded: dict[int, list[int]] = {}
        self.eta = spec["eta_knob"]
        self.max_power = spec["max_power"]

    def cost(self, energy: float, time_s: float) -> float:
        eta = self.eta
        return eta * energy + (1 - eta) * self.max_power * time_s


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


# Per-job codes in the store (see ZeusServerState).
_STAGE_PRUNING, _STAGE_MAB = 0, 1
# The decision hint of a pruning-stage job: what its next prediction is, valid until one of
# its explorations is issued, reported or failed. UNKNOWN: run the pruning scan.
_HINT_UNKNOWN, _HINT_CONCURRENT, _HINT_EXPLORE = 0, 1, 2
# Batches of at most this many entries are decided entry by entry (measured: a 1-row
# kernel call and scalar array reads cost ~15 us per entry, the vectorized path ~110 us
# per batch plus ~1 us per entry).
_SMALL_BATCH = 8
_NO_ROWS = np.zeros(0, np.int64)
# A job's batch sizes are arm values of the fleet store (int64, at most MAX_ARMS_PER_JOB).
_INT63 = 1 << 63


class ZeusServerState(Journaled):
    """Every job of a Zeus-protocol server, its decisions, and its journal.

    The operations take validated protocol values (plain Python values, see
    :mod:`banditfleet.serve.zeus_protocol`) and return the response body, or
    raise :class:`ZeusServerError`; a refused operation changes nothing and
    records nothing. Open one on a folder with ``ZeusServerState.open(folder,
    fsync=...)`` (one writer process per folder).

    **Layout.** The decision state of every job is a row of a
    :class:`~banditfleet.store.FleetStore` (struct of arrays): the job's batch
    sizes are its arm slots (ascending), and per row ``stage`` (0 pruning, 1
    MAB), ``hint`` (the pruning stage's next decision, cached: 0 unknown, 1
    a concurrent trial at ``min_cost_bs``, 2 an exploration at ``hint_bs``),
    ``min_cost_bs``, ``next_trial``, ``num_exploration`` and the job's PCG64
    stream (``streams``); per slot the MAB arm (``arm_active``: the slot is an
    arm of the bandit, ``posterior_mean``, ``posterior_precision``,
    ``reward_precision``, ``observation_count``). A batch of predictions
    (:meth:`predict_many`) is one :func:`~banditfleet.kernels.thompson.thompson_predict`
    call for its MAB-stage jobs, array reads for its pruning-stage jobs with
    a valid hint, and one journal record. The trial history (what reports,
    ends and the pruning scan read) stays per job in Python (:class:`_Job`).
    """

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.jobs: dict[str, _Job] = {}
        self._replaying = False
        self._last_offset: Optional[int] = None
        store = FleetStore(HISTORY_NONE)
        store.add_job_array("stage", np.uint8, _STAGE_PRUNING)
        store.add_job_array("hint", np.int8, _HINT_UNKNOWN)
        store.add_job_array("hint_bs", np.int64, 0)
        store.add_job_array("min_cost_bs", np.int64, 0)
        store.add_job_array("next_trial", np.int64, 1)
        store.add_job_array("num_exploration", np.int64, 0)
        store.add_job_array("uid", np.int64, 0)
        self.store = store
        self.trials = _TrialTable()

    # ------------------------------------------------------------ journal hooks
    def _settings(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | os.PathLike) -> int:
        """Write every job as one checkpoint file (atomically); returns its size in bytes."""
        doc = json.dumps({"jobs": {k: self._job_doc(k, j) for k, j in self.jobs.items()}}, allow_nan=True).encode()
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
            state._load_job(key, jd)
        return state

    def _job_doc(self, job_id: str, job: _Job) -> dict[str, Any]:
        """One job as the checkpoint (and :meth:`job_state`) document."""
        store = self.store
        row = store._rows[job_id]
        start, count = int(store.arm_start[row]), int(store.arm_count[row])
        arms = []
        for slot in range(start, start + count):
            if store.arm_active[slot]:
                arms.append([int(store.arm_value[slot]), float(store.posterior_mean[slot]),
                             float(store.posterior_precision[slot]), float(store.reward_precision[slot]),
                             int(store.observation_count[slot])])
        return {
            "spec": job.spec,
            "stage": MAB if store.stage[row] == _STAGE_MAB else PRUNING,
            "min_cost": job.min_cost,
            "min_cost_batch_size": int(store.min_cost_bs[row]),
            "seed": job.seed,
            "rng": export_state(store.streams, row),
            "next_trial": int(store.next_trial[row]),
            "trials": {str(n): job.trials[n].to_list() for n in range(1, int(store.next_trial[row]))},
            "arms": arms,
        }

    def _load_job(self, job_id: str, doc: dict[str, Any]) -> None:
        job = self._apply_register(doc["spec"], doc["seed"])
        store = self.store
        row = store._rows[job_id]
        store.stage[row] = _STAGE_MAB if doc["stage"] == MAB else _STAGE_PRUNING
        job.min_cost = doc["min_cost"]
        store.min_cost_bs[row] = doc["min_cost_batch_size"]
        import_state(store.streams, row, doc["rng"])
        store.next_trial[row] = doc["next_trial"]
        for n, (bs, type_, status, t, e, conv) in sorted(((int(k), v) for k, v in doc["trials"].items())):
            self.trials.add(job.uid, n, _Trial(bs, type_, status, t, e, conv))
            if type_ == EXPLORATION and status != FAILED:
                job.explorations.setdefault(bs, []).append(n)
            if status == SUCCEEDED:
                job.succeeded.setdefault(bs, []).append(n)
        for bs, mean, prec, rprec, nobs in doc["arms"]:
            slot = self._slot(row, bs)
            if slot is None:
                raise CheckpointError(f"job {job_id!r}: an arm for batch size {bs}, which is not one of its batch sizes")
            self._set_arm(slot, [mean, prec, rprec, nobs])

    def _replay(self, kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self._replaying = True
        try:
            if kind == "register":
                self._apply_register(extra["spec"], extra["seed"])
            elif kind == "predict":
                self.predict(extra["job_id"])
            elif kind == "predicts":
                self.predict_many(extra["job_ids"])
            elif kind == "report":
                self.report(extra["result"])
            elif kind == "reports":
                self.report_many(extra["results"])
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

    # ------------------------------------------------------------ store helpers
    def _slot(self, row: int, batch_size: int) -> Optional[int]:
        """The arm slot of one of the job's batch sizes (None if it is not one)."""
        store = self.store
        start, count = int(store.arm_start[row]), int(store.arm_count[row])
        values = store.arm_value[start : start + count]
        i = int(np.searchsorted(values, batch_size))
        if i < count and values[i] == batch_size:
            return start + i
        return None

    def _set_arm(self, slot: int, arm: list[Any]) -> None:
        store = self.store
        store.posterior_mean[slot], store.posterior_precision[slot], store.reward_precision[slot], \
            store.observation_count[slot] = arm
        store.arm_active[slot] = 1

    def is_mab(self, job_id: str) -> bool:
        """Whether a registered job is in its MAB (Thompson-sampling) stage."""
        return bool(self.store.stage[self.store._rows[job_id]] == _STAGE_MAB)

    def has_arm(self, job_id: str, batch_size: int) -> bool:
        """Whether a registered job's bandit has an arm for ``batch_size``."""
        row = self.store._rows[job_id]
        slot = self._slot(row, batch_size)
        return slot is not None and bool(self.store.arm_active[slot])

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
        bss = spec["batch_sizes"]
        if len(bss) > MAX_ARMS_PER_JOB or bss[-1] >= _INT63:
            # The reference answers 500 (SQLite integers are 64-bit) or decides with numpy's other
            # permutation algorithm above 10,000 arms; the fleet store holds neither.
            raise ZeusServerError(400, f"Batch Sizes of job {spec['job_id']!r}: at most {MAX_ARMS_PER_JOB} batch sizes, "
                                  f"each below 2**63 (got {len(bss)}, the largest {bss[-1]})")
        seed = spec["mab_seed"] if spec["mab_seed"] is not None else self._new_seed()
        self._apply_register(spec, seed)
        self._record("register", {}, {"spec": spec, "seed": seed})
        return True, spec

    def _apply_register(self, spec: dict[str, Any], seed: int) -> _Job:
        job_id = spec["job_id"]
        job = _Job(spec, seed, self.trials)
        store = self.store
        rows, _ = store.register([job_id], [spec["batch_sizes"]], settings={
            "num_exploration": np.array([spec["mab_num_explorations"]], np.int64),
            "min_cost_bs": np.array([spec["default_batch_size"]], np.int64),
        })
        row = int(rows[0])
        start, count = int(store.arm_start[row]), int(store.arm_count[row])
        store.arm_active[start : start + count] = 0
        store.observation_count[start : start + count] = 0
        store.stage[row] = _STAGE_PRUNING
        store.hint[row] = _HINT_UNKNOWN
        store.next_trial[row] = 1
        store.uid[row] = job.uid
        import_state(store.streams, row, np.random.default_rng(seed).bit_generator.state)
        self.jobs[job_id] = job
        return job

    def _prepare(self, job: _Job, row: int, construct: bool) -> Optional[list[int]]:
        """Make the pruning-stage hint of ``row`` valid (raises 409 as the reference's scan does).

        When every pruning round is over, returns the converged batch sizes
        and, with ``construct``, builds the job's bandit (MAB stage) first."""
        res = self._pruning_next(job, row)
        store = self.store
        if isinstance(res, list):
            if construct:
                self._construct_mab(job, row, res)
            return res
        bs, type_ = res
        if type_ == EXPLORATION:
            store.hint[row] = _HINT_EXPLORE
            store.hint_bs[row] = bs
        else:
            store.hint[row] = _HINT_CONCURRENT
        return None

    def predict(self, job_id: str) -> dict[str, Any]:
        """The next trial of a job: ``{"job_id", "batch_size", "trial_number"}``."""
        answer = self._predict_one(job_id)
        self._record("predict", {}, {"job_id": job_id})
        return answer

    def _predict_one(self, job_id: str) -> dict[str, Any]:
        """:meth:`predict` without its journal record (scalar reads and writes of the arrays)."""
        job = self.jobs.get(job_id)
        if job is None:
            raise ZeusServerError(400, f"Unknown job({job_id}). Please register the job first")
        store = self.store
        row = store._rows[job_id]
        if store.stage[row] == _STAGE_PRUNING and store.hint[row] == _HINT_UNKNOWN:
            self._prepare(job, row, True)
        if store.stage[row] == _STAGE_MAB:
            out = np.empty(1, np.int64)
            self._thompson(np.array([row], np.int64), out)
            bs, type_ = int(out[0]), MAB
        elif store.hint[row] == _HINT_EXPLORE:
            bs, type_ = int(store.hint_bs[row]), EXPLORATION
            store.hint[row] = _HINT_CONCURRENT
        else:
            bs, type_ = int(store.min_cost_bs[row]), CONCURRENT
        n = int(store.next_trial[row])
        store.next_trial[row] = n + 1
        self.trials.add(job.uid, n, _Trial(bs, type_))
        if type_ == EXPLORATION:
            job.explorations.setdefault(bs, []).append(n)
        return {"job_id": job_id, "batch_size": bs, "trial_number": n}

    def _thompson(self, rows: np.ndarray, out: np.ndarray) -> None:
        s = self.store
        thompson_predict(rows, s.arm_start, s.arm_count, s.arm_active, s.arm_value, s.observation_count,
                         s.posterior_mean, s.posterior_precision, s.num_exploration, s.streams, out)

    def check_predicts(self, job_ids: list[str]) -> list[Optional[ZeusServerError]]:
        """What :meth:`predict` would refuse for each entry (None: it would answer), changing nothing.

        A job refused at its first entry is refused at every entry of a batch
        (a refusal changes nothing); after its first answered entry a job can
        always answer (a concurrent trial, or its bandit). Vectorized: only
        unknown jobs and pruning-stage jobs without a valid hint take a Python step."""
        errors: list[Optional[ZeusServerError]] = [None] * len(job_ids)
        self._check_rows(job_ids, errors)
        return errors

    def _check_rows(self, job_ids: list[str], errors: list[Optional[ZeusServerError]]) -> Optional[np.ndarray]:
        """Fill ``errors`` (see :meth:`check_predicts`); return the rows when every entry is answerable
        (an empty array for a batch of at most ``_SMALL_BATCH`` entries, decided entry by entry)."""
        store = self.store
        if len(job_ids) <= _SMALL_BATCH:
            jobs, index = self.jobs, store._rows
            refused: dict[str, ZeusServerError] = {}
            for i, job_id in enumerate(job_ids):
                err = refused.get(job_id)
                if err is None:
                    job = jobs.get(job_id)
                    if job is None:
                        err = ZeusServerError(400, f"Unknown job({job_id}). Please register the job first")
                    else:
                        row = index[job_id]
                        if store.stage[row] == _STAGE_PRUNING and store.hint[row] == _HINT_UNKNOWN:
                            try:
                                self._prepare(job, row, False)
                            except ZeusServerError as exc:
                                err = exc
                    if err is None:
                        continue
                    refused[job_id] = err
                errors[i] = err
            return None if refused else _NO_ROWS
        try:
            rows = store.key_rows(job_ids)
            known = None
        except (UnknownJobError, TypeError):
            index = store._rows
            known = [index.get(job_id, -1) for job_id in job_ids]
            rows = np.array(known, np.int64)
            for i, r in enumerate(known):
                if r < 0:
                    errors[i] = ZeusServerError(400, f"Unknown job({job_ids[i]}). Please register the job first")
            rows = np.where(rows < 0, 0, rows) if store.n_jobs else rows
        todo = (store.stage[rows] == _STAGE_PRUNING) & (store.hint[rows] == _HINT_UNKNOWN) if store.n_jobs else \
            np.zeros(len(job_ids), bool)
        if known is not None:
            todo &= np.array(known, np.int64) >= 0
        failed = known is not None
        if todo.any():
            jobs = self.jobs
            refused: dict[str, ZeusServerError] = {}
            for i in np.flatnonzero(todo).tolist():
                job_id = job_ids[i]
                err = refused.get(job_id)
                if err is None:
                    try:
                        self._prepare(jobs[job_id], int(rows[i]), False)  # caches the hint; builds nothing
                        continue
                    except ZeusServerError as exc:
                        err = refused[job_id] = exc
                errors[i] = err
                failed = True
        return None if failed else rows

    def predict_many(self, job_ids: list[str]) -> tuple[list[int], list[int]]:
        """The next trial of every entry, in order: ``(batch sizes, trial numbers)``.

        Means what ``len(job_ids)`` calls of :meth:`predict` in that order mean
        (a repeated job gets consecutive trials), decided as one batch: one
        Thompson-sampling kernel call per wave of distinct jobs (the k-th entries
        of the jobs), and one journal record (kind ``predicts``). The whole
        batch is checked first: the first refused entry raises its
        :class:`ZeusServerError` (``.index`` set) and nothing changes.
        """
        if not job_ids:
            return [], []
        errors: list[Optional[ZeusServerError]] = [None] * len(job_ids)
        rows = self._check_rows(job_ids, errors)
        if rows is None:
            for i, err in enumerate(errors):
                if err is not None:
                    err.index = i
                    raise err
        return self._decide_many(job_ids, rows)

    def predict_each(self, job_ids: list[str]) -> list[dict[str, Any] | ZeusServerError]:
        """:meth:`predict` for each entry in order, as one batch: each entry's response
        dict, or the :class:`ZeusServerError` refusing it (a refused entry changes
        nothing; the others are decided by one :meth:`predict_many`-style call)."""
        if len(job_ids) == 1:  # a lone request: the scalar path, without numpy's per-call overhead
            try:
                return [self.predict(job_ids[0])]
            except ZeusServerError as exc:
                return [exc]
        errors: list[Optional[ZeusServerError]] = [None] * len(job_ids)
        rows = self._check_rows(job_ids, errors)
        if rows is None:
            accepted = [j for j, err in zip(job_ids, errors) if err is None]
            rows = self.store.key_rows(accepted) if len(accepted) > _SMALL_BATCH else _NO_ROWS
        else:
            accepted = job_ids
        sizes, numbers = self._decide_many(accepted, rows) if accepted else ([], [])
        out: list[dict[str, Any] | ZeusServerError] = []
        k = 0
        for job_id, err in zip(job_ids, errors):
            if err is None:
                out.append({"job_id": job_id, "batch_size": sizes[k], "trial_number": numbers[k]})
                k += 1
            else:
                out.append(err)
        return out

    def _decide_many(self, job_ids: list[str], rows_all: np.ndarray) -> tuple[list[int], list[int]]:
        """Decide checked entries (``rows_all``: their rows): see :meth:`predict_many`."""
        n = len(job_ids)
        if n <= _SMALL_BATCH:
            # A few entries (a micro-batch under light load): numpy's fixed cost per array
            # operation (tens of them per batch) would exceed the scalar path's per entry.
            answers = [self._predict_one(job_id) for job_id in job_ids]
            self._record("predicts", {}, {"job_ids": job_ids})
            return [a["batch_size"] for a in answers], [a["trial_number"] for a in answers]
        store = self.store
        jobs = self.jobs
        if len(set(job_ids)) == n:
            waves = [None]
        else:
            seen: dict[str, int] = {}
            rank = np.empty(n, np.int64)
            for i, job_id in enumerate(job_ids):
                k = seen.get(job_id, 0)
                rank[i] = k
                seen[job_id] = k + 1
            waves = [np.flatnonzero(rank == w) for w in range(int(rank.max()) + 1)]
        out_bs = np.empty(n, np.int64)
        out_tn = np.empty(n, np.int64)
        out_type = np.empty(n, np.uint8)
        for wave in waves:
            rows = rows_all if wave is None else rows_all[wave]
            pruning = store.stage[rows] == _STAGE_PRUNING
            if pruning.any():
                todo = np.flatnonzero(pruning & (store.hint[rows] == _HINT_UNKNOWN))
                for i in todo.tolist():  # a pruning scan only where an exploration changed
                    row = int(rows[i])
                    self._prepare(jobs[store._keys[row]], row, True)
                pruning = store.stage[rows] == _STAGE_PRUNING
            explore = pruning & (store.hint[rows] == _HINT_EXPLORE)
            bs = np.where(explore, store.hint_bs[rows], store.min_cost_bs[rows])
            types = np.where(explore, _T_EXPLORATION, _T_CONCURRENT).astype(np.uint8)
            store.hint[rows[explore]] = _HINT_CONCURRENT
            if not pruning.all():
                mab = ~pruning
                chosen = np.empty(int(mab.sum()), np.int64)
                self._thompson(np.ascontiguousarray(rows[mab]), chosen)
                bs[mab] = chosen
                types[mab] = _T_MAB
            tn = store.next_trial[rows]
            store.next_trial[rows] = tn + 1
            if wave is None:
                out_bs, out_tn, out_type = bs, tn, types
            else:
                out_bs[wave], out_tn[wave], out_type[wave] = bs, tn, types
        self.trials.append(store.uid[rows_all], out_tn, out_bs, out_type)
        bs_list, tn_list = out_bs.tolist(), out_tn.tolist()
        for i in np.flatnonzero(out_type == _T_EXPLORATION).tolist():
            jobs[job_ids[i]].explorations.setdefault(bs_list[i], []).append(tn_list[i])
        self._record("predicts", {}, {"job_ids": job_ids})
        return bs_list, tn_list

    def _pruning_next(self, job: _Job, row: int) -> tuple[int, str] | list[int]:
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
                            return int(self.store.min_cost_bs[row]), CONCURRENT
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

    def _construct_mab(self, job: _Job, row: int, good_bs: list[int]) -> None:
        spec = job.spec
        for bs in good_bs:
            rewards = []
            for n in job.explorations[bs]:
                t = job.trials[n]
                rewards.append(-job.cost(t.energy, t.time))
            arm = _fit_arm(spec["mab_prior_mean"], spec["mab_prior_precision"], np.array(rewards))
            self._set_arm(self._slot(row, bs), arm)
        self.store.stage[row] = _STAGE_MAB

    def report(self, result: dict[str, Any]) -> dict[str, Any]:
        """A training result (a validated ``TrainingResult`` as a dict) -> ``ReportResponse`` dict."""
        response = self._report(result)
        if response[1]:
            self._record("report", {}, {"result": result})
        return response[0]

    def report_many(self, results: list[dict[str, Any]]) -> list[Any]:
        """:meth:`report` for each result in order, journaled as one record (kind ``reports``).

        Each entry's answer is its response dict, or the :class:`ZeusServerError`
        refusing it (a refused entry changes nothing; the others stand)."""
        out: list[Any] = []
        changed = False
        for result in results:
            try:
                response, ch = self._report(result)
            except ZeusServerError as exc:
                out.append(exc)
                continue
            out.append(response)
            changed |= ch
        if changed:
            self._record("reports", {}, {"results": results})
        return out

    def _report(self, result: dict[str, Any]) -> tuple[dict[str, Any], bool]:
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
                    "message": f"Result for this trial({tn}) is already reported."}, False
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
            return {"stop_train": False, "converged": False, "message": "Stop condition not met, keep training"}, False
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
        row = self.store._rows[result["job_id"]]
        if self.store.stage[row] == _STAGE_MAB:
            self._mab_report(job, row, trial, result)
        self._finish_trial(job, row, tn, trial, result["time"], result["energy"], ok)
        return {"stop_train": True, "converged": ok, "message": message}, True

    def _mab_report(self, job: _Job, row: int, trial: _Trial, result: dict[str, Any]) -> None:
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
        slot = self._slot(row, bs)
        if slot is None or not self.store.arm_active[slot]:
            raise ZeusServerError(400, f"MAB stage but Arm for batch size({bs}) is not found.")
        new_arm = _fit_arm(spec["mab_prior_mean"], spec["mab_prior_precision"], np.array(costs))
        if trial.type != MAB:
            raise ZeusServerError(400, "Cannot update an arm since this trial is not issued from MAB stage.")
        self._set_arm(slot, new_arm)

    def _finish_trial(self, job: _Job, row: int, number: int, trial: _Trial, time_s: float, energy: float,
                      converged: bool) -> None:
        bisect.insort(job.succeeded.setdefault(trial.batch_size, []), number)
        self.trials.succeed(trial.g, time_s, energy, converged)
        cur_cost = job.cost(energy, time_s)
        store = self.store
        if job.min_cost is None or job.min_cost > cur_cost:
            job.min_cost = cur_cost
            store.min_cost_bs[row] = trial.batch_size
        if trial.type == EXPLORATION:
            store.hint[row] = _HINT_UNKNOWN

    def end_trial(self, job_id: str, batch_size: int, trial_number: int) -> None:
        """Mark a trial ended (``PATCH /trials``): a still-dispatched trial becomes failed."""
        job = self.jobs.get(job_id)
        trial = None if job is None else job.trials.get(trial_number)
        if trial is None or trial.batch_size != batch_size:
            raise ZeusServerError(404, f"Could not find the trial: job_id={job_id!r} batch_size={batch_size} trial_number={trial_number}")
        if trial.status == DISPATCHED:
            self.trials.fail(trial.g)
            if trial.type == EXPLORATION:
                job.explorations[batch_size].remove(trial_number)
                self.store.hint[self.store._rows[job_id]] = _HINT_UNKNOWN
            self._record("end", {}, {"job_id": job_id, "batch_size": batch_size, "trial_number": trial_number})

    def delete_job(self, job_id: str) -> None:
        """Forget a job and all its trials and arms (404 if unknown)."""
        job = self.jobs.pop(job_id, None)
        if job is None:
            raise ZeusServerError(404, "No job was deleted.")
        store = self.store
        row = store._rows[job_id]
        self.trials.forget(job.uid, int(store.next_trial[row]) - 1)
        store.remove(np.array([row], np.int64))
        store.maybe_compact()
        self._record("delete", {}, {"job_id": job_id})

    def job_state(self, job_id: str) -> dict[str, Any]:
        """A read-only snapshot of one job (spec, stage, min cost, trials, arms) for inspection and tests."""
        job = self.jobs.get(job_id)
        if job is None:
            raise ZeusServerError(404, f"Unknown job {job_id}")
        return json.loads(json.dumps(self._job_doc(job_id, job)))


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
