"""The public boundary: every user value is validated here, once, with one set of messages.

Each kind of value an optimizer takes (a cost, a batch size, a power limit, a
flag, a seed, a job key, a setting) is a :class:`Constraint` object declared
once in this module. A constraint converts a valid value (``check`` for one,
``check_many`` for a batch) or raises the :mod:`banditfleet.errors` class it
declares, with a message naming the job and the value. Public methods declare
which constraint each parameter obeys with :func:`declare` (metadata only: the
method is not wrapped, so the scalar fast paths stay a couple of ``isinstance``
checks); the invalid-input tests are generated from those declarations
(``Constraint.invalid_examples``).

What is accepted (docs/compat.md has the table):

* numbers are ``int``, ``float`` and numpy integer/floating scalars or arrays
  (any width, float16 included). ``bool``/``numpy.bool_``, ``Decimal``,
  ``Fraction``, complex, strings, ``None``, datetimes and other objects are
  refused, as are values that do not fit (``10**400``, integers beyond int64);
* costs are finite (NaN and ±inf refused); ``-0.0`` is a valid cost and is
  kept as it is (the reference negates it into reward ``0.0``, as the kernels do);
* batch sizes and power limits are integers; integral floats (``32.0``) are
  accepted; power limits, and the power-limit optimizer's batch sizes, must be
  positive. A batch-size optimizer's batch size that is not one of the job's
  raises :class:`~banditfleet.errors.UnknownBatchSizeError`;
* flags (``converged``, ``reached``, ``concurrency``...) are ``bool``,
  ``numpy.bool_`` or the integers 0 and 1;
* seeds are integers in ``[0, 2**64)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from banditfleet.kernels.distributions import FLOYD_MAX_POPULATION
from banditfleet.errors import (
    CheckpointError,
    ConfigurationError,
    InvalidArmsError,
    InvalidJobKeyError,
    InvalidObservationError,
    JournalError,
    UnknownJobError,
)

__all__ = [
    "Constraint",
    "declare",
    "describe",
    "shown",
    "key_list",
    "unhashable",
    "flatten_arms",
    "validate_arms",
    "COST",
    "BATCH_SIZE",
    "POSITIVE_BATCH_SIZE",
    "POWER_LIMIT",
    "ARM",
    "ROW",
    "FLAG",
    "OPTIONAL_FLAG",
    "REACHED",
    "SEED",
    "SEEDS",
    "KEY",
    "JOBS",
    "PATH",
    "FOLDER",
    "FSYNC",
    "CHECKPOINT_BYTES",
]

INT64_MAX = (1 << 63) - 1
# numpy's choice() uses Floyd's algorithm (what the kernels reproduce) up to this many arms.
MAX_ARMS_PER_JOB = int(FLOYD_MAX_POPULATION)
UINT64_LIMIT = 1 << 64

_Who = Callable[[int], str]


def describe(values: Any) -> str:
    """A short description of a value's type for messages."""
    if isinstance(values, np.ndarray):
        return f"array of dtype {values.dtype}"
    if isinstance(values, np.generic):
        return f"numpy {type(values).__name__}"
    return type(values).__name__


