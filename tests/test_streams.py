"""The stream kernels draw exactly what numpy's ``Generator(PCG64(seed))`` draws.

Every test replays a random interleaving of draw kinds on a kernel stream row
and on numpy (and/or the big-int twin in ``naive``) and requires every value
to be bit-identical and the final state to equal numpy's
``bit_generator.state`` field for field.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import naive
from banditfleet.kernels.distributions import (
    FLOYD_MAX_POPULATION,
    bounded_uint64,
    bounded_uint64_s,
    integers,
    normal,
    sample_without_replacement,
    sample_without_replacement_s,
    standard_normal,
    standard_normal_s,
)
from banditfleet.kernels.streams import (
    allocate_streams,
    copy_stream,
    load_stream,
    next_double,
    next_double_s,
    next_uint32,
    next_uint32_s,
    next_uint64,
    next_uint64_s,
    seed_sequence_state,
    seed_streams,
    store_stream,
)
from banditfleet.rng_state import export_state, import_state

MAX64 = 2**64 - 1

# ---------------------------------------------------------------------------
# strategies

seeds = st.one_of(
    st.sampled_from([0, 1, 2, 123456, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**63, MAX64]),
    st.integers(0, 2**32 - 1),
    st.integers(0, MAX64),
)

# Inclusive ranges for bounded_uint64: 0 (no draw), the 32/64-bit switch-overs,
# powers of two and their neighbours (worst-case Lemire rejection), anything.
bounded_ranges = st.one_of(
    st.sampled_from(
        [0, 1, 2, 3, 7, 2**31, 2**32 - 2, 2**32 - 1, 2**32, 2**32 + 1, 2**63, 2**63 + 1, MAX64 - 1, MAX64]
    ),
    st.integers(0, 63).map(lambda k: 2**k),
    st.integers(1, 64).map(lambda k: 2**k - 1),
    st.integers(0, 63).map(lambda k: 2**k + 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, MAX64),
)

int64s = st.integers(-(2**63), 2**63 - 1)


@st.composite
def integer_bounds(draw):
    """``low < high`` within int64 (numpy's default dtype for ``integers``)."""
    low = draw(st.one_of(st.integers(-10, 10), int64s))
    width = draw(st.one_of(st.integers(1, 20), st.integers(1, 2**32 + 1), st.integers(1, 2**64 - 1)))
    high = min(low + width, 2**63 - 1)
    if high <= low:
        low = high - 1
    return low, high


locs = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -3.5, math.inf, -math.inf]),
    st.floats(allow_nan=False, allow_infinity=False),
)
scales = st.one_of(
    st.sampled_from([0.0, 1.0, 0.5, math.inf, 1e-300, 1e300]),
    st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
)


@st.composite
def choice_args(draw, max_population=FLOYD_MAX_POPULATION):
    population = draw(
        st.one_of(st.integers(0, 16), st.sampled_from([max_population]), st.integers(0, max_population))
    )
    size = draw(st.one_of(st.integers(0, min(population, 16)), st.integers(0, population)))
    return population, size


def draw_ops(*, with_normals: bool, max_population: int = FLOYD_MAX_POPULATION, max_ops: int = 30):
    """A list of (kind, args, repeat) draw operations."""
    kinds = [
        st.tuples(st.just("uint64"), st.just(()), st.integers(1, 5)),
        st.tuples(st.just("uint32"), st.just(()), st.integers(1, 5)),
        st.tuples(st.just("double"), st.just(()), st.integers(1, 5)),
        st.tuples(st.just("bounded"), st.tuples(bounded_ranges), st.integers(1, 20)),
        st.tuples(st.just("integers"), integer_bounds(), st.integers(1, 5)),
        st.tuples(st.just("choice"), choice_args(max_population), st.just(1)),
    ]
    if with_normals:
        kinds += [
            st.tuples(st.just("standard_normal"), st.just(()), st.integers(1, 30)),
            st.tuples(st.just("normal"), st.tuples(locs, scales), st.integers(1, 10)),
        ]
    return st.lists(st.one_of(kinds), max_size=max_ops)


# ---------------------------------------------------------------------------
# executing one operation on each implementation


