"""Autoencoders: the tied gradient's two terms, corruption, reconstruction losses, shared weights, training."""

import math

import numpy as np
import pytest

import npdl
from npdl import backend
from npdl.errors import DeviceError, DTypeError, ShapeError
from npdl.gradcheck import relative_error
from npdl.losses.penalties import regularized_weights


def _inputs(g, dtype="float64", n=4, v=6, h=3):
    return (g.normal((n, v), dtype=dtype), g.normal((v, h), std=0.5, dtype=dtype),
            g.normal((h,), std=0.5, dtype=dtype), g.normal((v,), std=0.5, dtype=dtype))


# ------------------------------------------------------------------------ the tied gradient

@pytest.mark.parametrize("enc, dec", [("sigmoid", "sigmoid"), ("elu", "linear"), ("relu", "linear"),
                                      ("tanh", "tanh")])
def test_tied_dW_is_encoder_plus_decoder_contribution(enc, dec, device):
    """An untied autoencoder with W_dec = W^T computes the same z; its two weight gradients,
    the decoder's transposed back to W's shape, add up to the tied dW."""
    g = backend.Generator(device, 0)
    x, W, b, b_prime = _inputs(g)
    z, cache = npdl.tied_autoencoder_forward(x, W, b, b_prime, enc, dec)
    W_dec = device.xp.asarray(W.T, copy=True)
    z_untied, untied_cache = npdl.autoencoder_forward(x, W, b, W_dec, b_prime, enc, dec)
    assert relative_error(z, z_untied) < 1e-15
    dz = g.normal(tuple(z.shape), dtype="float64")
    dx, dW, db, db_prime = npdl.tied_autoencoder_backward(dz, cache)
    dx_u, dW_enc, db_u, dW_dec, db_prime_u = npdl.autoencoder_backward(dz, untied_cache)
    assert tuple(dW.shape) == (6, 3) and tuple(dW_dec.shape) == (3, 6)
    assert relative_error(dW, dW_enc + dW_dec.T) < 1e-14
    for a, b_ in ((dx, dx_u), (db, db_u), (db_prime, db_prime_u)):
        assert relative_error(a, b_) < 1e-14
    # neither term alone is the gradient
    assert relative_error(dW, dW_enc) > 1e-3 and relative_error(dW, dW_dec.T) > 1e-3


def test_need_dx_false_skips_the_input_gradient():
    g = backend.Generator("cpu", 1)
    x, W, b, b_prime = _inputs(g)
    z, cache = npdl.tied_autoencoder_forward(x, W, b, b_prime)
    dz = g.normal(tuple(z.shape), dtype="float64")
    full, skipped = npdl.tied_autoencoder_backward(dz, cache), npdl.tied_autoencoder_backward(dz, cache, False)
    assert skipped[0] is None
    assert all(relative_error(a, c) == 0.0 for a, c in zip(full[1:], skipped[1:]))


# ------------------------------------------------------------------------------ the layers

def test_tied_layer_uses_the_pure_functions(device):
    g = backend.Generator(device, 0)
    ae = npdl.TiedAutoencoder(6, 3, encoder="elu", decoder="linear", rng=g, device=device)
    ae.params["b"], ae.params["b_prime"] = g.normal((3,)), g.normal((6,))
    x = g.normal((5, 6))
    z = ae(x)
    z_ref, cache = npdl.tied_autoencoder_forward(x, ae.params["W"], ae.params["b"], ae.params["b_prime"],
                                                 "elu", "linear")
    dz = g.normal((5, 6))
    dx = ae.backward(dz)
    dx_ref, dW_ref, db_ref, dbp_ref = npdl.tied_autoencoder_backward(dz, cache)
    assert relative_error(z, z_ref) == 0.0 and relative_error(dx, dx_ref) == 0.0
    assert relative_error(ae.grads["W"], dW_ref) == 0.0 and relative_error(ae.grads["b"], db_ref) == 0.0
    assert relative_error(ae.grads["b_prime"], dbp_ref) == 0.0
    assert set(ae.grads) == set(ae.params) == {"W", "b", "b_prime"}
    assert ae.parameter_count() == 6 * 3 + 3 + 6
    h = ae.encode(x)
    assert tuple(h.shape) == (5, 3)
    assert relative_error(ae.decode(h), z) < 1e-6
    for name in ("W", "b", "b_prime"):  # float32 in, float32 through forward and backward
        assert backend.dtype_name(ae.grads[name]) == "float32"
    assert backend.dtype_name(z) == backend.dtype_name(dx) == backend.dtype_name(h) == "float32"


