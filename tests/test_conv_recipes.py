"""Convolutional recipes (lenet, network3*, keras-cnn), the ChannelBias layer, the Conv2D layer with
and without kernels and the lenet/kcnn bench workloads: small, fast smoke runs. (The chunked Numba
convolution against its definition: tests/test_conv_kernels.py.)"""

import json

import numpy as np
import pytest

import npdl
from npdl import backend, cli
from npdl.layers import ChannelBias, Conv2D, Dense, MaxPool2D
from npdl.recipes import get_recipe, train

CONV_RECIPES = ("lenet", "network3", "network3-2conv", "network3-dropout", "keras-cnn")


def tiny_images(n_train=120, n_valid=40, n_test=40, seed=0):
    """Ten 28x28 prototypes plus noise, NCHW: separable enough to learn in a few steps."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, 1, 28, 28)).astype(np.float32)

    def part(n):
        y = rng.integers(0, 10, n)
        return (prototypes[y] + 0.3 * rng.standard_normal((n, 1, 28, 28))).astype(np.float32), y

    return {"train": part(n_train), "valid": part(n_valid), "test": part(n_test)}


@pytest.mark.parametrize("name", CONV_RECIPES)
def test_conv_recipes_train_on_tiny_images(name):
    result = train(get_recipe(name), epochs=2, batch_size=20, verbose=0, data=tiny_images())
    assert result.epochs == 2 and np.isfinite(result.train_loss)
    assert 0.0 <= result.test_error <= 1.0 and 0.0 <= result.valid_error <= 1.0


def test_conv_recipes_keep_their_published_settings():
    lenet = get_recipe("lenet")
    assert (lenet.lr, lenet.batch_size, lenet.epochs, lenet.patience, lenet.drop_last, lenet.shuffle) == \
        (0.1, 500, 200, 10000, True, False)
    assert [(get_recipe(n).lr, get_recipe(n).batch_size, get_recipe(n).epochs)
            for n in ("network3", "network3-2conv", "keras-cnn")] == [(0.05, 10, 60), (0.03, 10, 60), (1e-4, 64, 1)]
    model = lenet.build({"lr": 0.1, "batch_size": 500}, backend.get_device("cpu"), backend.Generator("cpu", 0))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:4] == ["Conv2D", "MaxPool2D", "ChannelBias", "Tanh"]  # convolve, pool, + bias, tanh
    conv = model.layers[0]
    assert not conv.bias
    bound = np.sqrt(6.0 / (1 * 25 + 20 * 25 / 4))  # Theano: fan_out = n_filters * 5 * 5 / pool area
    W = backend.to_numpy(conv.params["W"])
    assert np.abs(W).max() <= bound and np.abs(W).max() > 0.95 * bound
    n3 = get_recipe("network3").build({"lr": 0.05, "batch_size": 10}, backend.get_device("cpu"),
                                      backend.Generator("cpu", 0))
    assert n3.l2 == pytest.approx(0.5 * 0.1 / 5000)  # network3.py: 0.5 lmbda sum(w^2) / num_training_batches
    assert any(type(layer).__name__ == "Dropout" for layer in get_recipe("network3-dropout").build(
        {"lr": 0.03, "batch_size": 10}, backend.get_device("cpu"), backend.Generator("cpu", 0)).layers)


def test_lenet_checkpoint_rebuilds_without_code(tmp_path):
    result = train(get_recipe("lenet"), epochs=1, batch_size=20, verbose=0, data=tiny_images(), out=str(tmp_path))
    model = npdl.load_checkpoint(tmp_path / "model.npz")["model"]
    data = tiny_images()
    for part, reported in (("test", result.test_error), ("valid", result.valid_error)):
        x, y = data[part]
        scores = model.predict(x)
        assert scores.shape == (len(x), 10)  # the rebuilt network scores as the trained one did
        assert np.mean(np.argmax(scores, axis=1) != y) == pytest.approx(reported, abs=1e-6), part


@pytest.mark.mnist
def test_network3_and_keras_cnn_learn_real_mnist(mnist_dir):
    from threadpoolctl import threadpool_limits

    from npdl.datasets import load_mnist

    d = load_mnist("dlt", data_dir=mnist_dir, flatten=False)
    data = {"train": (d["train"][0][:2000], d["train"][1][:2000]), "valid": (d["valid"][0][:1000], d["valid"][1][:1000]),
            "test": (d["test"][0][:1000], d["test"][1][:1000])}
    with threadpool_limits(1, "blas"):  # batch 10 GEMMs on two busy cores: one BLAS thread is far faster
        n3 = train(get_recipe("network3"), epochs=1, verbose=0, data=data)
        kcnn = train(get_recipe("keras-cnn"), epochs=1, lr=1e-3, verbose=0, data=data)
    assert n3.test_error < 0.35 and kcnn.test_error < 0.3  # measured: 20% and 14% after 2,000 images


# ------------------------------------------------------------------- ChannelBias layer


def test_channel_bias_layer_adds_and_sums_per_channel():
    layer = ChannelBias(3, dtype="float64")
    layer.params["b"][...] = np.array([1.0, -2.0, 0.5])
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    y = layer(x)
    np.testing.assert_allclose(y - x, np.broadcast_to(np.array([1.0, -2.0, 0.5])[None, :, None, None], x.shape))
    dy = np.random.default_rng(1).standard_normal(x.shape)
    np.testing.assert_array_equal(layer.backward(dy), dy)
    np.testing.assert_allclose(layer.grads["b"], dy.sum(axis=(0, 2, 3)))
    with pytest.raises(npdl.ShapeError, match="ChannelBias"):
        layer(np.zeros((2, 4, 4, 5)))


def test_pool_then_bias_equals_bias_then_pool():
    """Why LeNet's order is expressible either way: max-pooling commutes with a per-channel constant."""
    g = backend.Generator("cpu", 0)
    x = g.normal((2, 3, 6, 6))
    bias = ChannelBias(3)
    bias.params["b"][...] = np.array([0.3, -1.0, 2.0], dtype=np.float32)
    pool = MaxPool2D(2)
    np.testing.assert_allclose(bias(pool(x)), pool(bias(x)), rtol=1e-6)