def shown(value: Any) -> str:
    """``repr(value)`` for a message, shortened when huge (``10**400`` has 401 digits)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:28]}...{text[-12:]} ({len(text)} characters)"


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_int(value: Any) -> bool:
    # numpy's timedelta64 is a signedinteger subclass: not a number here.
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_, np.timedelta64))


def _is_float(value: Any) -> bool:
    return isinstance(value, (float, np.floating))


def _objects(values: Any) -> np.ndarray:
    """A 1-D object array holding each element of ``values`` as it is."""
    items = list(values)
    arr = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):
        arr[i] = v
    return arr


def _array_of(name: str, values: Any, n: int, error: type[Exception], mixed_numbers: bool = True) -> np.ndarray:
    """``values`` as a 1-D array of ``n`` (a lone scalar counts as one value).

    A list or tuple mixing element types becomes an object array, so every
    element is checked as itself: numpy would turn ``[8, True]`` into
    ``[8, 1]`` and ``[1.0, "x"]`` into strings. ``mixed_numbers`` lets a list
    of ints and floats through as floats (lossless for what the caller checks).
    """
    if isinstance(values, (str, bytes)):
        if n != 1:
            raise error(f"{name}: expected {n} values (one per job), got {describe(values)} {shown(values)}")
        return _objects([values])
    if isinstance(values, (list, tuple)):
        types = set(map(type, values))
        if not (len(types) <= 1 or (mixed_numbers and types == {int, float})):
            arr = _objects(values)
            if arr.shape[0] != n:
                raise error(f"{name}: expected {n} values (one per job), got {arr.shape[0]}")
            return arr
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        arr = _objects(values) if hasattr(values, "__len__") and not np.isscalar(values) else _objects([values])
    if arr.dtype.kind not in "iuO" and isinstance(values, (list, tuple)) and values and type(values[0]) is int:
        arr = _objects(values)  # ints beyond int64 became floats: check each as given
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise error(f"{name}: expected {n} values (one per job), got shape {arr.shape}")
    return arr


class Constraint:
    """What one kind of user value must be, how it is converted, and how it is refused.

    ``what`` describes the valid values in messages; ``error`` is the
    :mod:`banditfleet.errors` class a refusal raises. ``invalid_examples()``
    gives values the tests feed to every method that declares the constraint.
    """

    what = "a value"
    error: type[Exception] = InvalidObservationError
    noun = "value"

    def check(self, value: Any, who: str = "") -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def refuse(self, value: Any, who: str = "", why: str | None = None) -> Exception:
        prefix = f"{who}: " if who else ""
        return self.error(f"{prefix}{self.noun} {shown(value)} {why or 'is not ' + self.what}")

    def invalid_examples(self) -> list[Any]:
        """Values every method declaring this constraint must refuse (for the tests)."""
        return []

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.what}>"


# --------------------------------------------------------------------- numbers
_NOT_NUMBERS: list[Any] = []


def _not_numbers() -> list[Any]:
    """Values that are no number banditfleet takes, of every kind the issue lists."""
    if not _NOT_NUMBERS:
        from decimal import Decimal
        from fractions import Fraction

        _NOT_NUMBERS.extend(
            [
                True,
                np.bool_(False),
                Decimal("1.5"),
                Fraction(3, 2),
                "16",
                b"16",
                None,
                1 + 2j,
                np.complex128(1.0),
                np.datetime64("2024-01-01"),
                np.timedelta64(5, "s"),
                object(),
                [16],
            ]
        )
    return list(_NOT_NUMBERS)


class Cost(Constraint):
    """A finite real energy-time cost (int or float, numpy or not; ``-0.0`` allowed)."""

    what = "a finite real energy-time cost (int or float)"
    noun = "cost"

    def check(self, value: Any, who: str = "") -> float:
        t = type(value)
        if t is float:
            if value - value == 0.0:  # finite
                return value
        elif t is int:
            try:
                c = float(value)
            except OverflowError:
                raise self.refuse(value, who) from None
            if c - c == 0.0:
                return c
        elif isinstance(value, np.floating) or _is_int(value):
            with np.errstate(over="ignore"):
                c = float(value)
            if c - c == 0.0:
                return c
        raise self.refuse(value, who)

    def check_many(self, values: Any, n: int, who_at: _Who) -> np.ndarray:
        arr = _array_of("costs", values, n, self.error)
        if arr.dtype.kind in "iuf" and n:
            with np.errstate(over="ignore"):
                out = arr.astype(np.float64, copy=False)
            finite = np.isfinite(out)
            if not finite.all():
                i = int(np.argmin(finite))
                raise self.refuse(_item(arr[i]), who_at(i))
            return np.ascontiguousarray(out)
        if not n:
            return np.zeros(0, np.float64)
        return np.fromiter((self.check(v, who_at(i)) for i, v in enumerate(arr.tolist() if arr.dtype.kind != "O" else arr)), np.float64, n)

    def invalid_examples(self) -> list[Any]:
        return [math.nan, math.inf, -math.inf, np.float32("nan"), np.float16("inf"), 10**400, -(10**400)] + _not_numbers()


class Integer(Constraint):
    """An integer in ``[minimum, 2**63)`` (integral floats such as ``32.0`` accepted)."""

    def __init__(self, noun: str, minimum: int, error: type[Exception] = InvalidObservationError) -> None:
        self.noun = noun
        self.minimum = minimum
        self.error = error
        low = "a positive integer" if minimum == 1 else f"an integer >= {minimum}" if minimum > -INT64_MAX else "an integer"
        self.what = f"{low} (below 2**63)"

    def check(self, value: Any, who: str = "") -> int:
        if type(value) is int and self.minimum <= value <= INT64_MAX:
            return value
        v: int | None = None
        if _is_int(value):
            v = int(value)
        elif _is_float(value) and math.isfinite(value) and float(value).is_integer():
            v = int(value)
        if v is None or not self.minimum <= v <= INT64_MAX:
            raise self.refuse(value, who)
        return v

    def check_many(self, values: Any, n: int, who_at: _Who, name: str | None = None) -> np.ndarray:
        arr = _array_of(name or self.noun + "s", values, n, self.error)
        if not n:
            return np.zeros(0, np.int64)
        kind = arr.dtype.kind
        if kind == "i":
            out = arr.astype(np.int64, copy=False)
            bad = out < self.minimum
        elif kind == "u":
            bad = arr > INT64_MAX
            if self.minimum > 0:
                bad |= arr < self.minimum
            out = None if bad.any() else arr.astype(np.int64)
        elif kind == "f":
            with np.errstate(invalid="ignore", over="ignore"):
                bad = ~(np.isfinite(arr) & (arr == np.round(arr)) & (arr >= self.minimum) & (arr < 2.0**63))
            out = None if bad.any() else arr.astype(np.int64)
        else:
            items = arr.tolist() if kind != "O" else arr
            return np.fromiter((self.check(v, who_at(i)) for i, v in enumerate(items)), np.int64, n)
        if bad.any():
            i = int(np.argmax(bad))
            raise self.refuse(_item(arr[i]), who_at(i))
        return np.ascontiguousarray(out)

    def invalid_examples(self) -> list[Any]:
        out = [2**63, 10**400, 8.5, math.nan, math.inf, np.float64(1e30), np.uint64(2**64 - 1)] + _not_numbers()
        if self.minimum >= 1:
            out += [0, -16, np.int32(-1), -0.0]
        return out


class Flag(Constraint):
    """``True``/``False`` (``numpy.bool_``, or the integers 0 and 1); ``None`` when optional."""

    noun = "flag"

    def __init__(self, noun: str = "flag", optional: bool = False, error: type[Exception] = InvalidObservationError) -> None:
        self.noun = noun
        self.optional = optional
        self.error = error
        self.what = "True or False" + (" (or None)" if optional else "")

    def check(self, value: Any, who: str = "") -> bool | None:
        if value is True or value is False:
            return value
        if value is None and self.optional:
            return None
        if isinstance(value, np.bool_):
            return bool(value)
        if _is_int(value) and value in (0, 1):
            return bool(value)
        raise self.refuse(value, who)

    def check_many(self, values: Any, n: int, who_at: _Who) -> np.ndarray:
        """One flag per job as uint8 (``None`` entries are refused: give None for the whole batch)."""
        arr = _array_of(self.noun, values, n, self.error, mixed_numbers=False)
        if not n:
            return np.zeros(0, np.uint8)
        kind = arr.dtype.kind
        if kind == "b":
            return arr.astype(np.uint8)
        if kind in "iu":
            bad = (arr != 0) & (arr != 1)
            if bad.any():
                i = int(np.argmax(bad))
                raise self.refuse(_item(arr[i]), who_at(i))
            return arr.astype(np.uint8)
        items = arr.tolist() if kind != "O" else arr
        out = np.empty(n, np.uint8)
        for i, v in enumerate(items):
            if v is None:
                raise self.refuse(v, who_at(i), "is not True or False (give None for the whole batch, not per job)")
            out[i] = self.check(v, who_at(i))
        return out

    def invalid_examples(self) -> list[Any]:
        return [2, -1, 0.5, 1.0, "yes", "True", np.int8(3), np.float64(1.0), 1 + 0j, object(), [True]] + ([] if self.optional else [None])


class Seed(Constraint):
    """A seed numpy's ``default_rng`` takes and the kernels can hold: an integer in [0, 2**64)."""

    noun = "seed"
    what = "an integer in [0, 2**64)"
    error = ConfigurationError

    def check(self, value: Any, who: str = "") -> int:
        if type(value) is int and 0 <= value < UINT64_LIMIT:
            return value
        if _is_int(value) and 0 <= int(value) < UINT64_LIMIT:
            return int(value)
        raise self.refuse(value, who)

    def check_many(self, values: Any, n: int, who_at: _Who) -> np.ndarray | None:
        """Per-job seeds as uint64, or None (every job takes the optimizer's seed)."""
        if values is None:
            return None
        if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
            if values.shape != (n,):
                raise self.error(f"seeds: expected {n} seeds (one per job), got shape {values.shape}")
            if values.dtype.kind == "i" and n and values.min() < 0:
                i = int(np.argmin(values))
                raise self.refuse(int(values[i]), who_at(i))
            return values.astype(np.uint64)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise self.error(f"seeds: expected {n} seeds (one per job), got {describe(values)} {values!r}")
        items = values.tolist() if isinstance(values, np.ndarray) else list(values)
        if len(items) != n:
            raise self.error(f"seeds: expected {n} seeds (one per job), got {len(items)}")
        return np.array([self.check(v, who_at(i)) for i, v in enumerate(items)], np.uint64)

    def invalid_examples(self) -> list[Any]:
        return [-1, 2**64, 10**400, 1.0, 1.5, np.float64(3.0)] + _not_numbers()


