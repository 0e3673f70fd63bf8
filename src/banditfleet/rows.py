"""Tagged rows: job keys resolved once, bound to the optimizer that resolved them.

Every optimizer numbers its jobs with dense rows. ``opt.rows(keys)`` (and
``register_jobs``) resolve keys to rows once and return a :class:`Rows`, which
the batch calls (``predict_many``, ``observe_many``, ``exhausted_many``) accept
in place of keys and then skip the key lookups. A :class:`Rows` remembers the
row numbering (:class:`RowSpace`) it came from and that numbering's
generation, so

* rows of one optimizer given to another are refused
  (:class:`~banditfleet.errors.ForeignRowsError`): the batch-size and the
  power-limit optimizer of a pair number their jobs differently;
* rows taken before jobs were removed are refused
  (:class:`~banditfleet.errors.StaleRowsError`): a freed row may hold another job;
* a plain integer array is never taken for rows: the batch calls always read
  it as job keys (``predict_many(np.array([1]))`` is job ``1``, as ``[1]`` is).

A :class:`Rows` has a length, can be indexed with a slice, a boolean mask or an
index array (giving :class:`Rows` of the same optimizer) and exposes its rows as
a read-only int64 array (:attr:`Rows.array`) for whoever needs the numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from banditfleet.errors import ForeignRowsError, StaleRowsError

__all__ = ["Rows", "RowSpace"]


class RowSpace:
    """The row numbering of one optimizer (its identity) and its generation.

    ``generation`` goes up whenever rows stop meaning what they meant (jobs
    removed or the state replaced); :class:`Rows` of an older generation are
    refused. Registering new jobs keeps the generation: existing rows stay valid.
    """

    __slots__ = ("generation", "owner", "__weakref__")

    def __init__(self, owner: str) -> None:
        self.generation = 0
        self.owner = owner

    def invalidate(self) -> None:
        """Refuse every :class:`Rows` taken so far (call when rows change meaning)."""
        self.generation += 1

    def tag(self, array: np.ndarray) -> Rows:
        """Tag an int64 array of valid rows of this numbering (internal: not checked)."""
        return Rows._make(array, self, self.generation)

    def check(self, rows: Rows) -> np.ndarray:
        """The int64 array of ``rows`` if they belong to this numbering and generation."""
        if rows._space is not self:
            raise ForeignRowsError(
                f"rows of {rows._space.owner} given to {self.owner}: every optimizer numbers its jobs "
                f"itself (resolve the keys with this optimizer's rows())"
            )
        if rows._generation != self.generation:
            raise StaleRowsError(
                f"rows of {self.owner} taken before jobs were removed (generation {rows._generation}, now "
                f"{self.generation}); a freed row may hold another job: resolve the keys again with rows()"
            )
        return rows._a


class Rows:
    """Rows of one optimizer's jobs, from ``opt.rows(keys)`` or ``opt.register_jobs(...)``.

    Pass it to the same optimizer's ``*_many`` calls instead of the keys.
    ``len(rows)``; ``rows[mask]``, ``rows[index_array]``, ``rows[a:b]`` and
    ``rows[i]`` give :class:`Rows` (``rows[i]`` one row long); ``rows.array`` is
    the row numbers as a read-only int64 array. Rows are not iterable (a list
    of row numbers would be read as job keys); use ``rows.array.tolist()``.
    """

    __slots__ = ("_a", "_space", "_generation")

    _a: np.ndarray
    _space: RowSpace
    _generation: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Rows come from an optimizer's rows() or register_jobs(); they cannot be built from numbers")

    @classmethod
    def _make(cls, array: np.ndarray, space: RowSpace, generation: int) -> Rows:
        self = object.__new__(cls)
        self._a = array
        self._space = space
        self._generation = generation
        return self

    @property
    def array(self) -> np.ndarray:
        """The row numbers, int64, read-only (a view: no copy)."""
        view = self._a.view()
        view.flags.writeable = False
        return view

    @property
    def owner(self) -> str:
        """What numbered these rows (the optimizer's class and identity)."""
        return self._space.owner

    def __len__(self) -> int:
        return int(self._a.shape[0])

    def __getitem__(self, index: Any) -> Rows:
        if isinstance(index, Rows):
            raise TypeError("index Rows with a slice, a boolean mask or an integer index array, not with Rows")
        if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
            i = int(index)
            picked = self._a[i : i + 1] if i != -1 else self._a[-1:]
            if picked.shape[0] != 1:
                raise IndexError(f"row index {i} out of range for {len(self)} rows")
            return Rows._make(picked.copy(), self._space, self._generation)
        picked = self._a[index]
        if not isinstance(picked, np.ndarray) or picked.ndim != 1:
            raise TypeError(f"Rows take a slice, a 1-D boolean mask or a 1-D integer index array, got {index!r}")
        return Rows._make(np.ascontiguousarray(picked, dtype=np.int64), self._space, self._generation)

    def __iter__(self):
        raise TypeError("Rows are not iterable (a list of row numbers would be read as job keys); use rows.array")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError("Rows are not an array (an integer array is read as job keys); use rows.array for the row numbers")

    def __repr__(self) -> str:
        shown = np.array2string(self._a, threshold=8, separator=", ")
        return f"Rows({shown}, of {self._space.owner})"

    def _retag(self, array: np.ndarray) -> Rows:
        """Rows of the same optimizer and generation holding ``array``, which must be
        made of these rows (internal: the replay engine gathers rows of many units)."""
        return Rows._make(np.ascontiguousarray(array, dtype=np.int64), self._space, self._generation)

    @staticmethod
    def concatenate(parts: list[Rows]) -> Rows:
        """One :class:`Rows` of several of the same optimizer, in order."""
        if not parts:
            raise ValueError("concatenate needs at least one Rows")
        first = parts[0]
        for p in parts[1:]:
            if p._space is not first._space or p._generation != first._generation:
                raise ForeignRowsError(f"cannot concatenate rows of {p._space.owner} with rows of {first._space.owner}")
        return Rows._make(np.concatenate([p._a for p in parts]).astype(np.int64, copy=False), first._space, first._generation)
