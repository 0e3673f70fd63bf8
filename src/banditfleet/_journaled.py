"""Journaled folders for anything that can save, load and replay its own calls.

:class:`Journaled` is the mixin behind ``open(folder)``, ``checkpoint()``,
``close()`` and the context manager of every durable object (the batch-size
optimizers, :class:`~banditfleet.power.JITPowerLimitOptimizer`,
:class:`~banditfleet.pair.OptimizerPair`). A class provides four hooks:

* ``_settings()``: the constructor arguments that rebuild an empty twin;
* ``save(path)``: write the whole state as one checkpoint file;
* ``load(path, verbose)`` (classmethod): read it back;
* ``_replay(kind, arrays, extra)``: apply one journal record again (or a
  batch that recovery regrouped from several, see ``_reorder_class``).

and calls ``self._record(kind, arrays, extra)`` after every call that changed
state, under the object's lock, before it returns. With ``fsync="batch"``
the call then waits for an fsync covering its record after releasing the
lock (group commit; :mod:`banditfleet._threadsafe`). :func:`open_folder` creates or recovers a folder for
a :class:`FolderSpec` (name, constructor, loader); the mixin's ``open`` is
that for ``cls``. Folder files and record framing are in
:mod:`banditfleet.journal`; docs/checkpoints.md describes both.

Several objects can journal into one folder (an :class:`OptimizerPair`): each
member tags its records (``_journal_tag``, e.g. ``"bso."``) and points at the
owner (``_journal_owner``, a weak reference) that checkpoints and closes the
folder for all of them.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from banditfleet import _boundary as B
from banditfleet._threadsafe import Synchronized, defer_durable
from banditfleet.errors import CheckpointError, JournalError
from banditfleet.journal import FsyncPolicy, OptimizerFolder, encode_record, read_batches

__all__ = ["Journaled", "FolderSpec", "open_folder"]

logger = logging.getLogger("banditfleet")


class FolderSpec:
    """What a folder holds: its ``name`` (stored in settings.json and checked on
    recovery), how to build an empty one from settings, and how to load a
    checkpoint of it."""

    def __init__(self, name: str, create: Callable[[dict[str, Any], bool], Any], load: Callable[[Any, bool], Any]) -> None:
        self.name = name
        self.create = create
        self.load = load


def open_folder(
    spec: FolderSpec,
    folder: str | os.PathLike,
    fsync: FsyncPolicy,
    verbose: bool,
    settings: dict[str, Any],
    checkpoint_bytes: int | None = None,
):
    """Create (with ``settings``) or recover the journaled folder of a ``spec`` object.

    ``checkpoint_bytes``: when a journaled call makes the journal reach this
    many bytes, the object checkpoints before the call returns (None: never).

    Creation writes ``checkpoint-000000`` and ``journal-000000`` first and
    ``settings.json`` last, so a folder whose creation a crash interrupted has
    no settings and is simply created again.
    """
    B.VERBOSE.check(verbose)
    checkpoint_bytes = B.CHECKPOINT_BYTES.check(checkpoint_bytes)
    f = OptimizerFolder(folder, fsync)  # validates folder and fsync before touching the disk
    f.checkpoint_bytes = checkpoint_bytes
    try:
        stored = f.read_settings()
        if stored is None:
            obj = _create(spec, f, settings, verbose)
        else:
            obj = _recover(spec, f, stored, settings, verbose)
        obj._attach_folder(f)
        return obj
    except BaseException:
        f.close()
        raise


def _create(spec: FolderSpec, f: OptimizerFolder, settings: dict[str, Any], verbose: bool):
    from banditfleet import __version__

    leftovers = [seq for seq in f.checkpoint_seqs() + f.journal_seqs() if seq != 0]
    if leftovers or (f.journal_path(0).exists() and f.journal_path(0).stat().st_size):
        raise JournalError(f"{f.path}: holds checkpoints or journals but no settings.json; refusing to create a new optimizer over them")
    obj = spec.create(settings, verbose)
    obj.save(f.checkpoint_path(0))
    f.start_generation(0)
    f.write_settings({"optimizer": spec.name, "settings": obj._settings(), "banditfleet_version": __version__})
    return obj


def _recover(spec: FolderSpec, f: OptimizerFolder, stored: dict[str, Any], settings: dict[str, Any], verbose: bool):
    if stored.get("optimizer") != spec.name:
        raise JournalError(f"{f.path}: holds a {stored.get('optimizer')} optimizer, not a {spec.name}")
    stored_settings = stored.get("settings", {})
    if settings:
        try:
            wanted = spec.create({**stored_settings, **settings}, False)._settings()
            # A folder written before a setting existed stores no value for it: it has the default.
            baseline = spec.create(stored_settings, False)._settings()
        except (TypeError, ValueError) as exc:
            raise JournalError(f"{f.path}: settings {settings!r} contradict the stored {stored_settings!r}: {exc}") from None
        differ = {k: (baseline.get(k), wanted[k]) for k in wanted if wanted[k] != baseline.get(k)}
        if differ:
            detail = ", ".join(f"{k}={new!r} (stored {old!r})" for k, (old, new) in differ.items())
            raise JournalError(f"{f.path}: settings contradict the stored ones: {detail}")
    errors = []
    for seq in f.checkpoint_seqs():
        try:
            obj = spec.load(f.checkpoint_path(seq), verbose)
        except CheckpointError as exc:
            errors.append(str(exc))
            logger.warning("skipping unreadable checkpoint: %s", exc)
            continue
        batches, n_records, good, discarded = read_batches(f.journal_path(seq), obj._reorder_class if MERGE_RECORDS else None)
        if discarded:
            logger.warning(
                "%s: dropped a torn or corrupted journal tail of %d bytes after %d intact records",
                f.journal_path(seq), discarded, n_records,
            )
            f.truncate_journal(seq, good)
        # The object has no folder yet, so replayed calls journal nothing.
        # Single-event records come regrouped into few batch calls (see
        # Journaled._reorder_class).
        for kind, arrays, extra in batches:
            obj._replay(kind, arrays, extra)
        f.start_generation(seq)
        return obj
    raise JournalError(f"{f.path}: no loadable checkpoint ({'; '.join(errors) or 'none present'})")


# Recovery merges runs of consecutive records of one mergeable kind into one
# batch; tests switch it off to compare with record-by-record recovery.
MERGE_RECORDS = True


class Journaled(Synchronized):
    """Mixin: ``open``/``checkpoint``/``close`` and journaling for a class with the four hooks.

    Every public method holds the object's lock (:mod:`banditfleet._threadsafe`).
    """

    _folder: OptimizerFolder | None = None
    # Set on the members of a shared folder: a weak reference to the owner, and a record tag.
    _journal_owner: weakref.ref | None = None
    _journal_tag: str = ""

    # ----------------------------------------------------------------- hooks
    def _settings(self) -> dict[str, Any]:  # pragma: no cover - overridden
        """Constructor arguments (except ``verbose``) that rebuild an empty twin."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _replay(self, kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _reorder_class(self, kind: str) -> tuple[Any, int] | None:
        """``(stream, position)`` of a journal record kind recovery may regroup, or None.

        Recovery (:func:`banditfleet.journal.read_batches`) replays a segment of
        records as one batch call per position, position 0 (predict) before 1
        (observe), each in record order, per stream (a pair's two optimizers
        are two streams: they share no state). That equals the records in
        their order because a batch call equals the same calls in sequence, a
        predict reads and advances only its own job (its arms, its random
        stream, its pruning state), and an observe changes only its own job's
        arms and appends to the shared history in observe order (kept). The
        one dependency a predict can have, an earlier observe of the same job,
        ends the segment. A class without such calls regroups nothing.
        """
        return None

    @classmethod
    def _folder_spec(cls) -> FolderSpec:
        return FolderSpec(cls.__name__, lambda settings, verbose: cls(**settings, verbose=verbose), cls.load)

    # ---------------------------------------------------------------- folder
    @classmethod
    @B.declare(folder=B.FOLDER, fsync=B.FSYNC, verbose=B.VERBOSE, checkpoint_bytes=B.CHECKPOINT_BYTES)
    def open(
        cls,
        folder: str | os.PathLike,
        fsync: FsyncPolicy = "batch",
        verbose: bool = False,
        checkpoint_bytes: int | None = None,
        **settings: Any,
    ):
        """An optimizer that journals every state-changing call to ``folder``.

        A new folder is created with ``settings``. An existing one is recovered:
        its newest checkpoint is loaded and its journal replayed, giving the
        state at the last acknowledged call (a torn tail from a crash is dropped
        with a warning). Settings given for an existing folder must agree with
        the stored ones. ``fsync``: ``"batch"`` (every call), ``"never"``, or
        milliseconds between fsyncs; concurrent calls share fsyncs (group
        commit). ``checkpoint_bytes``: checkpoint automatically once the journal
        reaches that many bytes (None: only when :meth:`checkpoint` is called).
        Only one process may have a folder open.
        """
        return open_folder(cls._folder_spec(), folder, fsync, verbose, settings, checkpoint_bytes)

    def _attach_folder(self, folder: OptimizerFolder) -> None:
        self._folder = folder

    def _detach_folder(self) -> None:
        """Forget the folder and close it (flush, fsync, unlock)."""
        folder, self._folder = self._folder, None
        if folder is not None:
            folder.close()

    def _is_member(self) -> bool:
        """Whether this object journals into a folder another object (its pair) owns."""
        return self._journal_owner is not None and self._folder is not None

    def _record(self, kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any] | None = None) -> None:
        """Append a call that has just changed state; it is acknowledged when this returns."""
        folder = self._folder
        if folder is None:
            return
        try:
            durable_at = folder.append(encode_record(self._journal_tag + kind, arrays, extra))
        except OSError as exc:
            # The call is applied in memory but not journaled: refuse to go on
            # silently diverging from the folder.
            owner = self._journal_owner() if self._is_member() else None
            (self if owner is None else owner)._detach_folder()
            raise JournalError(f"{folder.path}: could not journal a {kind} call ({exc}); the folder is closed, reopen it to recover") from exc
        if durable_at is not None:
            # Waited for once the call has released the optimizer's lock (group commit).
            defer_durable(folder, durable_at, self._lock)
        limit = folder.checkpoint_bytes
        if limit is not None and folder.journal_bytes >= limit:
            owner = self._journal_owner() if self._is_member() else self
            logger.info("%s: journal passed %d bytes, checkpointing", folder.path, limit)
            owner.checkpoint()

    def checkpoint(self) -> int:
        """Write a new checkpoint to the folder, start a new journal, then drop the old ones.

        Returns the checkpoint's size in bytes.
        """
        if self._is_member():
            raise JournalError("this optimizer journals as part of an OptimizerPair: call the pair's checkpoint()")
        if self._folder is None:
            raise JournalError("checkpoint() needs an optimizer from open(folder)")
        f = self._folder
        seq = f.seq + 1
        size = self.save(f.checkpoint_path(seq))
        f.start_generation(seq)
        f.remove_older(seq)
        return size

    def close(self) -> None:
        """Flush the journal and release the folder (no-op without one)."""
        if self._is_member():
            raise JournalError("this optimizer journals as part of an OptimizerPair: call the pair's close()")
        self._detach_folder()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
