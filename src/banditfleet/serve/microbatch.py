"""Server-side micro-batching: concurrent single-job requests answered by one batch call.

A :class:`MicroBatcher` collects the items that requests submit while the
event loop is busy and hands them to one ``run_batch(items)`` call. There is
no timer and no added wait: the first item of an idle batcher is run on the
next turn of the event loop (after the other requests already parsed in
this turn have submitted theirs), and while one batch runs, the items that
arrive form the next one. Under light load every batch holds one item and
costs what a direct call costs; under heavy load batches grow with the
arrival rate, which is what turns many small requests into few kernel
calls (and few journal writes and fsyncs).

``run_batch`` gets the items in arrival order and returns one result per
item, in the same order; a result that is an :class:`Exception` is raised
in that item's request only. If ``run_batch`` itself raises, every item of
the batch gets the exception. ``run_batch`` runs in the event loop's thread
(``executor=None``, the default: no thread hop, right for calls of
microseconds) or in the given executor (for calls that may block, such as a
group-commit fsync wait), one batch at a time either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from banditfleet.errors import JournalError

__all__ = ["MicroBatcher", "predict_runner"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Answer concurrent ``submit(item)`` calls with batched ``run_batch(items)`` calls.

    Args:
        run_batch: Takes the items of one batch (arrival order) and returns
            one result (or Exception) per item, in order.
        max_batch: Most items per call; a longer queue is split.
        executor: Where ``run_batch`` runs; None runs it in the loop's thread.
    """

    def __init__(self, run_batch: Callable[[list[T]], Sequence[R | BaseException]], max_batch: int = 8192,
                 executor: concurrent.futures.Executor | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._run = run_batch
        self.max_batch = max_batch
        self._executor = executor
        self._items: list[T] = []
        self._futures: list[asyncio.Future] = []
        self._scheduled = False
        self._running = False
        #: Batches run and items answered (for metrics: items / batches is the mean batch size).
        self.batches = 0
        self.items = 0
        self.largest = 0

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result (raises the Exception its batch returned for it)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._items.append(item)
        self._futures.append(fut)
        if not self._scheduled and not self._running:
            self._scheduled = True
            loop.call_soon(self._kick, loop)
        return await fut

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        if self._running or not self._items:
            return
        items, futures = self._items[: self.max_batch], self._futures[: self.max_batch]
        del self._items[: self.max_batch], self._futures[: self.max_batch]
        self._running = True
        if self._executor is None:
            try:
                self._deliver(items, futures, self._call(items))
            finally:
                self._done(loop)
        else:
            task = loop.run_in_executor(self._executor, self._call, items)
            task.add_done_callback(lambda t: self._finish(loop, items, futures, t))

    def _call(self, items: list[T]) -> Sequence[R | BaseException] | BaseException:
        try:
            results = self._run(items)
        except Exception as exc:  # noqa: BLE001 - delivered to every item of the batch
            return exc
        if len(results) != len(items):
            return RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
        return results

    def _finish(self, loop: asyncio.AbstractEventLoop, items: list[T], futures: list[asyncio.Future],
                task: asyncio.Future) -> None:
        try:
            exc = task.exception()
            self._deliver(items, futures, exc if exc is not None else task.result())
        finally:
            self._done(loop)

    def _deliver(self, items: list[T], futures: list[asyncio.Future], results: Any) -> None:
        self.batches += 1
        self.items += len(items)
        self.largest = max(self.largest, len(items))
        if isinstance(results, BaseException):
            for fut in futures:
                if not fut.done():
                    fut.set_exception(results)
            return
        for fut, res in zip(futures, results):
            if fut.done():  # the request was cancelled (client gone); its effect stands
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)

    def _done(self, loop: asyncio.AbstractEventLoop) -> None:
        self._running = False
        if self._items and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._kick, loop)


def predict_runner(state: Any) -> Callable[[list[str]], list[tuple[int, dict[str, Any]]]]:
    """The ``run_batch`` of micro-batched ``GET /jobs/batch_size``: job ids -> ``(status, body)`` each.

    The entries the state would refuse (an unknown job, a job whose pruning
    found no converged batch size) get their own refusal
    and the rest are decided in arrival order as one batch
    (:meth:`~banditfleet.serve.zeus_state.ZeusServerState.predict_each`: one
    kernel call, one journal record), so each request gets the answer it
    would get alone. A journal failure answers the whole batch 503.
    """

    def run(job_ids: list[str]) -> list[tuple[int, dict[str, Any]]]:
        try:
            answers = state.predict_each(job_ids)
        except JournalError as exc:
            return [(503, {"message": str(exc)})] * len(job_ids)
        return [(200, a) if isinstance(a, dict) else (a.status, {"message": a.message}) for a in answers]

    return run