# ------------------------------------------------------------- the layer, kernels off


def _reordering_bound(n_terms, magnitude, dtype):
    """How far apart two evaluations of the same sum of ``n_terms`` products may be when they add in
    different orders: each is within ``gamma_n * sum|terms|`` of the exact sum, ``gamma_n = n u / (1 - n u)``
    with ``u`` the unit round-off (Higham, Accuracy and Stability of Numerical Algorithms, eq. 3.5), so
    together within ``2 gamma_n * magnitude`` for any ``magnitude >= sum|terms|``."""
    u = float(np.finfo(dtype).eps) / 2
    return 2 * n_terms * u / (1 - n_terms * u) * magnitude


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conv_layer_kernels_match_the_definition_to_round_off(dtype):
    """The Numba kernel (chunked GEMMs) and the definition (kernels off) add the same products in other
    orders. Bounds on sum|terms|, N images of H x Wd, C -> O channels, K x K kernel, 'same' padding (OH, OW = H, Wd):
    y[n, o]: C K K products and b[o], <= |W[o]|_1 max|x| + |b[o]|; dx[n, c]: <= O K K products,
    <= |W[:, c]|_1 max|dy|; dW[o]: N H Wd products, <= |dy[:, o]|_1 max|x|; db[o]: N H Wd terms, |dy[:, o]|_1."""
    N, C, O, H, Wd, K = 33, 3, 4, 10, 9, 5
    g = backend.Generator("cpu", 0)
    x, dy, b = g.normal((N, C, H, Wd), dtype=dtype), g.normal((N, O, H, Wd), dtype=dtype), g.normal((O,), dtype=dtype)
    results = []
    for mode in (None, "off"):
        npdl.kernels.use(mode)
        try:
            assert npdl.kernels.implementation(np, "conv2d") == ("definition" if mode else "numba")
            layer = Conv2D(C, O, K, padding="same", dtype=dtype, rng=backend.Generator("cpu", 1))
            layer.params["b"][...] = b
            y = layer(x, training=True)
            results.append((y, layer.backward(dy), layer.grads["W"], layer.grads["b"]))
        finally:
            npdl.kernels.use(None)
    Wa, xa, dya = (np.abs(a).astype(np.float64) for a in (layer.params["W"], x, dy))
    bounds = (_reordering_bound(C * K * K + 1, (Wa.sum(axis=(1, 2, 3)) + np.abs(b)).max() * xa.max(), dtype),
              _reordering_bound(O * K * K, Wa.sum(axis=(0, 2, 3)).max() * dya.max(), dtype),
              _reordering_bound(N * H * Wd, dya.sum(axis=(0, 2, 3)).max() * xa.max(), dtype),
              _reordering_bound(N * H * Wd, dya.sum(axis=(0, 2, 3)).max(), dtype))
    for name, got, want, bound in zip(("y", "dx", "dW", "db"), *results, bounds):
        assert got.dtype == want.dtype == np.dtype(dtype) and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=0, atol=bound, err_msg=name)
        # tight enough to see a wrong term: float64 ~1e-13..1e-10 of the largest entry, float32 <= 2%
        assert bound < (1e-10 if dtype == "float64" else 0.02) * float(np.abs(want).max()), name


# ------------------------------------------------------------------------ bench workloads


def test_conv_bench_workloads(capsys):
    code = cli.main(["bench", "--workload", "lenet_b8,kcnn_b4", "--json", "--min-seconds", "0.05"])
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert code == 0 and [r["workload"] for r in records] == ["lenet_b8", "kcnn_b4"]
    assert all(r["reps"] >= 10 and 0 < r["min_ms"] <= r["median_ms"] for r in records)


def test_conv_workload_specs_match_the_recipes_networks():
    from npdl.bench import parse
    from npdl.bench.conv_step import build_conv_model

    model = build_conv_model(parse("lenet_b4"))
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "MaxPool2D", "Tanh", "Conv2D", "MaxPool2D", "Tanh", "Flatten", "Dense", "Dense"]
    assert [layer.activation for layer in model.layers if isinstance(layer, Dense)] == ["tanh", "linear"]
    assert not any(layer.bias for layer in model.layers if isinstance(layer, Conv2D))
    kcnn = build_conv_model(parse("kcnn_b4"))
    assert [layer.padding for layer in kcnn.layers if isinstance(layer, (Conv2D, MaxPool2D))] == ["same"] * 4
    assert [type(layer).__name__ for layer in kcnn.layers] == [
        "Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D", "Flatten", "Dense", "Dense"]
    assert [layer.activation for layer in kcnn.layers if isinstance(layer, (Conv2D, Dense))] == [
        "relu", "relu", "relu", "linear"]  # each ReLU inside the layer before it, as the Keras tutorial builds it
    assert kcnn.layers[5].params["W"].shape == (64 * 7 * 7, 1024)