class Real(Constraint):
    """A real setting: int or float (not bool), finite unless ``allow_inf``, ``>= minimum``."""

    error = ConfigurationError

    def __init__(self, noun: str, minimum: float | None = None, allow_inf: bool = False) -> None:
        self.noun = noun
        self.minimum = minimum
        self.allow_inf = allow_inf
        bits = ["a real number"]
        if minimum is not None:
            bits.append(f">= {minimum}")
        bits.append("(inf allowed)" if allow_inf else "(finite)")
        self.what = " ".join(bits)

    def check(self, value: Any, who: str = "") -> float:
        if type(value) is float or ((_is_int(value) or _is_float(value)) and not _is_bool(value)):
            try:
                v = float(value)
            except OverflowError:
                raise self.refuse(value, who) from None
            if math.isnan(v) or (math.isinf(v) and not (self.allow_inf and v > 0)):
                raise self.refuse(value, who)
            if self.minimum is not None and v < self.minimum:
                raise self.refuse(value, who)
            return v
        raise self.refuse(value, who)

    def invalid_examples(self) -> list[Any]:
        out = [math.nan, -math.inf, 10**400] + _not_numbers()
        if not self.allow_inf:
            out.append(math.inf)
        if self.minimum is not None:
            out.append(self.minimum - 1)
        return out


