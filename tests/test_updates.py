"""Plain SGD's update made in a dense layer's backward pass (npdl.models.updates,
npdl.layers.dense.input_grad_then_update, npdl.kernels.numba.rows): the same bits as the update
made by the optimizer's step, and asked for only where nothing else can see the difference."""

import numpy as np
import pytest

from npdl import backend, kernels
from npdl.layers import Dense, TiedAutoencoder
from npdl.models import Sequential, updates
from npdl.optim import SGD, ExponentialDecay, Momentum

rows = pytest.importorskip("npdl.kernels.numba.rows")
nb = pytest.importorskip("npdl.kernels.numba.dense_products")


def _arrays(seed, m, n, dtype):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n)).astype(dtype)
    return W, rng.standard_normal(n).astype(dtype), rng.standard_normal(m).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,n", [(1, 1), (7, 33), (130, 257), (784, 100)])
@pytest.mark.parametrize("beta", [1.0, 0.9975])
def test_the_row_kernels_give_the_same_bits_serial_parallel_and_in_one_pass(dtype, m, n, beta):
    W, da, x = _arrays(m * n, m, n, dtype)
    t = np.dtype(dtype).type
    alpha, beta, zero = t(-0.03), t(beta), t(0)
    # the update as written, in the arrays' dtype: beta W + (alpha x[i]) da[j], each operation rounded
    expected_W = beta * W + (alpha * x)[:, None] * da[None, :]
    dx64 = W.astype(np.float64) @ da.astype(np.float64)
    scale = np.abs(W.astype(np.float64)) @ np.abs(da.astype(np.float64))
    results = []
    for dot, update, fused in ((rows.W_times_da, rows.rank_one, rows.dot_then_update),
                               (rows.W_times_da_parallel, rows.rank_one_parallel, rows.dot_then_update_parallel)):
        dx, W1 = np.empty(m, dtype), W.copy()
        dot(W1, da, dx, zero)
        update(W1, x, da, alpha, beta)
        dx2, W2 = np.empty(m, dtype), W.copy()
        fused(W2, da, dx2, x, alpha, beta, zero)
        results += [(dx, W1), (dx2, W2)]
    for dx, W_new in results:
        np.testing.assert_array_equal(dx, results[0][0])
        np.testing.assert_array_equal(W_new, expected_W)
    # dx is from W before its update: within the dtype's rounding of the float64 product
    tol = 2e-6 if dtype == "float32" else 1e-14
    assert np.all(np.abs(results[0][0] - dx64) <= tol * scale + 1e-30)