def test_untied_layer_and_weight_names(device):
    g = backend.Generator(device, 0)
    ae = npdl.Autoencoder(6, 3, rng=g, device=device)
    x = g.uniform((5, 6))
    z = ae(x, training=True)
    dx = ae.backward(g.normal((5, 6)))
    assert tuple(z.shape) == tuple(dx.shape) == (5, 6)
    assert set(ae.grads) == set(ae.params) == {"W_enc", "b", "W_dec", "b_prime"}
    assert tuple(ae.params["W_dec"].shape) == (3, 6)
    assert tuple(ae.encode(x).shape) == (5, 3)
    tied = npdl.TiedAutoencoder(6, 3, rng=g, device=device)
    # L1/L2 penalties apply to the weights only, never to b or b_prime
    assert regularized_weights([tied, ae]) == [(tied, "W"), (ae, "W_enc"), (ae, "W_dec")]


def test_default_init_follows_the_encoder_and_config_round_trips():
    g = backend.Generator("cpu", 0)
    assert npdl.TiedAutoencoder(784, 500, rng=g).get_config()["init"] == "glorot_uniform_sigmoid"  # Theano dA
    assert npdl.TiedAutoencoder(10, 4, encoder="elu", decoder="linear", rng=g).get_config()["init"] == "he_normal"
    W = backend.to_numpy(npdl.TiedAutoencoder(784, 500, rng=g).params["W"])
    bound = 4 * math.sqrt(6 / (784 + 500))
    assert W.dtype.name == "float32" and abs(W).max() <= bound and abs(W).max() > 0.99 * bound
    ae = npdl.TiedAutoencoder(5, 2, encoder="relu", decoder="identity", dtype="float64", rng=g, name="dA")
    rebuilt = npdl.layer_from_config({"class": "TiedAutoencoder", "config": ae.get_config()})
    assert rebuilt.get_config() == ae.get_config() and ae.decoder == "linear"
    assert rebuilt.params["W"].dtype.name == "float64"
    for layer in (npdl.MaskingNoise(0.25), npdl.GaussianNoise(0.5), npdl.DropoutNoise(0.8),
                  npdl.Autoencoder(4, 2, rng=g)):
        again = npdl.layer_from_config({"class": type(layer).__name__, "config": layer.get_config()})
        assert again.get_config() == layer.get_config()


def test_model_summary_counts_the_tied_parameters_once():
    model = npdl.Sequential([npdl.MaskingNoise(0.3), npdl.TiedAutoencoder(784, 500, rng=npdl.Generator("cpu", 0))])
    text = model.summary()
    assert "(None, 784)" in text and "393,284" in text  # 784*500 + 500 + 784


# ----------------------------------------------------------------------------- corruption

def test_masking_noise_statistics(device):
    layer = npdl.MaskingNoise(0.3, rng=backend.Generator(device, 0))
    x = device.xp.ones((200, 100), dtype=device.xp.float32)
    y = backend.to_numpy(layer(x, training=True))
    zeroed = y == 0
    assert abs(zeroed.mean() - 0.3) < 0.015
    assert (y[~zeroed] == 1.0).all()  # no rescaling (the Theano dA)
    assert y.dtype.name == "float32"
    dy = backend.Generator(device, 1).normal((200, 100), dtype="float32")
    dx = backend.to_numpy(layer.backward(dy))  # x = 1, so y is the mask: dx = dy * mask, exactly
    assert (dx == backend.to_numpy(dy) * y).all() and dx.dtype.name == "float32"


def test_gaussian_noise_statistics(device):
    layer = npdl.GaussianNoise(0.5, rng=backend.Generator(device, 0))
    x = device.xp.ones((200, 100), dtype=device.xp.float32)
    noise = backend.to_numpy(layer(x, training=True)) - 1.0
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.5) < 0.01
    dy = backend.Generator(device, 1).normal((200, 100), dtype="float32")
    assert (backend.to_numpy(layer.backward(dy)) == backend.to_numpy(dy)).all()  # identity
    assert backend.dtype_name(layer(x, training=True)) == "float32"