class Setting(Constraint):
    """An integer setting in ``[minimum, maximum]`` (not bool, not float), minus ``forbid``."""

    error = ConfigurationError

    def __init__(self, noun: str, minimum: int, maximum: int = INT64_MAX, forbid: dict[int, str] | None = None) -> None:
        self.noun = noun
        self.minimum = minimum
        self.maximum = maximum
        self.forbid = forbid or {}
        self.what = f"an integer in [{minimum}, {'2**63 - 1' if maximum == INT64_MAX else maximum}]"

    def check(self, value: Any, who: str = "") -> int:
        if not _is_int(value) or not self.minimum <= int(value) <= self.maximum:
            raise self.refuse(value, who)
        v = int(value)
        if v in self.forbid:
            raise self.refuse(value, who, self.forbid[v])
        return v

    def invalid_examples(self) -> list[Any]:
        return [self.minimum - 1, 2**63, 1.0, 2.5] + list(self.forbid) + _not_numbers()


class PerJob(Constraint):
    """A per-job setting given at registration (``register_jobs(..., window_size=...)``):
    None (every job takes the optimizer's value), one value for every job of the
    batch, or one value per job; each value obeys ``inner``."""

    def __init__(self, inner: Constraint, dtype: Any) -> None:
        self.inner = inner
        self.dtype = np.dtype(dtype)
        self.noun = inner.noun
        self.what = inner.what
        self.error = inner.error

    def check(self, value: Any, who: str = "") -> Any:
        return self.inner.check(value, who)

    def check_many(self, values: Any, n: int, who_at: _Who) -> np.ndarray | None:
        """One value per job as ``dtype``, or None when ``values`` is None."""
        if values is None:
            return None
        if isinstance(values, np.ndarray) and values.ndim == 0:
            values = values.item()
        if not isinstance(values, (list, tuple, range, np.ndarray)):
            one = self.inner.check(values, who_at(0) if n == 1 else "")
            return np.full(n, one, self.dtype)
        if isinstance(values, np.ndarray) and values.ndim != 1:
            raise self.error(f"{self.noun}: expected a 1-D array of {n} values (one per job), got shape {values.shape}")
        if len(values) != n:
            raise self.error(f"{self.noun}: expected {n} values (one per job), got {len(values)}")
        if isinstance(values, np.ndarray):
            good = self._good(values)
            if good is not None:
                if n and not good.all():
                    i = int(np.argmin(good))
                    raise self.inner.refuse(_item(values[i]), who_at(i))
                return values.astype(self.dtype)
            items = values.tolist()
        else:
            items = list(values)
        out = np.empty(n, self.dtype)
        for i, v in enumerate(items):
            out[i] = self.inner.check(v, who_at(i))
        return out

    def _good(self, arr: np.ndarray) -> np.ndarray | None:
        """Which entries of a numeric array are valid (vectorized), or None: check one by one."""
        inner, kind = self.inner, arr.dtype.kind
        if isinstance(inner, Setting) and kind in "iu":
            good = (arr >= inner.minimum) & (arr <= inner.maximum)
            for v in inner.forbid:
                good &= arr != v
            return good
        if isinstance(inner, Seed) and kind in "iu":
            return arr >= 0
        if isinstance(inner, Real) and kind in "iuf":
            f = arr.astype(np.float64)
            good = ~np.isnan(f) & (np.isfinite(f) | (inner.allow_inf & (f > 0)))
            if inner.minimum is not None:
                good &= f >= inner.minimum
            return good
        return None

    def invalid_examples(self) -> list[Any]:
        # None is valid here: it takes the optimizer's value.
        return [v for v in self.inner.invalid_examples() if v is not None]


