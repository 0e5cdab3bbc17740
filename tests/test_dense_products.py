"""The batch-1 products of a dense layer (npdl.kernels.numba.dense_products) agree with
the definitions in npdl/layers/dense.py, serve exactly the calls they are meant for, and carry a
training step to the same parameters as the definitions."""

import numpy as np
import pytest

from npdl import kernels
from npdl.layers import dense

nb = pytest.importorskip("npdl.kernels.numba.dense_products")


def _tol(dtype):
    return 2e-6 if np.dtype(dtype) == np.float32 else 1e-14


@pytest.mark.parametrize("one_thread", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_in,n_out", [(1, 32), (7, 33), (784, 1000), (1000, 500), (300, 1000), (130, 40)])
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_one_products_match_float64_products(one_thread, dtype, n_in, n_out, seed, monkeypatch):
    monkeypatch.setattr(nb, "ONE_THREAD_MAX", 1 << 21 if one_thread else 0)  # the serial loops, or the parallel
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    x = rng.standard_normal((1, n_in)).astype(dtype)
    da = rng.standard_normal((1, n_out)).astype(dtype)
    y, dx = nb.x_times_W(x, W), nb.da_times_W_T(da, W)
    assert y.shape == (1, n_out) and dx.shape == (1, n_in) and y.dtype == dx.dtype == np.dtype(dtype)
    W64 = W.astype(np.float64)
    # each entry is a sum of products: compare against the sum of their magnitudes
    scale_y = np.abs(x.astype(np.float64)) @ np.abs(W64)
    scale_dx = np.abs(da.astype(np.float64)) @ np.abs(W64).T
    assert np.all(np.abs(y - x.astype(np.float64) @ W64) <= _tol(dtype) * scale_y + 1e-30)
    assert np.all(np.abs(dx - da.astype(np.float64) @ W64.T) <= _tol(dtype) * scale_dx + 1e-30)


def test_x_rows_may_be_strided_views():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((40, 64)).astype(np.float32)
    x = rng.standard_normal((40, 3)).astype(np.float32)[:, :1].T   # (1, 40) with stride 3 items
    da = rng.standard_normal((64, 2)).astype(np.float32)[:, 1:].T  # (1, 64) with stride 2 items
    np.testing.assert_allclose(nb.x_times_W(x, W), x @ W, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nb.da_times_W_T(da, W), da @ W.T, rtol=1e-5, atol=1e-5)


def test_the_kernels_decline_what_they_do_not_serve(monkeypatch):
    rng = np.random.default_rng(4)
    W = rng.standard_normal((50, 64)).astype(np.float32)
    x1, d1 = rng.standard_normal((1, 50)).astype(np.float32), rng.standard_normal((1, 64)).astype(np.float32)
    assert nb.x_times_W(np.vstack([x1, x1]), W) is NotImplemented      # batch 2: BLAS
    assert nb.da_times_W_T(np.vstack([d1, d1])[:, :50], W) is NotImplemented  # shapes that do not chain
    assert nb.da_times_W_T(np.vstack([d1, d1]).astype(np.float64), W) is NotImplemented
    assert nb.da_times_W_T(np.vstack([d1, d1]), W) is NotImplemented   # under MIN_WORK: as written
    assert nb.x_times_W(x1, np.asfortranarray(W)) is NotImplemented    # W not row-major
    assert nb.x_times_W(x1.astype(np.float64), W) is NotImplemented    # mixed dtypes: never a cast
    assert nb.da_times_W_T(d1[:, :50], W) is NotImplemented            # shapes that do not chain
    assert nb.x_times_W(x1, W[:, :16].copy()) is NotImplemented        # rows shorter than MIN_COLUMNS
    assert nb.x_times_W(x1.astype(np.int64), W.astype(np.int64)) is NotImplemented
    with pytest.raises(ValueError):  # declined, the definition runs, and NumPy names the mismatch
        dense.x_times_W(x1[:, :40], W)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_in,n_out", [(64, 40), (65, 48), (300, 200), (1000, 1000), (3, 64)])
def test_batch_one_products_have_the_same_bits_on_any_number_of_threads(dtype, n_in, n_out, monkeypatch):
    """Serial, and parallel on 1, 2 and 3 of Numba's threads: the blocks of x W and the rows of da W^T
    do not depend on the threads, nor do their bits."""
    import numba
    from npdl.kernels.numba import rows
    rng = np.random.default_rng(n_in)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    x = rng.standard_normal((1, n_in)).astype(dtype)
    da = rng.standard_normal((1, n_out)).astype(dtype)
    before = numba.get_num_threads()
    results = []
    try:
        for threads, bound in ((before, 1 << 30), (1, 0), (2, 0), (3, 0)):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            monkeypatch.setattr(nb, "ONE_THREAD_MAX", bound)
            results.append((nb.x_times_W(x, W), nb.da_times_W_T(da, W)))
    finally:
        numba.set_num_threads(before)
    for y, dx in results:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])