def kernel_draw(streams, row, kind, args):
    if kind == "uint64":
        return int(next_uint64(streams, row))
    if kind == "uint32":
        return int(next_uint32(streams, row))
    if kind == "double":
        return next_double(streams, row)
    if kind == "bounded":
        return int(bounded_uint64(streams, row, np.uint64(args[0])))
    if kind == "integers":
        return int(integers(streams, row, np.int64(args[0]), np.int64(args[1])))
    if kind == "standard_normal":
        return standard_normal(streams, row)
    if kind == "normal":
        return normal(streams, row, float(args[0]), float(args[1]))
    if kind == "choice":
        population, size = args
        out = np.full(size, -1, np.int64)
        taken = np.zeros(population, np.uint8)
        sample_without_replacement(streams, row, population, size, out, taken)
        assert not taken.any(), "scratch flags must be left cleared"
        return out.tolist()
    raise AssertionError(kind)


def numpy_draw(gen: np.random.Generator, kind, args):
    if kind == "uint64":
        return int(gen.bit_generator.random_raw())
    if kind == "uint32":
        return int(gen.integers(0, 2**32, dtype=np.uint32))
    if kind == "double":
        return gen.random()
    if kind == "bounded":
        return int(gen.integers(0, args[0], endpoint=True, dtype=np.uint64))
    if kind == "integers":
        return int(gen.integers(args[0], args[1]))
    if kind == "standard_normal":
        return gen.standard_normal()
    if kind == "normal":
        return gen.normal(args[0], args[1])
    if kind == "choice":
        return gen.choice(args[0], args[1], replace=False).tolist()
    raise AssertionError(kind)


def naive_draw(twin: naive.NaivePCG64, kind, args):
    if kind == "uint64":
        return twin.next_uint64()
    if kind == "uint32":
        return twin.next_uint32()
    if kind == "double":
        return twin.next_double()
    if kind == "bounded":
        return twin.bounded_uint64(args[0])
    if kind == "integers":
        return twin.integers(args[0], args[1])
    if kind == "choice":
        return twin.choice_without_replacement(args[0], args[1])
    raise AssertionError(kind)