def test_dropout_noise_statistics(device):
    layer = npdl.DropoutNoise(0.7, rng=backend.Generator(device, 0))
    x = device.xp.ones((200, 100), dtype=device.xp.float32)
    y = backend.to_numpy(layer(x, training=True))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.015 and abs(y[kept] - 1 / 0.7).max() < 1e-6
    assert abs(y.mean() - 1.0) < 0.03  # inverted: E[x~] = x
    dy = backend.Generator(device, 1).normal((200, 100), dtype="float32")
    # x = 1, so y is the mask (1 / 0.7 or 0): dx = dy * mask, exactly
    assert (backend.to_numpy(layer.backward(dy)) == backend.to_numpy(dy) * y).all()


@pytest.mark.parametrize("layer", [npdl.MaskingNoise(0.3), npdl.GaussianNoise(0.2), npdl.DropoutNoise(0.7)])
def test_corruption_only_in_training(layer, device):
    x = backend.Generator(device, 0).normal((4, 5))
    assert layer(x) is x and layer(x, training=False) is x
    assert layer.backward(x) is x
    assert not (backend.to_numpy(layer(x, training=True)) == backend.to_numpy(x)).all()


def test_zero_corruption_is_the_identity():
    x = backend.Generator("cpu", 0).normal((4, 5))
    for layer in (npdl.MaskingNoise(0.0), npdl.GaussianNoise(0.0), npdl.DropoutNoise(1.0)):
        assert layer(x, training=True) is x


@pytest.mark.parametrize("cls, fn, level", [(npdl.MaskingNoise, npdl.corrupt_masking, 0.3),
                                            (npdl.GaussianNoise, npdl.corrupt_gaussian, 0.4),
                                            (npdl.DropoutNoise, npdl.corrupt_dropout, 0.6)])
def test_seeded_corruption_repeats_exactly(cls, fn, level):
    x = backend.Generator("cpu", 9).uniform((30, 20))
    runs = [backend.to_numpy(cls(level, rng=backend.Generator("cpu", 5))(x, training=True)) for _ in range(2)]
    assert (runs[0] == runs[1]).all()
    # the pure function draws exactly what the layer draws
    assert (backend.to_numpy(fn(x, level, backend.Generator("cpu", 5))) == runs[0]).all()
    # strict shares the CPU generator, so the same seed corrupts identically there
    strict = cls(level, rng=backend.Generator("strict", 5))(backend.to_device(x, "strict"), training=True)
    assert (backend.to_numpy(strict) == runs[0]).all()
    # successive batches get fresh noise; another seed, other noise
    layer = cls(level, rng=backend.Generator("cpu", 5))
    first, second = (backend.to_numpy(layer(x, training=True)) for _ in range(2))
    assert not (first == second).all()
    other = backend.to_numpy(cls(level, rng=backend.Generator("cpu", 6))(x, training=True))
    assert not (other == runs[0]).all()


def test_noise_before_the_autoencoder_gets_the_input_gradient_only_on_request():
    g = backend.Generator("cpu", 0)
    model = npdl.Sequential([npdl.MaskingNoise(0.5, rng=g), npdl.TiedAutoencoder(6, 3, rng=g)])
    x = g.uniform((4, 6))
    model(x, training=True)
    mask = model[0].cache
    assert model.backward(g.normal((4, 6))) is None and model[1].need_input_grad is False
    dx = model.backward(g.normal((4, 6)), input_grad=True)
    assert ((backend.to_numpy(dx) == 0) >= (backend.to_numpy(mask) == 0)).all()


# ------------------------------------------------------------------------------- the losses

def test_reconstruction_cross_entropy_is_the_theano_cost(device):
    g = backend.Generator(device, 0)
    a, x = g.normal((5, 7), std=2.0, dtype="float64"), g.uniform((5, 7), dtype="float64")
    z = npdl.sigmoid_forward(a)[0]
    zn, xn = backend.to_numpy(z), backend.to_numpy(x)
    theano = np.mean(-np.sum(xn * np.log(zn) + (1 - xn) * np.log(1 - zn), axis=1))
    probs = npdl.ReconstructionCrossEntropy()
    logits = npdl.get_loss("reconstruction_cross_entropy_logits")
    assert abs(backend.to_float(probs(z, x)) - theano) < 1e-12
    assert abs(backend.to_float(logits(a, x)) - theano) < 1e-12
    # summed over the 7 pixels: 7 times Keras's mean over every element
    assert abs(theano - 7 * backend.to_float(npdl.BinaryCrossEntropy()(z, x))) < 1e-12
    # the fused gradient is the probability gradient times the sigmoid's slope: (z - x) / N
    dz = probs.backward()
    assert relative_error(logits.backward(), dz * z * (1.0 - z)) < 1e-12
    assert relative_error(logits.backward(), (z - x) / 5.0) < 1e-12