class FlagSetting(Flag):
    """A boolean setting (``verbose``, ``concurrency``, ``learn_reward_precision``)."""

    error = ConfigurationError

    def __init__(self, noun: str) -> None:
        super().__init__(noun, False, ConfigurationError)


# ------------------------------------------------------------------------ keys
class Key(Constraint):
    """One job key: anything hashable."""

    noun = "job key"
    what = "hashable"
    error = InvalidJobKeyError

    def check(self, value: Any, who: str = "") -> Hashable:
        try:
            hash(value)
        except TypeError:
            raise self.refuse(value, who) from None
        return value

    def invalid_examples(self) -> list[Any]:
        return [["a"], {"a": 1}, {1}, np.array([1])]


class Jobs(Constraint):
    """Many jobs: a sequence (or 1-D array) of keys, or :class:`~banditfleet.rows.Rows`."""

    noun = "jobs"
    what = "a sequence of job keys or Rows from rows()"
    error = UnknownJobError

    def invalid_examples(self) -> list[Any]:
        return ["ab", b"ab", 3, None, [["a"], "b"], np.zeros((2, 1), np.int64)]


def key_list(jobs: Any) -> list[Hashable]:
    """Job keys of a batch call as a list (an array's items as Python scalars)."""
    if isinstance(jobs, list):
        return jobs
    if isinstance(jobs, np.ndarray):
        if jobs.ndim != 1:
            raise UnknownJobError(f"jobs: expected a 1-D sequence of job keys, got {shown(jobs)} of shape {jobs.shape}")
        return jobs.tolist()
    if type(jobs).__name__ == "Rows" and type(jobs).__module__ == "banditfleet.rows":
        raise UnknownJobError(f"jobs: {jobs!r} are rows, not job keys (this call takes keys)")
    if isinstance(jobs, (str, bytes)) or not hasattr(jobs, "__iter__"):
        raise UnknownJobError(
            f"jobs: expected a sequence of job keys or Rows from rows(), got {describe(jobs)} {shown(jobs)} "
            f"(wrap a single key in a list)"
        )
    return list(jobs)