@pytest.mark.parametrize("one_thread", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_input_grad_then_update_kernel_equals_its_definition(one_thread, dtype, monkeypatch):
    """The one-pass kernel against the definition (da W^T, then SGD's rank-1 update through the
    optimizer's kernel): the same dx and the same W, bit for bit, on one thread and on Numba's."""
    from npdl.kernels.numba import gemm_update
    from npdl.layers import dense

    for module in (nb, gemm_update):
        monkeypatch.setattr(module, "ONE_THREAD_MAX", 1 << 21 if one_thread else 100)
    W, da, x = _arrays(7, 300, 200, dtype)
    da, x = da[None, :], x[None, :]
    W1, W2 = W.copy(), W.copy()
    dx1 = nb.input_grad_then_update(da, x, W1, -0.02, 0.999)
    dx2 = dense.input_grad_then_update.definition(da, x, W2, -0.02, 0.999)
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(W1, W2)
    assert not np.array_equal(W1, W) and dx1.shape == (1, 300) and dx1.dtype == np.dtype(dtype)


def test_input_grad_then_update_declines_what_the_rank_one_loop_would_not_take():
    W, da, x = _arrays(8, 300, 200, "float32")
    d1, x1 = da[None, :], x[None, :]
    before = W.copy()
    assert nb.input_grad_then_update(np.vstack([d1, d1]), np.vstack([x1, x1]), W, -0.1, 1.0) is NotImplemented
    assert nb.input_grad_then_update(d1, x1, W[:100, :100].copy(), -0.1, 1.0) is NotImplemented  # shapes
    small = W[:50, :100].copy()  # under SMALL_C elements: the optimizer's kernel leaves it to NumPy too
    assert nb.input_grad_then_update(d1, x1[:, :50], small, -0.1, 1.0) is NotImplemented
    assert nb.input_grad_then_update(d1[:, :1], x1, W[:, :1].copy(), -0.1, 1.0) is NotImplemented  # one column
    assert nb.input_grad_then_update(d1, x1.astype(np.float64), W, -0.1, 1.0) is NotImplemented
    frozen = W.copy()
    frozen.flags.writeable = False
    assert nb.input_grad_then_update(d1, x1, frozen, -0.1, 1.0) is NotImplemented
    np.testing.assert_array_equal(W, before)  # a declined call changes nothing


def _model(fuse, layers=None, optimizer=None, l1=0.0, l2=0.0, seed=0, dtype=None):
    rng = backend.Generator("cpu", seed)
    layers = layers or [Dense(40, 300, activation="sigmoid", rng=rng, dtype=dtype),
                        Dense(300, 200, activation="tanh", rng=rng, dtype=dtype),
                        Dense(200, 90, activation="relu", rng=rng, dtype=dtype),
                        Dense(90, 5, rng=rng, dtype=dtype)]
    model = Sequential(layers)
    model.compile("softmax_cross_entropy", optimizer or SGD(lr=0.05), metrics=(), l1=l1, l2=l2)
    model.fuse_update = fuse
    return model


def _train(model, steps=6, batch=1, seed=1):
    rng = np.random.default_rng(seed)
    n_in = model.layers[0].params["W"].shape[0]
    dtype = model.layers[0].params["W"].dtype
    for _ in range(steps):
        model.train_step(rng.standard_normal((batch, n_in)).astype(dtype), rng.integers(0, 5, (batch,)))
    return [np.array(p) for layer in model.layers for p in layer.params.values()]


def _spy(monkeypatch):
    """The names each training step's backward pass updated, step by step."""
    seen = []
    real = updates.backward_updating
    monkeypatch.setattr(updates, "backward_updating", lambda *a: seen.append(real(*a)) or seen[-1])
    return seen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer,l2", [(lambda: SGD(lr=0.05), 0.0), (lambda: SGD(lr=0.05, weight_decay=0.01), 1e-3),
                                          (lambda: SGD(lr=0.1, schedule=ExponentialDecay(0.7, 2)), 0.0)])
def test_training_with_the_update_in_backward_gives_the_same_parameters(dtype, optimizer, l2, monkeypatch):
    seen = _spy(monkeypatch)
    fused = _train(_model(True, optimizer=optimizer(), l2=l2, dtype=dtype))
    assert seen == [["1.W", "2.W", "3.W"]] * 6  # all but the first, which has no dx to compute
    seen.clear()
    separate = _train(_model(False, optimizer=optimizer(), l2=l2, dtype=dtype))
    assert seen == [[]] * 6
    for a, b in zip(fused, separate):
        np.testing.assert_array_equal(a, b)
    before = kernels.mode()
    kernels.use("off")  # the definitions also make it in the backward pass, with the same result
    try:
        seen.clear()
        defined = _train(_model(True, optimizer=optimizer(), l2=l2, dtype=dtype))
        separate_defined = _train(_model(False, optimizer=optimizer(), l2=l2, dtype=dtype))
    finally:
        kernels.use(before)
    assert seen[:6] == [["1.W", "2.W", "3.W"]] * 6
    for a, b in zip(defined, separate_defined):
        np.testing.assert_array_equal(a, b)