def test_a_dense_layer_at_batch_one_runs_the_loops(monkeypatch):
    from npdl.kernels.numba import rows
    from npdl.layers import Dense
    calls = []
    for module, name in ((rows, "x_times_W"), (rows, "W_times_da")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
    layer = Dense(30, 40, activation="tanh")
    rng = np.random.default_rng(5)
    for batch, expected in ((1, ["x_times_W", "W_times_da"]), (3, [])):
        calls.clear()
        x = rng.standard_normal((batch, 30)).astype(np.float32)
        y = layer.forward(x, training=True)
        layer.need_input_grad = True
        dx = layer.backward(rng.standard_normal(y.shape).astype(np.float32))
        assert calls == expected and dx.shape == x.shape


@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_batch_one_training_steps_match_the_definitions(l2):
    """Twenty SGD steps at batch 1 of a 20-1024-48-5 float64 network: the kernels (products, rank-1
    updates of the two larger weights) against the definitions (kernels off), same start, parameters equal to float64 precision."""
    from npdl.layers import Dense
    from npdl.models import Sequential
    from npdl.optim import SGD

    def trained(mode):
        before = kernels.mode()
        kernels.use(mode)
        try:
            model = Sequential([Dense(20, 1024, activation="sigmoid", rng=_gen(0), dtype="float64"),
                                Dense(1024, 48, activation="tanh", rng=_gen(1), dtype="float64"),
                                Dense(48, 5, rng=_gen(2), dtype="float64")])
            model.compile("softmax_cross_entropy", SGD(lr=0.5, weight_decay=0.01), metrics=(), l2=l2)
            rng = np.random.default_rng(6)
            for _ in range(20):
                x = rng.standard_normal((1, 20))
                model.train_step(x, rng.integers(0, 5, (1,)))
            return [np.array(p) for layer in model.layers for p in layer.params.values()]
        finally:
            kernels.use(before)

    fast, reference = trained("auto"), trained("off")
    moved = False
    for a, b in zip(fast, reference):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
        moved = moved or not np.array_equal(a, b)
    assert moved  # the kernels ran (their sums are ordered differently), and agreed


def _gen(seed):
    from npdl import backend
    return backend.Generator(backend.get_device("cpu"), seed)


# -- da W^T from batch 2: the orientation BLAS runs faster, never a different result

class _Clock:
    """A timer that charges each call the cost its way was given: ``costs[way]`` seconds."""

    def __init__(self, costs):
        self.costs, self.now, self.running = costs, 0.0, None
        self.extra = 0.0  # what the call being made costs on top, whichever way it runs

    def __call__(self):
        return self.now

    def charge(self, way):
        self.now += self.costs[way] + self.extra


def _same_product(da, W):
    return np.ascontiguousarray(da @ W.T)  # the same bits by construction, on any BLAS and CPU


def _timed_choice(costs, second=None):
    """A :class:`Choice` between ``da @ W.T`` and ``second`` (default: the same product again, so that the
    choice is timed whatever this BLAS's ``(W da^T)^T`` gives) whose clock says each way took
    ``costs[way]``; returns it and the ways it ran, in order."""
    from npdl.kernels.numba import orientation

    ran, clock = [], _Clock(costs)

    def first(da, W):
        ran.append(0)
        clock.charge(0)
        return da @ W.T

    def alternative(da, W):
        ran.append(1)
        clock.charge(1)
        return (second or _same_product)(da, W)

    return orientation.Choice(first, alternative, clock=clock), ran


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("N,n_in,n_out", [(2, 50, 64), (20, 78, 100), (33, 100, 70), (130, 40, 300)])
def test_da_times_W_T_from_batch_two_gives_the_definitions_bits(monkeypatch, dtype, N, n_in, n_out):
    """Through the trials and after the choice, each call returns exactly ``da @ W.T``."""
    from npdl.kernels.numba import orientation
    monkeypatch.setattr(nb, "MIN_WORK", 1)
    monkeypatch.setattr(nb, "_orientation", orientation.Choice(nb._as_written, nb._W_untransposed))
    rng = np.random.default_rng(N)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    for _ in range(2 * orientation.TRIALS + 4):
        da = rng.standard_normal((N, n_out)).astype(dtype)
        dx = nb.da_times_W_T(da, W)
        assert dx.shape == (N, n_in) and dx.dtype == np.dtype(dtype) and dx.flags.c_contiguous
        np.testing.assert_array_equal(dx, dense.da_times_W_T.definition(da, W))
    assert len(nb._orientation.chosen) == 1  # decided once the trials were done


@pytest.mark.parametrize("faster,costs", [(0, {0: 1.0, 1: 2.0}), (1, {0: 2.0, 1: 1.0}),
                                          (0, {0: 1.0, 1: 0.98})])  # within MARGIN: the definition's way
def test_the_faster_orientation_serves_after_the_trials(faster, costs):
    from npdl.kernels.numba import orientation
    choice, ran = _timed_choice(costs)
    rng = np.random.default_rng(7)
    W = rng.standard_normal((40, 30)).astype(np.float32)
    calls = 1 + 2 * (orientation.TRIALS + 1)  # the bit check, then TRIALS + 1 timed calls of each way
    for _ in range(calls):
        choice("k", rng.standard_normal((5, 30)).astype(np.float32), W)
    assert ran[:2] == [0, 1] and sorted(ran[2:]) == [0] * (orientation.TRIALS + 1) + [1] * (orientation.TRIALS + 1)
    assert choice.chosen == {"k": faster}
    ran.clear()
    for _ in range(3):
        choice("k", rng.standard_normal((5, 30)).astype(np.float32), W)
    assert ran == [faster] * 3


@pytest.mark.parametrize("faster,costs,slow_calls", [(0, {0: 1.0, 1: 1.1}, 1), (1, {0: 1.1, 1: 1.0}, 0)])
def test_a_cost_that_alternates_between_calls_falls_on_both_ways(faster, costs, slow_calls):
    """A step with two layers of one shape calls the choice twice per step, and the second call may find
    a colder cache: every other call costs half a product more (odd calls, or even ones). Timed in strict
    turns, one way would always get the dear calls and lose; the trial order gives each way both."""
    from npdl.kernels.numba import orientation
    choice, ran = _timed_choice(costs)
    rng = np.random.default_rng(10)
    W = rng.standard_normal((40, 30)).astype(np.float32)
    call = 0
    while "k" not in choice.chosen:
        choice.clock.extra = 0.5 if call % 2 == slow_calls else 0.0
        choice("k", rng.standard_normal((5, 30)).astype(np.float32), W)
        call += 1
        assert call <= 1 + 2 * (orientation.TRIALS + 1)
    assert choice.chosen == {"k": faster}


def test_a_way_that_differs_in_one_bit_is_never_used():
    """If ``(W da^T)^T`` is not the same bits as ``da W^T`` (another BLAS may sum differently), only
    the definition's way runs for that shape, however fast the other would be."""
    def off_by_one_ulp(da, W):
        out = nb._W_untransposed(da, W)
        out[0, 0] = np.nextafter(out[0, 0], np.float32(np.inf))
        return out

    choice, ran = _timed_choice({0: 2.0, 1: 1.0}, second=off_by_one_ulp)
    rng = np.random.default_rng(8)
    W = rng.standard_normal((40, 30)).astype(np.float32)
    for _ in range(12):
        da = rng.standard_normal((5, 30)).astype(np.float32)
        np.testing.assert_array_equal(choice("k", da, W), da @ W.T)
    assert choice.chosen == {"k": 0} and ran == [0, 1] + [0] * 11


def test_shapes_beyond_the_limit_run_the_definitions_way_untimed(monkeypatch):
    from npdl.kernels.numba import orientation
    monkeypatch.setattr(orientation, "MAX_SHAPES", 2)
    choice, ran = _timed_choice({0: 1.0, 1: 1.0})
    rng = np.random.default_rng(9)
    W = rng.standard_normal((40, 30)).astype(np.float32)
    for key in ("a", "b", "c", "c"):
        choice(key, rng.standard_normal((5, 30)).astype(np.float32), W)
    assert ran == [0, 1, 0, 1, 0, 0] and set(choice._times) == {"a", "b"}


@pytest.mark.parametrize("one_thread", [True, False])
@pytest.mark.parametrize("n_in", [4, 5, 6, 7, 63, 64, 65, 130, 784])
def test_x_W_sums_the_rows_of_W_in_order_block_by_block(n_in, one_thread, monkeypatch):
    """The batch-1 ``x W`` takes four rows of ``W`` per pass over a block's partial sum but adds them one
    at a time, first row first, each product rounded: the bits of ``p = p + x[i] W[i]`` for the rows
    of each block of ``BLOCK_ROWS``, then ``y = p_0 + p_1 + ...`` in order of the blocks."""
    from npdl.kernels.numba import rows
    monkeypatch.setattr(nb, "ONE_THREAD_MAX", 1 << 30 if one_thread else 0)
    rng = np.random.default_rng(n_in)
    W = rng.standard_normal((n_in, 40)).astype(np.float32)
    x = rng.standard_normal((1, n_in)).astype(np.float32)
    expected = None
    for start in range(0, n_in, rows.BLOCK_ROWS):
        part = np.zeros(40, np.float32)
        for i in range(start, min(n_in, start + rows.BLOCK_ROWS)):
            part = part + x[0, i] * W[i]
        expected = part if expected is None else expected + part
    np.testing.assert_array_equal(nb.x_times_W(x, W)[0], expected)