def unhashable(keys: list[Any]) -> Exception:
    """The error for the first key of ``keys`` that is not hashable."""
    for k in keys:
        try:
            hash(k)
        except TypeError:
            return KEY.refuse(k)
    return KEY.refuse(keys[0] if keys else None)  # pragma: no cover - called only on failure


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) and not isinstance(value, (np.datetime64, np.timedelta64)) else value


def declare(**constraints: Constraint) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Record which constraint each parameter of a public method obeys (no wrapper)."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__boundary__ = dict(constraints)  # type: ignore[attr-defined]
        return fn

    return mark


# ----------------------------------------------------------- the declarations
COST = Cost()
BATCH_SIZE = Integer("batch size", -INT64_MAX)  # a batch-size optimizer's (unknown ones: UnknownBatchSizeError)
POSITIVE_BATCH_SIZE = Integer("batch size", 1)  # the power-limit optimizer's
POWER_LIMIT = Integer("power limit", 1)
ARM = Integer("batch size", 1, InvalidArmsError)  # registration lists and defaults
ROW = Integer("job row", 0, UnknownJobError)  # a row number (JITPowerLimitOptimizer.key_of)
FLAG = Flag("converged")
OPTIONAL_FLAG = Flag("converged", optional=True)
REACHED = Flag("reached")
SEED = Seed()
SEEDS = Seed()
KEY = Key()
JOBS = Jobs()
VERBOSE = FlagSetting("verbose")
CONCURRENCY = FlagSetting("concurrency")
PARALLEL = FlagSetting("parallel")
CREATE = FlagSetting("create")
LEARN_REWARD_PRECISION = FlagSetting("learn_reward_precision")
REWARD_PRECISION = Real("reward_precision", minimum=0.0, allow_inf=True)
PRIOR_MEAN = Real("prior_mean")
PRIOR_PRECISION = Real("prior_precision", minimum=0.0)
NUM_EXPLORATION = Setting("num_exploration", 0)
WINDOW_SIZE = Setting(
    "window_size",
    0,
    forbid={1: "cannot work: the survivors' reward precision is 1/var of at least two windowed rewards; use 0 (unbounded) or >= 2"},
)
NUM_PRUNING_ROUNDS = Setting("num_pruning_rounds", 1)
# Per-job settings of register_job(s) (None: the optimizer's value). A window is
# allocated whole per arm (8 bytes a reward), hence its limit.
MAX_WINDOW = 2**20
JOB_WINDOW_SIZE = PerJob(Setting("window_size", 0, MAX_WINDOW, forbid=dict(WINDOW_SIZE.forbid)), np.int64)
JOB_PRIOR_MEAN = PerJob(PRIOR_MEAN, np.float64)
JOB_PRIOR_PRECISION = PerJob(PRIOR_PRECISION, np.float64)
JOB_NUM_EXPLORATION = PerJob(NUM_EXPLORATION, np.int64)
JOB_SEED = PerJob(Seed(), np.uint64)
JOB_NUM_PRUNING_ROUNDS = PerJob(NUM_PRUNING_ROUNDS, np.int64)