def test_on_a_foreign_device_the_definitions_make_it_with_the_same_result(monkeypatch):
    """array-api-strict arrays (no kernels): input_grad_then_update's definition in the backward pass."""
    pytest.importorskip("array_api_strict")
    seen = _spy(monkeypatch)
    results = []
    for fuse in (True, False):
        device = backend.get_device("strict")
        rng = backend.Generator(device, 0)
        model = _model(fuse, layers=[Dense(30, 200, activation="sigmoid", rng=rng, device=device),
                                     Dense(200, 100, activation="tanh", rng=rng, device=device),
                                     Dense(100, 5, rng=rng, device=device)], l2=1e-3)
        data = np.random.default_rng(0)
        for _ in range(3):
            model.train_step(device.asarray(data.standard_normal((1, 30)).astype(np.float32)),
                             device.asarray(data.integers(0, 5, (1,))))
        results.append([backend.to_numpy(p) for layer in model.layers for p in layer.params.values()])
    assert seen == [["1.W", "2.W"]] * 3 + [[]] * 3
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_the_update_waits_for_the_step_where_it_would_show(monkeypatch):
    seen = _spy(monkeypatch)
    rng = backend.Generator("cpu", 3)

    def cases():
        yield "batch 3", _model(True), 3
        yield "fuse_update off", _model(False), 1
        yield "L1 penalty", _model(True, l1=1e-4), 1
        yield "clipping", _model(True, optimizer=SGD(lr=0.05, clip_norm=1.0)), 1
        yield "momentum", _model(True, optimizer=Momentum(lr=0.05)), 1
        yield "not fused products", _model(True, optimizer=SGD(lr=0.05)), 1
        yield "a layer that is not Dense", _model(True, layers=[TiedAutoencoder(40, 300, rng=rng), Dense(40, 300, rng=rng),
                                                                Dense(300, 5, rng=rng)]), 1
        shared = [Dense(40, 300, rng=rng), Dense(300, 300, rng=rng), Dense(300, 300, rng=rng), Dense(300, 5, rng=rng)]
        shared[2].params["W"] = shared[1].params["W"]  # one array in two layers
        yield "a shared weight", _model(True, layers=shared), 1

    for why, model, batch in cases():
        if why == "not fused products":
            model.optimizer.fuse_products = False
        seen.clear()
        _train(model, steps=2, batch=batch)
        assert seen == [[], []], why
    # a wrapped optimizer step (the diagnostics' probe, or a hook) sees the weights before the update
    model = _model(True)
    step = model.optimizer.step
    before = []
    model.optimizer.step = lambda params, *a, **k: before.append(np.array(params["1.W"])) or step(params, *a, **k)
    seen.clear()
    _train(model, steps=1)
    assert seen == [[]] and not np.array_equal(before[0], model.layers[1].params["W"])


def test_the_profile_times_the_step_as_it_runs(monkeypatch):
    """npdl bench --profile's timers wrap the optimizer's step but read no weights: the dense layers
    still make their update in the backward pass, and the profile charges it to their backward."""
    from npdl.bench.fixed_batch import fixed_batch_step
    from npdl.bench.profile import profile_step

    seen = _spy(monkeypatch)
    model = _model(True)
    rng = np.random.default_rng(4)
    step = fixed_batch_step(model, rng.standard_normal((1, 40)).astype(np.float32), rng.integers(0, 5, (1,)))
    parts = dict(profile_step(step, reps=2, warmup=1))
    assert seen == [["1.W", "2.W", "3.W"]] * 3 and "optimizer step" in parts and "2 Dense backward" in parts
    assert "step" not in vars(model.optimizer)  # the timers are gone


def test_a_dense_subclass_that_does_not_take_the_update_leaves_it_to_the_step(monkeypatch):
    class MyDense(Dense):
        def backward(self, dy):  # its own backward pass, which knows nothing of update_in_backward
            da = dy * (self.cache[4] * (1 - self.cache[4])) if self.activation == "sigmoid" else dy
            x, W = self.cache[0], self.cache[1]
            self.grads["W"] = x.T @ da
            self.grads["b"] = da.sum(axis=0)
            return da @ W.T if self.need_input_grad else None

    seen = _spy(monkeypatch)
    rng = backend.Generator("cpu", 0)
    mine = _train(_model(True, layers=[Dense(40, 300, rng=rng), MyDense(300, 200, rng=rng), Dense(200, 5, rng=rng)]))
    assert seen == [["2.W"]] * 6  # layer 1 was handed its update and did not take it: the step makes it
    rng = backend.Generator("cpu", 0)
    plain = _train(_model(False, layers=[Dense(40, 300, rng=rng), MyDense(300, 200, rng=rng), Dense(200, 5, rng=rng)]))
    for a, b in zip(mine, plain):
        np.testing.assert_array_equal(a, b)


def test_the_diagnostics_probe_sees_the_update(tmp_path):
    from npdl.diagnostics import Diagnostics

    model = _model(True)
    diagnostics = Diagnostics(path=str(tmp_path / "d.jsonl"), every=1)
    rng = np.random.default_rng(2)
    diagnostics.probe(model, rng.standard_normal((1, 40)).astype(np.float32), rng.integers(0, 5, (1,)))
    norms = {(r["layer"], r["quantity"]): r["value"] for r in diagnostics.last}
    updates_found = [v for (layer, q), v in norms.items() if q == "update_ratio/W"]
    assert len(updates_found) == 4 and all(v > 0 for v in updates_found)