def same(a, b) -> bool:
    """Bit-identical: ints and lists by value, floats by their IEEE bytes."""
    if isinstance(a, float) or isinstance(b, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    return a == b


def assert_same_draws(ops, draw_a, draw_b, label):
    for step, (kind, args, repeat) in enumerate(ops):
        for k in range(repeat):
            a = draw_a(kind, args)
            b = draw_b(kind, args)
            assert same(a, b), f"{label}: op #{step} {kind}{args} draw {k}: {a!r} != {b!r}"


def seeded(seeds_list):
    streams = allocate_streams(len(seeds_list))
    seed_streams(
        streams,
        np.arange(len(seeds_list), dtype=np.int64),
        np.array(seeds_list, dtype=np.uint64),
    )
    return streams


# ---------------------------------------------------------------------------
# seeding


@given(seed=seeds)
def test_seed_sequence_words_match_numpy(seed):
    out = np.empty(4, np.uint64)
    seed_sequence_state(np.uint64(seed), out)
    expected = np.random.SeedSequence(seed).generate_state(4, np.uint64)
    assert out.tolist() == expected.tolist()
    assert naive.seed_sequence_words(seed) == expected.tolist()


@given(seed=seeds)
def test_seeded_state_matches_numpy_and_twin(seed):
    streams = seeded([seed])
    expected = np.random.default_rng(seed).bit_generator.state
    assert export_state(streams, 0) == expected
    assert naive.NaivePCG64(seed).numpy_state == expected


def test_seed_edge_values():
    edge = [0, 1, 2**32 - 1, 2**32, MAX64]
    streams = seeded(edge)
    for row, seed in enumerate(edge):
        assert export_state(streams, row) == np.random.default_rng(seed).bit_generator.state


# ---------------------------------------------------------------------------
# draws


@given(seed=seeds, ops=draw_ops(with_normals=True))
def test_draws_match_numpy(seed, ops):
    streams = seeded([seed])
    gen = np.random.Generator(np.random.PCG64(seed))
    assert_same_draws(
        ops,
        lambda kind, args: kernel_draw(streams, 0, kind, args),
        lambda kind, args: numpy_draw(gen, kind, args),
        "kernel vs numpy",
    )
    assert export_state(streams, 0) == gen.bit_generator.state


@given(seed=seeds, ops=draw_ops(with_normals=False, max_population=2000, max_ops=20))
def test_draws_match_naive_twin(seed, ops):
    streams = seeded([seed])
    twin = naive.NaivePCG64(seed)
    assert_same_draws(
        ops,
        lambda kind, args: kernel_draw(streams, 0, kind, args),
        lambda kind, args: naive_draw(twin, kind, args),
        "kernel vs naive",
    )
    assert export_state(streams, 0) == twin.numpy_state


@given(seed=seeds, ops=draw_ops(with_normals=False, max_population=2000, max_ops=20))
def test_naive_twin_matches_numpy(seed, ops):
    twin = naive.NaivePCG64(seed)
    gen = np.random.default_rng(seed)
    assert_same_draws(
        ops,
        lambda kind, args: naive_draw(twin, kind, args),
        lambda kind, args: numpy_draw(gen, kind, args),
        "naive vs numpy",
    )
    assert twin.numpy_state == gen.bit_generator.state


@pytest.mark.parametrize(
    "rng",
    [0, 1, 2, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 2**32, 2**32 + 1, 2**63 - 1, 2**63, 2**63 + 1, MAX64 - 1, MAX64],
)
def test_bounded_edge_ranges(rng):
    streams = seeded([2024])
    gen = np.random.default_rng(2024)
    for _ in range(200):
        assert int(bounded_uint64(streams, 0, np.uint64(rng))) == int(
            gen.integers(0, rng, endpoint=True, dtype=np.uint64)
        )
    assert export_state(streams, 0) == gen.bit_generator.state


@pytest.mark.parametrize(
    "low,high",
    [(-(2**63), 2**63 - 1), (-(2**63), -(2**63) + 1), (2**63 - 2, 2**63 - 1), (-1, 0), (-5, 3), (0, 2**32), (-(2**31), 2**31)],
)
def test_integers_edge_bounds(low, high):
    streams = seeded([4242])
    gen = np.random.default_rng(4242)
    for _ in range(100):
        assert kernel_draw(streams, 0, "integers", (low, high)) == numpy_draw(gen, "integers", (low, high))
    assert export_state(streams, 0) == gen.bit_generator.state


def test_bounded_zero_range_consumes_nothing():
    streams = seeded([5])
    before = export_state(streams, 0)
    assert int(bounded_uint64(streams, 0, np.uint64(0))) == 0
    assert export_state(streams, 0) == before


@pytest.mark.parametrize("loc", [0.0, -0.0, 2.5, -math.inf, math.inf])
@pytest.mark.parametrize("scale", [0.0, math.inf, 1.0, math.nan])  # numpy accepts a NaN scale
def test_normal_degenerate_scales(loc, scale):
    streams = seeded([99])
    gen = np.random.default_rng(99)
    for _ in range(300):
        assert same(normal(streams, 0, loc, scale), gen.normal(loc, scale))
    assert export_state(streams, 0) == gen.bit_generator.state


def test_standard_normal_long_run_hits_tail_and_wedges():
    # 200k draws: the ziggurat's base strip (idx 0, the tail loop) and the
    # wedge rejections are exercised many times.
    streams = seeded([31337])
    gen = np.random.default_rng(31337)
    ours = np.array([standard_normal(streams, 0) for _ in range(200_000)])
    theirs = gen.standard_normal(200_000)
    assert ours.tobytes() == theirs.tobytes()
    assert np.abs(ours).max() > 3.6541528853610088  # beyond ziggurat r: the tail was sampled
    assert export_state(streams, 0) == gen.bit_generator.state


@pytest.mark.parametrize("population,size", [(1, 1), (8, 8), (8, 1), (10_000, 10_000), (10_000, 1), (10_000, 200), (2, 0)])
def test_choice_edge_sizes(population, size):
    streams = seeded([77])
    gen = np.random.default_rng(77)
    for _ in range(3):
        assert kernel_draw(streams, 0, "choice", (population, size)) == numpy_draw(
            gen, "choice", (population, size)
        )
    assert export_state(streams, 0) == gen.bit_generator.state


# ---------------------------------------------------------------------------
# several rows


@given(
    row_seeds=st.lists(seeds, min_size=2, max_size=6),
    schedule=st.lists(
        st.tuples(st.integers(0, 5), draw_ops(with_normals=True, max_population=300, max_ops=3)),
        max_size=25,
    ),
)
def test_rows_advance_independently(row_seeds, schedule):
    """Interleaving draws across rows changes nothing: each row is its own numpy stream."""
    n = len(row_seeds)
    streams = seeded(row_seeds)
    gens = [np.random.default_rng(s) for s in row_seeds]
    for row_pick, ops in schedule:
        row = row_pick % n
        assert_same_draws(
            ops,
            lambda kind, args: kernel_draw(streams, row, kind, args),
            lambda kind, args: numpy_draw(gens[row], kind, args),
            f"row {row}",
        )
    for row in range(n):
        assert export_state(streams, row) == gens[row].bit_generator.state


@numba.njit(cache=True)
def _mixed_batch(streams, rows, k, ints, floats, order, taken):
    """What a batch kernel does: load each row once, chain draws on the tuple, store once."""
    for i in range(rows.shape[0]):
        st = load_stream(streams, rows[i])
        st, ints[i, 0] = next_uint32_s(st)
        st, ints[i, 1] = bounded_uint64_s(st, k - 1)
        st, ints[i, 2] = next_uint64_s(st)
        st, floats[i, 0] = standard_normal_s(st)
        st, floats[i, 1] = next_double_s(st)
        st = sample_without_replacement_s(st, k, k, order[i], taken)
        st, ints[i, 3] = next_uint32_s(st)
        st, floats[i, 2] = standard_normal_s(st)
        store_stream(streams, rows[i], st)


@given(row_seeds=st.lists(seeds, min_size=1, max_size=8), k=st.integers(1, 40), data=st.data())
def test_batch_loop_on_loaded_state_matches_numpy(row_seeds, k, data):
    n = len(row_seeds)
    streams = seeded(row_seeds)
    # rows may repeat: a repeated row continues its own stream
    rows = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=12)), np.int64)
    ints = np.zeros((len(rows), 4), np.uint64)
    floats = np.zeros((len(rows), 3), np.float64)
    order = np.zeros((len(rows), k), np.int64)
    _mixed_batch(streams, rows, k, ints, floats, order, np.zeros(k, np.uint8))
    gens = [np.random.default_rng(s) for s in row_seeds]
    for i, row in enumerate(rows):
        g = gens[row]
        assert int(ints[i, 0]) == int(g.integers(0, 2**32, dtype=np.uint32))
        assert int(ints[i, 1]) == int(g.integers(0, k))
        assert int(ints[i, 2]) == int(g.bit_generator.random_raw())
        assert same(floats[i, 0], g.standard_normal())
        assert same(floats[i, 1], g.random())
        assert order[i].tolist() == g.choice(k, k, replace=False).tolist()
        assert int(ints[i, 3]) == int(g.integers(0, 2**32, dtype=np.uint32))
        assert same(floats[i, 2], g.standard_normal())
    for row in range(n):
        assert export_state(streams, row) == gens[row].bit_generator.state