def test_fused_loss_is_stable_and_float32_stays_float32():
    xp = backend.get_device("cpu").xp
    a = xp.asarray([[-1000.0, 0.0, 1000.0]], dtype=xp.float32)
    x = xp.asarray([[0.0, 1.0, 1.0]], dtype=xp.float32)
    loss = npdl.ReconstructionCrossEntropyWithLogits()
    value = loss(a, x)
    assert math.isfinite(float(value)) and backend.dtype_name(value) == "float32"
    assert backend.dtype_name(loss.backward()) == "float32"
    assert isinstance(npdl.get_loss("reconstruction_cross_entropy"), npdl.ReconstructionCrossEntropy)


# ------------------------------------------------------------------------------- bad input

def test_bad_input_errors(device):
    g = backend.Generator(device, 0)
    ae = npdl.TiedAutoencoder(6, 3, device=device, rng=g)
    with pytest.raises(ShapeError, match=r"TiedAutoencoder\(6->3\).*6 features.*\(2, 5\)"):
        ae(device.zeros((2, 5)))
    with pytest.raises(ShapeError, match=r"2-D"):
        ae(device.zeros((6,)))
    with pytest.raises(DTypeError, match=r"float64 but the layer computes in float32"):
        ae(device.zeros((2, 6), "float64"))
    with pytest.raises(ShapeError, match=r"codes must have 3 features"):
        ae.decode(device.zeros((2, 6)))
    xp = device.xp
    with pytest.raises(DTypeError, match="must be a float array"):
        npdl.MaskingNoise(0.3)(xp.ones((2, 5), dtype=xp.int64), training=True)
    with pytest.raises(ShapeError, match="reconstruction and target must have the same shape"):
        npdl.ReconstructionCrossEntropy()(device.zeros((2, 6)), device.zeros((2, 5)))
    with pytest.raises(DTypeError, match="target has dtype float64"):
        npdl.ReconstructionCrossEntropyWithLogits()(device.zeros((2, 6)), device.zeros((2, 6), "float64"))


