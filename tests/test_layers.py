"""Layer objects: they call the checked pure functions, hold params/grads, and behave in train/eval."""

import math

import pytest

import npdl
from npdl import backend, init
from npdl.gradcheck import relative_error


def test_dense_layer_uses_the_pure_functions(device):
    g = backend.Generator(device, 0)
    layer = npdl.Dense(4, 3, rng=g, device=device)
    layer.params["b"] = g.normal((3,))
    x, dy = g.normal((5, 4)), g.normal((5, 3))
    y = layer(x)
    y_ref, cache = npdl.dense_forward(x, layer.params["W"], layer.params["b"])
    dx = layer.backward(dy)
    dx_ref, dW_ref, db_ref = npdl.dense_backward(dy, cache)
    assert relative_error(y, y_ref) == 0.0 and relative_error(dx, dx_ref) == 0.0
    assert relative_error(layer.grads["W"], dW_ref) == 0.0 and relative_error(layer.grads["b"], db_ref) == 0.0
    assert set(layer.grads) == set(layer.params)
    assert layer.parameter_count() == 4 * 3 + 3


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "elu", "leaky_relu"])
def test_dense_with_activation_equals_dense_then_activation(device, activation):
    """Dense(activation=f) is Dense followed by f's layer: same output, input gradient, parameter
    gradients, and the same step when plain SGD applies x^T da without forming it."""
    g = backend.Generator(device, 1)
    x, dy = g.normal((6, 4), dtype="float64"), g.normal((6, 3), dtype="float64")
    fused = npdl.Dense(4, 3, dtype="float64", device=device, rng=backend.Generator(device, 2), activation=activation)
    plain = npdl.Dense(4, 3, dtype="float64", device=device, rng=backend.Generator(device, 2))
    fused.params["b"][...] = g.normal((3,), dtype="float64")
    plain.params["b"][...] = fused.params["b"]
    act = npdl.get_activation(activation)
    y = fused.forward(x, training=True)
    y_ref = act.forward(plain.forward(x, training=True), training=True)
    assert relative_error(y, y_ref) < 1e-14
    dx = fused.backward(dy)
    dx_ref = plain.backward(act.backward(dy))
    assert relative_error(dx, dx_ref) < 1e-14
    for k in ("W", "b"):
        assert relative_error(fused.grads[k], plain.grads[k]) < 1e-14
    assert fused.get_config()["activation"] == activation and "activation" not in plain.get_config()
    rebuilt = npdl.Dense(**fused.get_config())
    assert rebuilt.activation == activation
    # the product path: SGD adds -lr x^T da into W with da the pre-activation gradient
    models = []
    for layers in ([npdl.Dense(4, 3, dtype="float64", device=device, rng=backend.Generator(device, 5),
                               activation=activation)],
                   [npdl.Dense(4, 3, dtype="float64", device=device, rng=backend.Generator(device, 5)),
                    npdl.get_activation(activation)]):
        model = npdl.Sequential(layers)
        model.compile(loss="mse", optimizer=npdl.optim.SGD(0.1))
        model.train_step(x, y_ref * 0.5)
        assert not layers[0].grads["W"].is_formed  # the factors path was taken: dW never formed
        models.append(model)
    for k in ("W", "b"):
        assert relative_error(models[0].layers[0].params[k], models[1].layers[0].params[k]) < 1e-13


def test_summary_shows_a_dense_layers_activation():
    model = npdl.Sequential([npdl.SimpleRNN(3, 4, return_sequences=True),
                             npdl.TimeDistributed(npdl.Dense(4, 3, activation="relu")),
                             npdl.Flatten(), npdl.Dense(21, 5, activation="tanh"), npdl.Dense(5, 2)])
    text = model.summary(input_shape=(7, 3))
    assert "(Dense, tanh)" in text and "(Dense)" in text and "(SimpleRNN)" in text
    assert "(TimeDistributed(Dense, relu)) (None, 7, 3)" in text  # a long name still leaves a space


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "elu", "leaky_relu", "linear"])
def test_dense_with_activation_keeps_float32(device, activation):
    g = backend.Generator(device, 0)
    layer = npdl.Dense(4, 3, device=device, rng=g, activation=activation)
    y = layer.forward(g.normal((5, 4)), training=True)
    dx = layer.backward(g.normal((5, 3)))
    assert [backend.dtype_name(a) for a in (y, dx, layer.grads["W"], layer.grads["b"])] == ["float32"] * 4


def test_dense_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="Dense: unknown activation 'softplus'"):
        npdl.Dense(3, 2, activation="softplus")


@pytest.mark.parametrize("name, bound", [("glorot_uniform", math.sqrt(6 / 700)),
                                         ("glorot_uniform_sigmoid", 4 * math.sqrt(6 / 700))])