# ------------------------------------------------------------- registrations
def flatten_arms(keys: list[Hashable], arm_lists: Any) -> tuple[np.ndarray, np.ndarray]:
    """Batch-size lists (one per job, or a 2-D integer array) as flat int64 values and counts.

    Every value must be a positive integer below 2**63 (:class:`InvalidArmsError`
    naming the job and the value).
    """
    if isinstance(arm_lists, np.ndarray) and arm_lists.ndim == 2:
        if arm_lists.shape[0] != len(keys):
            raise InvalidArmsError(f"{len(keys)} jobs but {arm_lists.shape[0]} batch-size rows")
        if arm_lists.dtype.kind not in "iu":
            raise InvalidArmsError(f"batch sizes must be integers, got {describe(arm_lists)}")
        if arm_lists.dtype.kind == "u" and arm_lists.size and arm_lists.max() > INT64_MAX:
            i = int(np.argmax(arm_lists.max(axis=1) > INT64_MAX))
            raise ARM.refuse(int(arm_lists[i].max()), f"job {keys[i]!r}")
        counts = np.full(len(keys), arm_lists.shape[1], np.int64)
        return np.ascontiguousarray(arm_lists, dtype=np.int64).reshape(-1), counts
    if isinstance(arm_lists, (str, bytes)) or not hasattr(arm_lists, "__len__"):
        raise InvalidArmsError(f"batch sizes: expected one list per job, got {describe(arm_lists)} {arm_lists!r}")
    if len(arm_lists) != len(keys):
        raise InvalidArmsError(f"{len(keys)} jobs but {len(arm_lists)} batch-size lists")
    counts = np.empty(len(keys), np.int64)
    parts: list[np.ndarray] = []
    for i, a in enumerate(arm_lists):
        who = f"job {keys[i]!r}"
        if isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype.kind == "i":
            part = a.astype(np.int64, copy=False)
        elif isinstance(a, (str, bytes)) or not hasattr(a, "__iter__"):
            raise InvalidArmsError(f"{who}: batch sizes {a!r} are not a list of integers")
        else:
            items = a.tolist() if isinstance(a, np.ndarray) else list(a)
            if all(type(v) is int and -INT64_MAX <= v <= INT64_MAX for v in items):
                part = np.array(items, np.int64).reshape(-1)  # non-positive ones: validate_arms names them
            else:
                part = np.array([ARM.check(v, who) for v in items], np.int64)
        counts[i] = part.shape[0]
        parts.append(part)
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return flat, counts


def validate_arms(keys: list[Hashable], flat: np.ndarray, counts: np.ndarray, starts: np.ndarray) -> None:
    """Every job has 1 .. MAX_ARMS_PER_JOB distinct positive batch sizes."""
    if counts.size and counts.min() == 0:
        i = int(np.argmin(counts))
        raise InvalidArmsError(f"job {keys[i]!r}: the batch-size list is empty")
    if counts.size and counts.max() > MAX_ARMS_PER_JOB:
        i = int(np.argmax(counts))
        raise InvalidArmsError(f"job {keys[i]!r}: {int(counts[i])} batch sizes, at most {MAX_ARMS_PER_JOB} are supported")
    if flat.size and flat.min() <= 0:
        pos = int(np.argmin(flat))
        i = int(np.searchsorted(starts, pos, side="right") - 1)
        raise ARM.refuse(int(flat[pos]), f"job {keys[i]!r}")
    if flat.size:
        job_of = np.repeat(np.arange(len(keys)), counts)
        order = np.lexsort((flat, job_of))
        sf, sj = flat[order], job_of[order]
        dup = np.flatnonzero((sf[1:] == sf[:-1]) & (sj[1:] == sj[:-1]))
        if dup.size:
            i = int(sj[dup[0]])
            raise InvalidArmsError(f"job {keys[i]!r}: batch size {int(sf[dup[0]])} appears more than once")