def test_seed_streams_subset_of_rows_leaves_others_alone():
    streams = seeded([1, 2, 3, 4])
    for row in range(4):
        next_uint32(streams, row)  # every row holds a buffered half now
    untouched = [export_state(streams, r) for r in (0, 2)]
    seed_streams(streams, np.array([3, 1], np.int64), np.array([10, 20], np.uint64))
    assert [export_state(streams, r) for r in (0, 2)] == untouched
    assert export_state(streams, 3) == np.random.default_rng(10).bit_generator.state
    assert export_state(streams, 1) == np.random.default_rng(20).bit_generator.state


@given(seed=seeds, pre=st.integers(0, 5), with_half=st.booleans())
def test_copy_stream_duplicates_full_state(seed, pre, with_half):
    src = seeded([seed])
    for _ in range(pre):
        next_uint64(src, 0)
    if with_half:
        next_uint32(src, 0)  # leave a buffered half, which must be copied too
    dst = allocate_streams(3)
    copy_stream(src, 0, dst, 2)
    assert export_state(dst, 2) == export_state(src, 0)
    for _ in range(5):
        assert next_uint32(dst, 2) == next_uint32(src, 0)
    assert export_state(dst, 0) == export_state(allocate_streams(1), 0)


# ---------------------------------------------------------------------------
# numpy state dict export / import


@given(seed=seeds, warmup=draw_ops(with_normals=True, max_population=300, max_ops=8), ops=draw_ops(with_normals=True, max_population=300, max_ops=15))
def test_import_numpy_state_continues_numpy_stream(seed, warmup, ops):
    gen = np.random.default_rng(seed)
    for kind, args, repeat in warmup:
        for _ in range(repeat):
            numpy_draw(gen, kind, args)
    streams = seeded([1, 2, 3])
    neighbours = [export_state(streams, 0), export_state(streams, 2)]
    import_state(streams, 1, gen.bit_generator.state)
    assert export_state(streams, 1) == gen.bit_generator.state
    assert [export_state(streams, 0), export_state(streams, 2)] == neighbours
    assert_same_draws(
        ops,
        lambda kind, args: kernel_draw(streams, 1, kind, args),
        lambda kind, args: numpy_draw(gen, kind, args),
        "imported vs numpy",
    )
    assert export_state(streams, 1) == gen.bit_generator.state