def test_uniform_initialisers_fill_their_range(name, bound):
    W = backend.to_numpy(npdl.Dense(400, 300, init=name, rng=backend.Generator("cpu", 0)).params["W"])
    assert W.dtype.name == "float32"
    assert abs(W).max() <= bound and abs(W).max() > 0.99 * bound
    assert abs(W.std() - bound / math.sqrt(3)) < 0.01 * bound  # U[-r, r] has std r / sqrt(3)


def test_he_normal_and_normal_and_zeros():
    W = backend.to_numpy(npdl.Dense(800, 400, init="he_normal", rng=backend.Generator("cpu", 0)).params["W"])
    assert abs(W.std() - math.sqrt(2 / 800)) < 0.02 * math.sqrt(2 / 800)
    W = backend.to_numpy(npdl.Dense(800, 400, init=init.normal(0.05), rng=backend.Generator("cpu", 0)).params["W"])
    assert abs(W.std() - 0.05) < 0.001
    assert not npdl.Dense(3, 2, init="zeros").params["W"].any()
    assert init.get_initializer("normal(0.05)")  # names in saved configs round-trip


def test_same_seed_same_weights_on_cpu_and_strict():
    a = npdl.Dense(6, 4, rng=backend.Generator("cpu", 7)).params["W"]
    b = npdl.Dense(6, 4, device="strict", rng=backend.Generator("strict", 7)).params["W"]
    assert (backend.to_numpy(a) == backend.to_numpy(b)).all()


def test_manual_seed_makes_default_weights_reproducible():
    npdl.manual_seed(3)
    a = [npdl.Dense(4, 4).params["W"] for _ in range(2)]
    npdl.manual_seed(3)
    b = [npdl.Dense(4, 4).params["W"] for _ in range(2)]
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all() and not (a[0] == a[1]).all()
    npdl.manual_seed(None)


def test_dropout_is_identity_at_inference_and_inverted_in_training(device):
    layer = npdl.Dropout(0.25, rng=backend.Generator(device, 0))
    x = device.xp.ones((200, 50), dtype=device.xp.float32)
    assert layer(x) is x and layer.backward(x) is x
    y = backend.to_numpy(layer(x, training=True))
    kept = y != 0
    assert abs(y[kept] - 1 / 0.75).max() < 1e-6
    assert abs(kept.mean() - 0.75) < 0.02 and abs(y.mean() - 1.0) < 0.03  # E[y] = x
    dy = backend.Generator(device, 1).normal((200, 50), dtype="float32")
    dx = backend.to_numpy(layer.backward(dy))  # x = 1, so y is the mask (1 / 0.75 or 0): dx = dy * mask
    assert (dx == backend.to_numpy(dy) * y).all()
    assert y.dtype.name == "float32" and dx.dtype.name == "float32"


def test_activation_layers_round_trip(device):
    g = backend.Generator(device, 0)
    x = g.normal((3, 4))
    for name in ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softmax"]:
        layer = npdl.get_activation(name)
        y = layer(x)
        assert tuple(y.shape) == (3, 4) and backend.dtype_name(layer.backward(y)) == "float32"
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        npdl.get_activation("swish")


def test_sigmoid_does_not_overflow_and_softmax_is_stable():
    xp = backend.get_device("cpu").xp
    x = xp.asarray([[-1000.0, 0.0, 1000.0]], dtype=xp.float32)
    s = npdl.sigmoid_forward(x)[0]
    assert s.tolist() == [[0.0, 0.5, 1.0]]
    p = npdl.softmax_forward(x)[0]
    assert p.tolist() == [[0.0, 0.0, 1.0]]
    loss, _ = npdl.bce_logits_forward(x, xp.asarray([[0.0, 1.0, 1.0]], dtype=xp.float32))
    assert math.isfinite(float(loss))


def test_flatten_and_config(device):
    x = device.zeros((2, 3, 4, 5))
    f = npdl.Flatten()
    assert tuple(f(x).shape) == (2, 60) and tuple(f.backward(f(x)).shape) == (2, 3, 4, 5)
    assert f.output_shape((3, 4, 5)) == (60,)
    d = npdl.Dense(3, 2, init="he_normal", bias=False, name="fc")
    rebuilt = npdl.layer_from_config({"class": "Dense", "config": d.get_config()})
    assert rebuilt.get_config() == d.get_config() and "b" not in rebuilt.params


def test_to_moves_parameters(device):
    layer = npdl.Dense(3, 2, rng=backend.Generator("cpu", 0))
    moved = layer.to(device)
    assert moved.device == device and backend.device_of(moved.params["W"]) == device
