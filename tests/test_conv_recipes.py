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
    ck = npdl.load_checkpoint(tmp_path / "model.npz")
    x = tiny_images()["test"][0]
    assert ck["model"].predict(x).shape == (len(x), 10) and result.test_error is not None


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


def test_conv_layer_float32_matches_the_reference_kernels():
    g = backend.Generator("cpu", 0)
    layer = Conv2D(3, 4, 5, padding="same", rng=g)
    x = g.normal((33, 3, 10, 9))
    y = layer(x, training=True)
    dx = layer.backward(np.ones_like(y))
    npdl.kernels.use("off")
    try:
        ref = Conv2D(3, 4, 5, padding="same", rng=backend.Generator("cpu", 0))
        y_ref = ref(x, training=True)
        dx_ref = ref.backward(np.ones_like(y_ref))
    finally:
        npdl.kernels.use(None)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.grads["W"], ref.grads["W"], rtol=1e-3, atol=1e-3)


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
    assert kcnn.layers[7].params["W"].shape == (64 * 7 * 7, 1024)
