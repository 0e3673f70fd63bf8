"""Thread safety: one re-entrant lock per optimizer, taken by every public method.

:class:`Synchronized` is a mixin. Every public method and property a subclass
defines (names without a leading underscore, plus ``__len__``,
``__contains__`` and ``__repr__``) is wrapped, when the class is created, in a
function that holds the object's ``_lock`` for the whole call. Calls from many
threads therefore run one at a time per object, in the order they take the
lock, and the outcome equals that sequential order. The lock is per object:
while one optimizer runs a long kernel (the kernels release the GIL), other
optimizers run in other threads. A pair's members share one lock
(:class:`~banditfleet.pair.OptimizerPair` hands its lock to both), so the
pair has a single order and no lock-ordering deadlock is possible.

Durability waits happen *outside* the lock. A journaled call appends its
record under the lock (so the journal order is the apply order) and, with
``fsync="batch"``, must not return before an fsync covers the record. The
record's end offset is parked in a thread-local list by
:func:`defer_durable`; the outermost wrapped call of the thread releases the
lock first and then waits (:meth:`banditfleet.journal.OptimizerFolder.wait_durable`),
so concurrent callers can share one fsync (group commit).
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any, Callable

__all__ = ["Synchronized", "defer_durable"]

_local = threading.local()

# Dunder methods that read state and are therefore locked too.
_LOCKED_DUNDERS = frozenset({"__len__", "__contains__", "__repr__"})


def defer_durable(folder: Any, offset: int, lock: Any) -> None:
    """Make the calling thread wait until ``folder`` is durable up to ``offset``: once
    its outermost call has released ``lock`` (the recording object's lock), or now
    if the thread does not hold it."""
    if lock._is_owned():
        pending = getattr(_local, "pending", None)
        if pending is None:
            pending = _local.pending = []
        pending.append((folder, offset))
    else:
        folder.wait_durable(offset)


def _flush_pending() -> None:
    pending = getattr(_local, "pending", None)
    if pending:
        _local.pending = None
        for folder, offset in pending:
            folder.wait_durable(offset)


_TEMPLATE = """
def {name}({params}):
    try:
        with self._lock:
            return _bf_fn({args})
    finally:
        # Only objects with a journal folder wait, and only once the outermost
        # call has released the lock.
        if self._folder is not None and not self._lock._is_owned():
            _bf_flush()
"""


def _locked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` holding ``self._lock``, with ``fn``'s own parameters (no ``*args``
    packing on the hot scalar paths) when it has no ``*args``/``**kwargs``."""
    if getattr(fn, "__synchronized__", False):
        return fn
    code = fn.__code__
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    simple = not code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS) and names and names[0] == "self"
    if simple and not any(n.startswith("_bf_") for n in names):
        positional = names[: code.co_argcount]
        keyword = names[code.co_argcount :]
        params = ", ".join(positional) + (", *, " + ", ".join(keyword) if keyword else "")
        args = ", ".join(positional) + "".join(f", {k}={k}" for k in keyword)
        namespace: dict[str, Any] = {"_bf_fn": fn, "_bf_flush": _flush_pending}
        exec(_TEMPLATE.format(name=fn.__name__, params=params, args=args), namespace)
        method = namespace[fn.__name__]
        method.__defaults__ = fn.__defaults__
        method.__kwdefaults__ = fn.__kwdefaults__
    else:

        def method(self, *args: Any, **kwargs: Any) -> Any:
            try:
                with self._lock:
                    return fn(self, *args, **kwargs)
            finally:
                if self._folder is not None and not self._lock._is_owned():
                    _flush_pending()

    functools.update_wrapper(method, fn)
    method.__synchronized__ = True  # type: ignore[attr-defined]
    return method


def _wrap_class(cls: type) -> None:
    for name, value in list(vars(cls).items()):
        if name.startswith("_") and name not in _LOCKED_DUNDERS:
            continue
        if isinstance(value, property):
            setattr(
                cls,
                name,
                property(
                    None if value.fget is None else _locked(value.fget),
                    None if value.fset is None else _locked(value.fset),
                    None if value.fdel is None else _locked(value.fdel),
                    value.__doc__,
                ),
            )
        elif inspect.isfunction(value):
            setattr(cls, name, _locked(value))


class Synchronized:
    """Mixin: a re-entrant ``_lock`` per object, held by every public method of every subclass."""

    _lock: threading.RLock
    _folder: Any = None  # a journal folder (set by banditfleet._journaled.Journaled)

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = super().__new__(cls)
        obj._lock = threading.RLock()
        return obj

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _wrap_class(cls)

    # Copies (copy.deepcopy, as the trace simulator does) get a lock of their own.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_lock" not in self.__dict__:
            self._lock = threading.RLock()
