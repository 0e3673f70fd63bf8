"""MicroBatcher: concurrent submits are answered by few batch calls, each item
gets its own result or error, and the order within a batch is arrival order."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

from banditfleet.serve.microbatch import MicroBatcher


def _double_or_fail(calls):
    def run(items):
        calls.append(list(items))
        return [ValueError(f"bad {x}") if x < 0 else 2 * x for x in items]

    return run


@pytest.mark.parametrize("threaded", [False, True])
def test_concurrent_submits_share_batches_and_get_their_own_results(threaded):
    calls = []
    pool = concurrent.futures.ThreadPoolExecutor(1) if threaded else None
    mb = MicroBatcher(_double_or_fail(calls), executor=pool)
    items = list(range(-3, 200))

    async def main():
        return await asyncio.gather(*(mb.submit(x) for x in items), return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        if pool is not None:
            pool.shutdown()
    for x, r in zip(items, results):
        if x < 0:
            assert isinstance(r, ValueError) and str(r) == f"bad {x}"
        else:
            assert r == 2 * x
    # Every item ran exactly once, in arrival order, in far fewer calls than items.
    assert [x for c in calls for x in c] == items
    assert len(calls) <= 2 and mb.items == len(items) and mb.batches == len(calls)


def test_items_arriving_while_a_batch_runs_form_the_next_batch():
    calls = []
    pool = concurrent.futures.ThreadPoolExecutor(1)
    def slow(items):
        calls.append(list(items))
        import time

        time.sleep(0.02)
        return items

    mb = MicroBatcher(slow, executor=pool)

    async def main():
        first = asyncio.ensure_future(mb.submit(0))
        await asyncio.sleep(0.005)  # batch [0] is running in the pool
        rest = [asyncio.ensure_future(mb.submit(i)) for i in range(1, 50)]
        return await asyncio.gather(first, *rest)

    try:
        assert asyncio.run(main()) == list(range(50))
    finally:
        pool.shutdown()
    assert calls == [[0], list(range(1, 50))]


def test_a_failing_batch_fails_each_of_its_items_and_the_batcher_recovers():
    state = {"n": 0}

    def flaky(items):
        state["n"] += 1
        if state["n"] == 1:
            raise RuntimeError("disk full")
        return items

    mb = MicroBatcher(flaky)

    async def main():
        first = await asyncio.gather(*(mb.submit(i) for i in range(5)), return_exceptions=True)
        second = await asyncio.gather(*(mb.submit(i) for i in range(5)))
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "disk full" in str(r) for r in first)
    assert second == list(range(5))


def test_max_batch_splits_long_queues():
    calls = []
    mb = MicroBatcher(lambda items: calls.append(len(items)) or items, max_batch=7)

    async def main():
        return await asyncio.gather(*(mb.submit(i) for i in range(30)))

    assert asyncio.run(main()) == list(range(30))
    assert calls == [7, 7, 7, 7, 2]


def test_wrong_result_count_is_an_error_for_the_batch():
    mb = MicroBatcher(lambda items: items[:-1])

    async def main():
        return await asyncio.gather(*(mb.submit(i) for i in range(3)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(main()))
