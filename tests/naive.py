"""Slow, obviously-correct twins of banditfleet's kernels and policies.

Everything here is plain Python on Python ints and floats, written from the
published algorithm descriptions (numpy's C sources, the PCG paper, Lemire
2019, Floyd's sampling algorithm), not from the kernels, so that a test
comparing a kernel with its twin checks two independent implementations.
"""

from __future__ import annotations

import math

# --- kernel twins ---------------------------------------------------------
#
# NaivePCG64 mirrors numpy's ``Generator(PCG64(seed))`` for the draw kinds the
# kernels implement (except the ziggurat normal, which is tested against numpy
# directly); the free functions mirror numpy's float reductions and zeus's
# conjugate posterior update.

MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1
MASK128 = (1 << 128) - 1

# PCG_DEFAULT_MULTIPLIER_128 from numpy/random/src/pcg64/pcg64.h
PCG64_MULTIPLIER = 0x2360ED051FC65DA44385DF649FCCF645

# numpy/random/bit_generator.pyx (SeedSequence)
SS_DEFAULT_POOL_SIZE = 4
SS_INIT_A = 0x43B0D7E5
SS_MULT_A = 0x931E8875
SS_INIT_B = 0x8B51F9DD
SS_MULT_B = 0x58F38DED
SS_MIX_MULT_L = 0xCA01F9DD
SS_MIX_MULT_R = 0x4973F715
SS_XSHIFT = 16  # 4 bytes * 8 bits / 2


def _ss_hashmix(value: int, hash_const: list[int]) -> int:
    value = (value ^ hash_const[0]) & MASK32
    hash_const[0] = (hash_const[0] * SS_MULT_A) & MASK32
    value = (value * hash_const[0]) & MASK32
    return value ^ (value >> SS_XSHIFT)


def _ss_mix(x: int, y: int) -> int:
    result = (SS_MIX_MULT_L * x - SS_MIX_MULT_R * y) & MASK32
    return result ^ (result >> SS_XSHIFT)


def seed_sequence_words(seed: int, n_words64: int = 4) -> list[int]:
    """``SeedSequence(seed).generate_state(n_words64, np.uint64)`` as Python ints."""
    if seed < 0:
        raise ValueError("seed must be non-negative")
    # _coerce_to_uint32_array: little-endian 32-bit words, at least one.
    entropy = []
    while True:
        entropy.append(seed & MASK32)
        seed >>= 32
        if seed == 0:
            break
    pool = [0] * SS_DEFAULT_POOL_SIZE
    hash_const = [SS_INIT_A]
    for i in range(SS_DEFAULT_POOL_SIZE):
        pool[i] = _ss_hashmix(entropy[i] if i < len(entropy) else 0, hash_const)
    for i_src in range(SS_DEFAULT_POOL_SIZE):
        for i_dst in range(SS_DEFAULT_POOL_SIZE):
            if i_src != i_dst:
                pool[i_dst] = _ss_mix(pool[i_dst], _ss_hashmix(pool[i_src], hash_const))
    for i_src in range(SS_DEFAULT_POOL_SIZE, len(entropy)):
        for i_dst in range(SS_DEFAULT_POOL_SIZE):
            pool[i_dst] = _ss_mix(pool[i_dst], _ss_hashmix(entropy[i_src], hash_const))
    # generate_state
    words32 = []
    hash_const_b = SS_INIT_B
    for i_dst in range(2 * n_words64):
        data_val = pool[i_dst % SS_DEFAULT_POOL_SIZE] ^ hash_const_b
        hash_const_b = (hash_const_b * SS_MULT_B) & MASK32
        data_val = (data_val * hash_const_b) & MASK32
        words32.append(data_val ^ (data_val >> SS_XSHIFT))
    return [words32[2 * k] | (words32[2 * k + 1] << 32) for k in range(n_words64)]