# ------------------------------------------------------------------- objects
class InstanceOf(Constraint):
    """An instance (or, with ``subclass``, a subclass) of a class named lazily (no import cycles)."""

    error = ConfigurationError

    def __init__(self, noun: str, module: str, name: str, what: str, subclass: bool = False, optional: bool = False) -> None:
        self.optional = optional
        self.noun = noun
        self.module = module
        self.name = name
        self.what = what
        self.subclass = subclass

    def _cls(self) -> type:
        import importlib

        return getattr(importlib.import_module(self.module), self.name)

    def check(self, value: Any, who: str = "") -> Any:
        if value is None and self.optional:
            return None
        cls = self._cls()
        ok = isinstance(value, type) and issubclass(value, cls) if self.subclass else isinstance(value, cls)
        if not ok:
            raise self.refuse(value, who)
        return value

    def invalid_examples(self) -> list[Any]:
        return ([] if self.optional else [None]) + [3, "GTSBatchSizeOptimizer", object()]


BSO = InstanceOf("bso", "banditfleet._base", "_FleetOptimizer", "a batch-size optimizer")
PLO = InstanceOf("plo", "banditfleet.power", "JITPowerLimitOptimizer", "a JITPowerLimitOptimizer")
BSO_CLASS = InstanceOf("bso_class", "banditfleet._base", "_FleetOptimizer", "a batch-size optimizer class", subclass=True)
OPTIONAL_BSO_CLASS = InstanceOf(
    "bso_class", "banditfleet._base", "_FleetOptimizer", "a batch-size optimizer class (or None)", subclass=True, optional=True
)


# --------------------------------------------------------------- files
class FilePath(Constraint):
    """A file or folder path: ``str`` or ``os.PathLike`` (not empty)."""

    def __init__(self, noun: str, error: type[Exception]) -> None:
        self.noun = noun
        self.error = error
        self.what = "a path (str or os.PathLike)"

    def check(self, value: Any, who: str = "") -> Any:
        import os

        if isinstance(value, os.PathLike) or (isinstance(value, str) and value):
            return value
        raise self.refuse(value, who)

    def invalid_examples(self) -> list[Any]:
        return [None, 3, "", b"bytes-path", ["a"], object()]


class Fsync(Constraint):
    """``"batch"``, ``"never"``, or milliseconds ``>= 0`` between fsyncs."""

    noun = "fsync"
    what = "'batch', 'never' or milliseconds >= 0"
    error = JournalError

    def check(self, value: Any, who: str = "") -> Any:
        if isinstance(value, str):
            if value in ("batch", "never"):
                return value
        elif (_is_int(value) or _is_float(value)) and not _is_bool(value):
            try:
                ms = float(value)
            except OverflowError:
                ms = math.inf
            if ms >= 0:
                return value
        raise self.refuse(value, who)

    def invalid_examples(self) -> list[Any]:
        return ["always", -1, math.nan] + _not_numbers()


class OptionalByteCount(Constraint):
    """None, or a positive whole number of bytes (``open(..., checkpoint_bytes=)``)."""

    noun = "checkpoint_bytes"
    what = "None or a positive integer number of bytes"
    error = JournalError

    def check(self, value: Any, who: str = "") -> Any:
        if value is None:
            return None
        if _is_int(value) and int(value) >= 1:
            return int(value)
        raise self.refuse(value, who)

    def invalid_examples(self) -> list[Any]:
        return [0, -1, 1.5, math.nan] + [v for v in _not_numbers() if v is not None]


PATH = FilePath("path", CheckpointError)
FOLDER = FilePath("folder", JournalError)
FSYNC = Fsync()
CHECKPOINT_BYTES = OptionalByteCount()