def test_bad_arguments_errors():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'"):
        npdl.TiedAutoencoder(6, 3, encoder="swish")
    with pytest.raises(ValueError, match="must be positive"):
        npdl.TiedAutoencoder(6, 0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1.0"):
        npdl.MaskingNoise(1.0)
    with pytest.raises(ValueError, match="p must be in"):
        npdl.corrupt_masking(backend.get_device("cpu").zeros((2, 2)), -0.1, backend.Generator("cpu", 0))
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        npdl.GaussianNoise(-0.1)
    with pytest.raises(ValueError, match=r"keep_prob must be in \(0, 1\], got 0"):
        npdl.DropoutNoise(0)
    with pytest.raises(ValueError, match="eps must be in"):
        npdl.ReconstructionCrossEntropy(eps=0.0)


# --------------------------------------------------------------------------- shared weights

def test_dense_sharing_the_autoencoder_weights_sees_every_update():
    """The Theano SdA: the pretrained dA's W and b ARE the hidden layer's, through either's updates."""
    g = backend.Generator("cpu", 0)
    ae = npdl.TiedAutoencoder(6, 3, rng=g)
    hidden = ae.encoder_layers()
    dense = hidden[0]
    assert [type(layer).__name__ for layer in hidden] == ["Dense"] and dense.activation == "sigmoid"
    assert dense.params["W"] is ae.params["W"] and dense.params["b"] is ae.params["b"]
    x = g.uniform((8, 6))
    assert relative_error(npdl.Sequential(hidden)(x), ae.encode(x)) == 0.0

    # fine-tuning the MLP moves the autoencoder's weights ...
    mlp = npdl.Sequential(hidden + [npdl.Dense(3, 2, rng=g)]).compile("softmax_cross_entropy", npdl.optim.SGD(0.5))
    before = backend.to_numpy(ae.params["W"]).copy()
    mlp.train_step(x, g.integers(0, 2, (8,)))
    assert dense.params["W"] is ae.params["W"]
    assert not (backend.to_numpy(ae.params["W"]) == before).all()
    assert relative_error(npdl.Sequential(hidden)(x), ae.encode(x)) == 0.0

    # ... and pretraining the autoencoder moves the hidden layer's
    dae = npdl.Sequential([npdl.MaskingNoise(0.3, rng=g), ae]).compile("reconstruction_cross_entropy",
                                                                       npdl.optim.Momentum(0.1))
    before = backend.to_numpy(dense.params["W"]).copy()
    dae.train_step(x, x)
    assert not (backend.to_numpy(dense.params["W"]) == before).all()
    assert (backend.to_numpy(dense.params["W"]) == backend.to_numpy(ae.params["W"])).all()

    # loading a state writes into the shared arrays, so it keeps the sharing
    dae.load_state_dict({k: v * 0.0 for k, v in dae.state_dict().items()})
    assert dense.params["W"] is ae.params["W"] and not backend.to_numpy(dense.params["W"]).any()


def test_share_params_checks_the_layers():
    g = backend.Generator("cpu", 0)
    ae = npdl.TiedAutoencoder(6, 3, rng=g)
    dense = npdl.Dense(6, 3, rng=g)
    assert npdl.share_params(ae, dense) is dense and dense.params["W"] is ae.params["W"]
    with pytest.raises(ShapeError, match="must map 6 -> 3 features, got 3 -> 6"):
        npdl.share_params(ae, npdl.Dense(3, 6, rng=g))
    with pytest.raises(ValueError, match="needs a bias"):
        npdl.share_params(ae, npdl.Dense(6, 3, bias=False, rng=g))
    with pytest.raises(DTypeError, match="dtypes differ"):
        npdl.share_params(ae, npdl.Dense(6, 3, dtype="float64", rng=g))
    with pytest.raises(DeviceError, match="different devices"):
        npdl.share_params(ae, npdl.Dense(6, 3, device="strict", rng=backend.Generator("strict", 0)))
    with pytest.raises(TypeError, match="expected a TiedAutoencoder and a Dense"):
        npdl.share_params(npdl.Autoencoder(6, 3, rng=g), dense)
    linear = npdl.TiedAutoencoder(6, 3, encoder="linear", rng=g).encoder_layers()
    assert len(linear) == 1 and linear[0].activation == "linear"


# -------------------------------------------------------------------------------- training

def _low_rank_images(n=240, d=24, k=3, seed=0):
    """Inputs in [0, 1] with k-dimensional structure: sigmoid of a rank-k map of Gaussian factors."""
    g = backend.Generator("cpu", seed)
    return npdl.sigmoid_forward(g.normal((n, k)) @ g.normal((k, d), std=2.0))[0]


@pytest.mark.parametrize("enc, dec, loss", [("sigmoid", "sigmoid", "reconstruction_cross_entropy"),
                                            ("sigmoid", "linear", "reconstruction_cross_entropy_logits"),
                                            ("elu", "linear", "mse")])
def test_sequential_trained_tied_autoencoder_lowers_reconstruction_loss(enc, dec, loss):
    x = _low_rank_images()
    g = backend.Generator("cpu", 1)
    model = npdl.Sequential([npdl.MaskingNoise(0.2, rng=g), npdl.TiedAutoencoder(24, 8, enc, dec, rng=g)])
    model.compile(loss, npdl.optim.SGD(0.1 if loss != "mse" else 0.05))
    start = model.evaluate(x, x)["loss"]
    history = model.fit(x, x, epochs=15, batch_size=20, verbose=0, rng=backend.Generator("cpu", 2))
    end = model.evaluate(x, x)["loss"]
    assert end < 0.8 * start, (start, end)
    assert all(math.isfinite(v) for v in history.history["loss"])
    # a seeded run repeats exactly: same corruption, same shuffles, same weights
    g = backend.Generator("cpu", 1)
    again = npdl.Sequential([npdl.MaskingNoise(0.2, rng=g), npdl.TiedAutoencoder(24, 8, enc, dec, rng=g)])
    again.compile(loss, npdl.optim.SGD(0.1 if loss != "mse" else 0.05))
    again.fit(x, x, epochs=15, batch_size=20, verbose=0, rng=backend.Generator("cpu", 2))
    assert (backend.to_numpy(again[1].params["W"]) == backend.to_numpy(model[1].params["W"])).all()
