"""A batch-size optimizer and its power-limit optimizer, saved and journaled as one.

A scheduler asks its batch-size optimizer (BSO) for a batch size, then the
power-limit optimizer (PLO) for that batch size's power limit, and reports
the run to both. If the two were saved separately, a crash between the two
saves would leave them at different points of the schedule. Here they share
one checkpoint file and one journal:

* :func:`save_pair` / :func:`load_pair`: one checkpoint file holding both
  (optimizer name ``pair:<BSO class>+JITPowerLimitOptimizer``, the BSO's
  settings, BSO arrays prefixed ``bso.``, PLO arrays and keys prefixed ``plo.``);
* :func:`open_pair`: an :class:`OptimizerPair` whose two optimizers journal
  into ONE folder (one lock, one journal whose records are tagged ``bso.`` or
  ``plo.``); :meth:`OptimizerPair.checkpoint` writes both in one checkpoint
  file per generation, and recovery restores both to the same acknowledged
  call.

See docs/checkpoints.md ("Optimizer pairs").
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from banditfleet._base import _FleetOptimizer
from banditfleet._journaled import FolderSpec, Journaled, open_folder
from banditfleet.checkpoint import decode_keys, encode_keys, read_checkpoint, write_checkpoint
from banditfleet.errors import CheckpointError, ConfigurationError, JournalError, UnknownJobError
from banditfleet.gts import GTSBatchSizeOptimizer
from banditfleet.journal import FsyncPolicy, OptimizerFolder
from banditfleet.power import JITPowerLimitOptimizer
from banditfleet.pruning import PruningGTSBatchSizeOptimizer

__all__ = ["OptimizerPair", "save_pair", "load_pair", "open_pair"]

_PLO_NAME = JITPowerLimitOptimizer.__name__
# Batch-size optimizer classes a pair file may name.
_BSO_CLASSES: dict[str, type[_FleetOptimizer]] = {
    cls.__name__: cls for cls in (GTSBatchSizeOptimizer, PruningGTSBatchSizeOptimizer)
}


def pair_name(bso_class: type) -> str:
    """The optimizer name a pair of ``bso_class`` has in checkpoints and folders."""
    return f"pair:{bso_class.__name__}+{_PLO_NAME}"


def _check_bso_class(bso_class: Any) -> type[_FleetOptimizer]:
    if not (isinstance(bso_class, type) and issubclass(bso_class, _FleetOptimizer)):
        raise ConfigurationError(f"bso_class must be a batch-size optimizer class, got {bso_class!r}")
    return bso_class


def _check_members(bso: Any, plo: Any) -> None:
    if not isinstance(bso, _FleetOptimizer):
        raise ConfigurationError(f"bso must be a batch-size optimizer, got {type(bso).__name__}")
    if not isinstance(plo, JITPowerLimitOptimizer):
        raise ConfigurationError(f"plo must be a JITPowerLimitOptimizer, got {type(plo).__name__}")


# ------------------------------------------------------------------ files
def save_pair(path: str | os.PathLike, bso: _FleetOptimizer, plo: JITPowerLimitOptimizer) -> int:
    """Write ``bso`` and ``plo`` to one checkpoint file atomically; returns its size in bytes.

    Job keys of either optimizer that a checkpoint cannot hold are refused
    with :class:`~banditfleet.errors.CheckpointError`, and nothing is written.
    """
    _check_members(bso, plo)
    plo._compact_for_save()
    plo_entry, plo_keys = encode_keys(plo._keys)  # refuses unsavable keys before anything is written
    arrays = {f"bso.{name}": arr for name, arr in bso._export_arrays().items()}
    arrays.update({f"plo.{name}": arr for name, arr in plo._export_arrays().items()})
    arrays.update({f"plo.{name}": arr for name, arr in plo_keys.items()})
    extra = {"plo": {"keys": plo_entry, "n_jobs": len(plo._keys)}}
    return write_checkpoint(path, pair_name(type(bso)), bso._settings(), bso._store.keys(), arrays, extra)


def load_pair(path: str | os.PathLike, bso_class: type | None = None, verbose: bool = False) -> tuple[_FleetOptimizer, JITPowerLimitOptimizer]:
    """Read a file written by :func:`save_pair`: ``(bso, plo)``.

    ``bso_class``, when given, is the batch-size optimizer class the file must
    hold (it may be a subclass of the built-in ones). Every fault raises
    :class:`~banditfleet.errors.CheckpointError` naming the file.
    """
    header, keys, arrays = read_checkpoint(path)
    name = header.get("optimizer")
    if bso_class is not None:
        bso_class = _check_bso_class(bso_class)
        if name != pair_name(bso_class):
            raise CheckpointError(f"{path}: holds a {name} checkpoint, not a {pair_name(bso_class)} one")
    else:
        prefix, _, rest = str(name).partition(":")
        bso_name, _, plo_name = rest.partition("+")
        if prefix != "pair" or plo_name != _PLO_NAME:
            raise CheckpointError(f"{path}: holds a {name} checkpoint, not an optimizer pair")
        if bso_name not in _BSO_CLASSES:
            raise CheckpointError(f"{path}: holds a pair with an unknown batch-size optimizer {bso_name!r}")
        bso_class = _BSO_CLASSES[bso_name]
    settings = header.get("settings")
    try:
        bso = bso_class(**settings, verbose=verbose)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the stored settings are not valid: {exc}") from None
    plo = JITPowerLimitOptimizer(verbose=verbose)
    bso_arrays: dict[str, np.ndarray] = {}
    plo_arrays: dict[str, np.ndarray] = {}
    plo_key_arrays: dict[str, np.ndarray] = {}
    for full, arr in arrays.items():
        member, _, rest = full.partition(".")
        if member == "bso":
            bso_arrays[rest] = arr
        elif member == "plo":
            (plo_key_arrays if rest.startswith("keys.") else plo_arrays)[rest] = arr
        else:
            raise CheckpointError(f"{path}: inconsistent state: array {full!r} belongs to neither optimizer")
    try:
        plo_entry = header["extra"]["plo"]
        plo_keys = decode_keys(plo_entry["keys"], plo_key_arrays)
        if len(plo_keys) != plo_entry["n_jobs"]:
            raise CheckpointError("the number of power-limit job keys does not match the header")
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: corrupted: {exc}") from None
    except (KeyError, TypeError, UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{path}: corrupted: the power-limit job keys cannot be decoded") from None
    try:
        bso._import_arrays(keys, bso_arrays)
        plo._import_arrays(plo_keys, plo_arrays)
    except ValueError as exc:
        raise CheckpointError(f"{path}: inconsistent state: {exc}") from None
    return bso, plo


# ---------------------------------------------------------------- folders
class OptimizerPair(Journaled):
    """A batch-size optimizer (:attr:`bso`) and a power-limit optimizer (:attr:`plo`) as one unit.

    Use the members directly (``pair.bso.predict_many(...)``,
    ``pair.plo.observe_many(...)``); when the pair comes from :func:`open_pair`
    every state-changing call of either is journaled into the pair's folder.
    :meth:`checkpoint`, :meth:`close` and the context manager act on both;
    the members' own ``checkpoint()``/``close()`` are refused while they
    journal as part of the pair.
    """

    def __init__(self, bso: _FleetOptimizer, plo: JITPowerLimitOptimizer) -> None:
        _check_members(bso, plo)
        if bso._folder is not None or plo._folder is not None:
            raise JournalError("a pair's optimizers must not journal into folders of their own; use open_pair")
        self.bso = bso
        self.plo = plo

    @property
    def name(self) -> str:
        """``pair:<BSO class>+JITPowerLimitOptimizer``."""
        return pair_name(type(self.bso))

    def __repr__(self) -> str:
        where = f", folder={str(self._folder.path)!r}" if self._folder is not None else ""
        return f"OptimizerPair({type(self.bso).__name__} with {len(self.bso)} jobs, {_PLO_NAME} with {len(self.plo)} jobs{where})"

    # ------------------------------------------------------------- hooks
    def _settings(self) -> dict[str, Any]:
        """The batch-size optimizer's settings (the power-limit optimizer has none)."""
        return self.bso._settings()

    def save(self, path: str | os.PathLike) -> int:
        """Both optimizers to one checkpoint file (:func:`save_pair`)."""
        return save_pair(path, self.bso, self.plo)

    @classmethod
    def load(cls, path: str | os.PathLike, verbose: bool = False, bso_class: type | None = None) -> OptimizerPair:
        """A pair from a file written by :func:`save_pair` (not journaled)."""
        return cls(*load_pair(path, bso_class, verbose))

    @classmethod
    def open(cls, folder: str | os.PathLike, bso_class: type, fsync: FsyncPolicy = "batch", verbose: bool = False, **bso_settings: Any) -> OptimizerPair:
        """Same as :func:`open_pair`."""
        return open_pair(folder, bso_class, fsync, verbose, **bso_settings)

    def _replay(self, kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        member, _, rest = kind.partition(".")
        if member == "bso":
            self.bso._replay(rest, arrays, extra)
        elif member == "plo":
            self.plo._replay(rest, arrays, extra)
        else:
            raise JournalError(f"journal record {kind!r} belongs to neither optimizer of the pair")

    # -------------------------------------------------------- removal, reset
    def _split_keys(self, jobs: Iterable[Hashable]) -> tuple[list[Hashable], list[Hashable]]:
        """The keys each member knows, after checking that every key is known to one of them, once."""
        keys = list(jobs)
        seen: set[Any] = set()
        bso_keys: list[Hashable] = []
        plo_keys: list[Hashable] = []
        for key in keys:
            try:
                in_bso, in_plo = key in self.bso, key in self.plo
                duplicate = key in seen
            except TypeError:
                raise UnknownJobError(f"job key {key!r} is not hashable") from None
            if duplicate:
                raise UnknownJobError(f"job {key!r} appears twice in one call; after the first it is no longer registered")
            if not (in_bso or in_plo):
                raise UnknownJobError(f"unknown job {key!r}: neither optimizer of the pair knows it")
            seen.add(key)
            if in_bso:
                bso_keys.append(key)
            if in_plo:
                plo_keys.append(key)
        return bso_keys, plo_keys

    def remove_job(self, job: Hashable) -> None:
        """Remove ``job`` from both optimizers (see :meth:`remove_jobs`)."""
        self.remove_jobs([job])

    def remove_jobs(self, jobs: Iterable[Hashable]) -> None:
        """Remove jobs from both optimizers: the batch-size optimizer's registration and every
        (job, batch size) entry of the power-limit optimizer.

        A key must be known to at least one of them (:class:`UnknownJobError`
        otherwise, and nothing changes); each member drops the keys it knows.
        """
        bso_keys, plo_keys = self._split_keys(jobs)
        if bso_keys:
            self.bso.remove_jobs(bso_keys)
        if plo_keys:
            self.plo.remove_jobs(plo_keys)

    def reset_job(self, job: Hashable) -> None:
        """Start ``job`` over in both optimizers (see :meth:`reset_jobs`)."""
        self.reset_jobs([job])

    def reset_jobs(self, jobs: Iterable[Hashable]) -> None:
        """Start jobs over: the batch-size optimizer resets them (same batch sizes, stream
        re-seeded) and the power-limit optimizer forgets their entries (profiling again)."""
        bso_keys, plo_keys = self._split_keys(jobs)
        if bso_keys:
            self.bso.reset_jobs(bso_keys)
        if plo_keys:
            self.plo.reset_jobs(plo_keys)

    def _attach_folder(self, folder: OptimizerFolder) -> None:
        self._folder = folder
        owner = weakref.ref(self)
        for tag, member in (("bso.", self.bso), ("plo.", self.plo)):
            member._folder = folder
            member._journal_owner = owner
            member._journal_tag = tag

    def _detach_folder(self) -> None:
        for member in (self.bso, self.plo):
            member._folder = None
            member._journal_owner = None
            member._journal_tag = ""
        super()._detach_folder()


def open_pair(
    folder: str | os.PathLike,
    bso_class: type,
    fsync: FsyncPolicy = "batch",
    verbose: bool = False,
    **bso_settings: Any,
) -> OptimizerPair:
    """An :class:`OptimizerPair` of a new ``bso_class(**bso_settings)`` and a new
    :class:`JITPowerLimitOptimizer`, journaled into ``folder``.

    Like ``open`` of a single optimizer: a new folder is created, an existing
    one is recovered (its newest checkpoint of both optimizers, then the
    journal of both in call order), settings given for an existing folder must
    agree with the stored ones, and only one process may have it open
    (:class:`~banditfleet.errors.FolderLockedError`).
    """
    bso_class = _check_bso_class(bso_class)
    spec = FolderSpec(
        pair_name(bso_class),
        lambda settings, v: OptimizerPair(bso_class(**settings, verbose=v), JITPowerLimitOptimizer(verbose=v)),
        lambda path, v: OptimizerPair.load(path, v, bso_class),
    )
    return open_folder(spec, folder, fsync, verbose, bso_settings)