def _rotr64(value: int, rot: int) -> int:
    return ((value >> rot) | (value << ((64 - rot) & 63))) & MASK64


class NaivePCG64:
    """numpy's PCG64 + the Generator methods the kernels reproduce, on big ints."""

    def __init__(self, seed: int | None = None) -> None:
        self.state = 0
        self.inc = 0
        self.has_uint32 = 0
        self.uinteger = 0
        if seed is not None:
            self.seed(seed)

    # -- state ---------------------------------------------------------------
    def seed(self, seed: int) -> None:
        """``PCG64(seed)``: SeedSequence words, then pcg64_srandom_r."""
        w = seed_sequence_words(seed, 4)
        initstate = (w[0] << 64) | w[1]  # PCG_128BIT_CONSTANT(high=w[0], low=w[1])
        initseq = (w[2] << 64) | w[3]
        self.state = 0
        self.inc = ((initseq << 1) | 1) & MASK128
        self._step()
        self.state = (self.state + initstate) & MASK128
        self._step()
        self.has_uint32 = 0
        self.uinteger = 0

    @property
    def numpy_state(self) -> dict:
        """The state in numpy's ``bit_generator.state`` format."""
        return {
            "bit_generator": "PCG64",
            "state": {"state": self.state, "inc": self.inc},
            "has_uint32": self.has_uint32,
            "uinteger": self.uinteger,
        }

    @numpy_state.setter
    def numpy_state(self, value: dict) -> None:
        self.state = value["state"]["state"]
        self.inc = value["state"]["inc"]
        self.has_uint32 = value["has_uint32"]
        self.uinteger = value["uinteger"]

    # -- raw draws -------------------------------------------------------------
    def _step(self) -> None:
        self.state = (self.state * PCG64_MULTIPLIER + self.inc) & MASK128

    def next_uint64(self) -> int:
        """XSL-RR 128/64: step first, then output from the new state."""
        self._step()
        hi = self.state >> 64
        lo = self.state & MASK64
        return _rotr64(hi ^ lo, self.state >> 122)

    def next_uint32(self) -> int:
        """Low half of a fresh 64-bit draw; the high half is kept for the next call."""
        if self.has_uint32:
            self.has_uint32 = 0
            return self.uinteger
        value = self.next_uint64()
        self.has_uint32 = 1
        self.uinteger = value >> 32
        return value & MASK32

    def next_double(self) -> float:
        return (self.next_uint64() >> 11) * (1.0 / 9007199254740992.0)

    # -- bounded integers (numpy's random_bounded_uint64, unmasked) -------------
    def _lemire32(self, rng: int) -> int:
        rng_excl = rng + 1
        m = self.next_uint32() * rng_excl
        leftover = m & MASK32
        if leftover < rng_excl:
            threshold = ((1 << 32) - rng_excl) % rng_excl  # (UINT32_MAX - rng) % rng_excl
            while leftover < threshold:
                m = self.next_uint32() * rng_excl
                leftover = m & MASK32
        return m >> 32

    def _lemire64(self, rng: int) -> int:
        rng_excl = rng + 1
        m = self.next_uint64() * rng_excl
        leftover = m & MASK64
        if leftover < rng_excl:
            threshold = ((1 << 64) - rng_excl) % rng_excl
            while leftover < threshold:
                m = self.next_uint64() * rng_excl
                leftover = m & MASK64
        return m >> 64

    def bounded_uint64(self, rng: int) -> int:
        """Uniform in ``[0, rng]`` inclusive, ``0 <= rng < 2**64``."""
        if not 0 <= rng <= MASK64:
            raise ValueError("rng out of range")
        if rng == 0:
            return 0
        if rng <= MASK32:
            if rng == MASK32:
                return self.next_uint32()
            return self._lemire32(rng)
        if rng == MASK64:
            return self.next_uint64()
        return self._lemire64(rng)

    def integers(self, low: int, high: int) -> int:
        """``Generator.integers(low, high)``, ``high`` exclusive."""
        return low + self.bounded_uint64(high - low - 1)

    # -- choice without replacement ----------------------------------------------
    def choice_without_replacement(self, population: int, size: int) -> list[int]:
        """``Generator.choice(population, size, replace=False)`` for population <= 10,000.

        Floyd's algorithm (draw j in [0, j]; if already chosen, take j itself),
        followed by a Fisher-Yates shuffle of the sample from the back.
        """
        if not 0 <= size <= population:
            raise ValueError("need 0 <= size <= population")
        chosen: set[int] = set()
        sample: list[int] = []
        for j in range(population - size, population):
            val = self.bounded_uint64(j)
            if val in chosen:
                val = j
            chosen.add(val)
            sample.append(val)
        for i in reversed(range(1, size)):
            j = self.bounded_uint64(i)
            sample[i], sample[j] = sample[j], sample[i]
        return sample