@given(seed=seeds, ops=draw_ops(with_normals=True, max_population=300, max_ops=10))
def test_exported_state_drives_numpy(seed, ops):
    streams = seeded([seed])
    for kind, args, repeat in ops:
        for _ in range(repeat):
            kernel_draw(streams, 0, kind, args)
    bitgen = np.random.PCG64()
    bitgen.state = export_state(streams, 0)
    gen = np.random.Generator(bitgen)
    assert export_state(streams, 0) == gen.bit_generator.state
    for _ in range(3):
        assert int(next_uint32(streams, 0)) == int(gen.integers(0, 2**32, dtype=np.uint32))
        assert same(standard_normal(streams, 0), gen.standard_normal())


def test_export_state_types_are_plain_ints():
    streams = seeded([3])
    next_uint32(streams, 0)
    state = export_state(streams, 0)
    assert state["has_uint32"] == 1
    for value in (state["state"]["state"], state["state"]["inc"], state["has_uint32"], state["uinteger"]):
        assert type(value) is int


def test_import_accepts_numpy_integer_fields():
    streams = allocate_streams(1)
    good = np.random.default_rng(8).bit_generator.state
    state = {
        "bit_generator": "PCG64",
        "state": {"state": good["state"]["state"], "inc": good["state"]["inc"]},
        "has_uint32": np.uint8(0),
        "uinteger": np.uint32(0),
    }
    import_state(streams, 0, state)
    assert export_state(streams, 0) == good


def _good_state():
    gen = np.random.default_rng(11)
    gen.integers(0, 2**32, dtype=np.uint32)  # has_uint32 = 1
    return gen.bit_generator.state


def _with(path, value):
    state = _good_state()
    target = state
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return state


_DELETE = object()

BAD_STATES = [
    pytest.param([], "must be a dict", id="not-a-dict"),
    pytest.param(_with(("bit_generator",), "MT19937"), "PCG64", id="wrong-bitgen"),
    pytest.param(_with(("bit_generator",), _DELETE), "bit_generator", id="missing-bitgen"),
    pytest.param(_with(("state",), _DELETE), "'state'", id="missing-state"),
    pytest.param(_with(("state",), 5), "must be a dict", id="state-not-dict"),
    pytest.param(_with(("state", "inc"), _DELETE), "'inc'", id="missing-inc"),
    pytest.param(_with(("state", "state"), _DELETE), "'state'", id="missing-lcg-state"),
    pytest.param(_with(("state", "state"), -1), "'state'", id="negative-state"),
    pytest.param(_with(("state", "state"), 2**128), "'state'", id="state-too-big"),
    pytest.param(_with(("state", "inc"), 2**128 + 1), "'inc'", id="inc-too-big"),
    pytest.param(_with(("state", "inc"), 1.5), "'inc'", id="inc-float"),
    pytest.param(_with(("state", "state"), "12"), "'state'", id="state-str"),
    pytest.param(_with(("has_uint32",), 2), "has_uint32", id="has-uint32-2"),
    pytest.param(_with(("has_uint32",), _DELETE), "has_uint32", id="missing-has-uint32"),
    pytest.param(_with(("uinteger",), 2**32), "uinteger", id="uinteger-too-big"),
    pytest.param(_with(("uinteger",), -3), "uinteger", id="uinteger-negative"),
    pytest.param(_with(("uinteger",), _DELETE), "uinteger", id="missing-uinteger"),
]


@pytest.mark.parametrize("bad,message", BAD_STATES)
def test_import_rejects_bad_state(bad, message):
    streams = seeded([1, 2])
    before = [export_state(streams, r) for r in range(2)]
    with pytest.raises(ValueError, match=message):
        import_state(streams, 1, bad)
    assert [export_state(streams, r) for r in range(2)] == before  # nothing written


def test_row_out_of_range():
    streams = allocate_streams(2)
    with pytest.raises(IndexError):
        export_state(streams, 2)
    with pytest.raises(IndexError):
        import_state(streams, -1, _good_state())