def pairwise_sum(values) -> float:
    """numpy's ``pairwise_sum_DOUBLE`` (no reduction identity added)."""
    values = [float(v) for v in values]
    n = len(values)
    if n < 8:
        res = 0.0
        for v in values:
            res += v
        return res
    if n <= 128:
        r = values[:8]
        i = 8
        while i < n - (n % 8):
            for k in range(8):
                r[k] += values[i + k]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += values[i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return pairwise_sum(values[:n2]) + pairwise_sum(values[n2:])


def array_sum(values) -> float:
    """``np.sum`` of a 1-D float64 array: the identity 0.0 plus the pairwise sum."""
    return 0.0 + pairwise_sum(values)


def _divide(a: float, b: float) -> float:
    """IEEE division (Python raises on x/0; numpy and the kernels don't)."""
    if b == 0.0:
        if a != a or a == 0.0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def array_mean(values) -> float:
    """``ndarray.mean()``: the sum divided by the count."""
    return _divide(array_sum(values), float(len(values)))


def population_variance(values) -> float:
    """``np.var(values)`` (ddof=0): mean first, then the mean of squared deviations."""
    values = [float(v) for v in values]
    mean = array_mean(values)
    squares = []
    for v in values:
        d = v - mean  # inf - inf is nan in Python too
        squares.append(d * d)
    return _divide(array_sum(squares), float(len(values)))


def precision_from_variance(variance: float) -> float:
    """zeus: ``np.inf if variance == 0.0 else np.reciprocal(variance)``."""
    if variance == 0.0:
        return math.inf
    return 1.0 / variance


def fit_reset(rewards, reward_precision: float, prior_mean: float, prior_precision: float):
    """zeus ``GaussianTS.fit_arm(arm, rewards, reset=True)`` -> (mean, precision)."""
    return fit(prior_mean, prior_precision, rewards, reward_precision)


def fit(mean: float, precision: float, rewards, reward_precision: float):
    """zeus ``GaussianTS.fit_arm`` from the state (mean, precision), without reset."""
    rewards = [float(r) for r in rewards]
    if not rewards:
        return mean, precision
    if reward_precision == math.inf:
        return array_mean(rewards), math.inf
    new_precision = precision + len(rewards) * reward_precision
    new_mean = _divide(precision * mean + reward_precision * array_sum(rewards), new_precision)
    return new_mean, new_precision


def fit_increment(mean: float, precision: float, reward: float, reward_precision: float):
    """One more reward without reset."""
    return fit(mean, precision, [reward], reward_precision)


# --- policy twins: pruning ---
#
# banditfleet's pruning policy written the plain way: each round materializes
# its down and up lists, a job is a dict, the survivors' bandit draws from
# numpy's own ``default_rng``. Misuse raises banditfleet's errors; a failing
# call works on a copy and leaves the model as it was.

import copy as _copy  # noqa: E402

import numpy as _np  # noqa: E402


def _pruning_errors():
    from banditfleet import errors

    return errors


class NaivePruningRounds:
    """One job's pruning rounds. ``arms`` in the order round 1 splits them by position."""

    def __init__(self, arms, default, num_rounds):
        self.num_rounds = num_rounds
        self.round = 0
        self.done = False
        self.members = list(arms)
        self.round_default = default
        self.conv = None  # (cost, arm): cheapest converged observation
        self.started = False
        self._start_round()

    def _start_round(self):
        idx = self.members.index(self.round_default)
        self.down = sorted(self.members[: idx + 1], reverse=True)
        self.up = sorted(self.members[idx + 1 :])
        self.schedule = self.down + self.up
        self.pos = -1
        self.expecting = 0
        self.pending = None  # (cost, reached) reported, not yet settled
        self.reached = []
        self.best = None  # (cost, arm)

    @property
    def default(self):
        return self.best[1] if self.best is not None else self.round_default

    def best_known(self):
        if self.conv is not None:
            return self.conv[1]
        return self.default

    def advance(self, allow_empty_final):
        """('next', arm) or ('final', survivors); mutates self (callers use a copy)."""
        self.started = True
        if self.pending is not None:
            cost, ok = self.pending
            arm = self.schedule[self.pos]
            self.pending = None
            if ok:
                if self.best is None or self.best[0] > cost:
                    self.best = (cost, arm)
                self.reached.append(arm)
            elif self.pos < len(self.down):
                self.pos = len(self.down) - 1
            else:
                self.pos = len(self.schedule) - 1
        if self.pos + 1 < len(self.schedule):
            self.pos += 1
            self.expecting = self.schedule[self.pos]
            return "next", self.expecting
        last = self.round + 1 == self.num_rounds
        if not self.reached and not (allow_empty_final and last):
            raise _pruning_errors().PruningExhaustedError(f"nothing reached in round {self.round + 1}")
        self.members = sorted(self.reached)
        if self.best is not None:
            self.round_default = self.best[1]
        self.round += 1
        self.expecting = 0
        if last:
            self.done = True
            self.best = None
            self.reached = []
            return "final", list(self.members)
        self._start_round()
        return self.advance(allow_empty_final)

    def report(self, arm, cost, converged, concurrency):
        if not (self.expecting and arm == self.expecting) and not concurrency:
            raise _pruning_errors().PruningOrderError(f"awaiting {self.expecting}, got {arm}")
        if converged and (self.conv is None or cost < self.conv[0]):
            self.conv = (cost, arm)
        if self.expecting and arm == self.expecting:
            self.pending = (cost, bool(converged))
            self.expecting = 0


class NaivePruningManager:
    """Twin of ``banditfleet.PruningExploreManager``."""

    def __init__(self, batch_sizes, default, num_pruning_rounds=2):
        if default not in batch_sizes:
            raise _pruning_errors().InvalidArmsError(f"{default} not in {batch_sizes}")
        self.state = NaivePruningRounds(batch_sizes, default, num_pruning_rounds)

    @property
    def batch_sizes(self):
        return list(self.state.members)

    @property
    def default(self):
        return self.state.default

    @property
    def expecting(self):
        s = self.state
        return s.round_default if not s.started else s.expecting

    def next_batch_size(self):
        if self.state.done:
            raise StopIteration(list(self.state.members))
        if self.state.expecting:
            raise _pruning_errors().PruningOrderError("a result is awaited")
        work = _copy.deepcopy(self.state)
        kind, value = work.advance(allow_empty_final=True)
        self.state = work
        if kind == "final":
            raise StopIteration(list(value))
        return value

    def report_batch_size_result(self, batch_size, cost, reached):
        if not math.isfinite(cost):
            raise _pruning_errors().InvalidObservationError("cost")
        if self.state.done:
            raise _pruning_errors().PruningOrderError("pruning is over")
        self.state.report(batch_size, cost, reached, concurrency=False)


class NaivePruningGTS:
    """Twin of ``banditfleet.PruningGTSBatchSizeOptimizer`` (scalar calls only)."""

    def __init__(self, prior_mean=0.0, prior_precision=0.0, window_size=0, concurrency=False, seed=123456):
        self.prior_mean = prior_mean
        self.prior_precision = prior_precision
        self.window_size = window_size
        self.concurrency = concurrency
        self.seed = seed
        self.jobs = {}

    def register(self, job, batch_sizes, default):
        errors = _pruning_errors()
        arms = sorted(batch_sizes)
        if job in self.jobs:
            j = self.jobs[job]
            if j["arms"] != arms or j["default"] != default:
                raise errors.JobConflictError(f"{job} registered differently")
            return
        if default not in arms:
            raise errors.InvalidArmsError(f"{default} not in {arms}")
        self.jobs[job] = {
            "arms": arms,
            "default": default,
            "pruning": NaivePruningRounds(arms, default, 2),
            "history": [],
            "bandit": None,
        }

    def _job(self, job):
        if job not in self.jobs:
            raise _pruning_errors().UnknownJobError(job)
        return self.jobs[job]

    def window(self, job, bs):
        rewards = [r for b, r in self.jobs[job]["history"] if b == bs]
        if self.window_size:
            rewards = rewards[-self.window_size :]
        return rewards

    def _fit(self, job, bs):
        bandit = self.jobs[job]["bandit"]
        rewards = _np.array(self.window(job, bs), dtype=_np.float64)
        var = _np.var(rewards)
        rp = _np.float64(_np.inf) if var == 0.0 else _np.float64(1.0) / var
        if rp == _np.inf:
            mean, prec = rewards.mean(), _np.float64(_np.inf)
        else:
            prec = _np.float64(self.prior_precision) + len(rewards) * rp
            mean = (_np.float64(self.prior_precision) * _np.float64(self.prior_mean) + rp * rewards.sum()) / prec
        bandit["rp"][bs] = float(rp)
        bandit["mean"][bs] = float(mean)
        bandit["prec"][bs] = float(prec)
        bandit["count"][bs] = len(rewards)

    def predict(self, job):
        j = self._job(job)
        if j["bandit"] is None:
            p = j["pruning"]
            if p.expecting:
                if self.concurrency:
                    return p.best_known()
                raise _pruning_errors().PruningOrderError("a result is awaited")
            work = _copy.deepcopy(p)
            kind, value = work.advance(allow_empty_final=False)
            j["pruning"] = work
            if kind == "next":
                return value
            j["bandit"] = {"arms": value, "rng": _np.random.default_rng(self.seed), "rp": {}, "mean": {}, "prec": {}, "count": {}}
            for bs in value:
                self._fit(job, bs)
        bandit = j["bandit"]
        arms = bandit["arms"]
        for arm in bandit["rng"].choice(_np.array(arms), len(arms), replace=False):
            if bandit["count"][int(arm)] < 2:
                return int(arm)
        best_arm, best = None, None
        for arm in arms:
            draw = bandit["rng"].normal(bandit["mean"][arm], _np.sqrt(_np.float64(1.0) / _np.float64(bandit["prec"][arm])))
            if best is None or draw > best:
                best_arm, best = arm, draw
        return best_arm

    def observe(self, job, bs, cost, converged=None):
        errors = _pruning_errors()
        j = self._job(job)
        if not math.isfinite(cost):
            raise errors.InvalidObservationError(cost)
        if bs not in j["arms"]:
            raise errors.UnknownBatchSizeError(bs)
        if j["bandit"] is None:
            if converged is None:
                raise errors.InvalidObservationError("converged=None during pruning")
            work = _copy.deepcopy(j["pruning"])
            work.report(bs, cost, converged, self.concurrency)
            j["pruning"] = work
        j["history"].append((bs, -cost))
        if j["bandit"] is not None:
            self._fit(job, bs)
