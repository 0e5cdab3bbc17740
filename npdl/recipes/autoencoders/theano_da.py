"""The Theano tutorial's denoising autoencoder (DeepLearningTutorials ``dA.py``): ``da``, ``da-0``.

784-500 tied sigmoid autoencoder, masking corruption 0.3 (``da``) or none (``da-0``), SGD lr 0.1,
batch 20, 15 epochs, cross-entropy summed over pixels. With ``out``: ``filters_corruption_30.png`` /
``filters_corruption_0.png`` (the first 100 filters, as the tutorial draws them),
``reconstructions.png`` (original, corrupted, reconstructed test digits), ``max_activation.png``
(for hidden units 0..9, the input in [0, 1] that most excites the unit, found by gradient ascent
through ``Sequential.backward(..., input_grad=True)``), ``curves.png``. Resumes like any recipe.
"""

from __future__ import annotations

import os
import time

from ... import backend
from ...layers.autoencoder import TiedAutoencoder
from ...layers.noise import MaskingNoise
from ...models import Sequential
from ...optim import SGD
from ..base import Recipe, register
from ..classic import mnist_dlt
from .common import finish, fit_on_inputs, picture, reconstruction_picture


def maximize_activation(layers, unit: int, n_in: int, device="cpu", steps: int = 200, step_size: float = 0.05,
                        seed: int = 0):
    """The input in [0, 1] that most excites output ``unit`` of ``layers``, by gradient ascent.

    Starts from a grey image with a little noise; each step runs the layers forward,
    backpropagates ``d output[0, unit] / d output`` (a one-hot row) with
    ``Sequential.backward(..., input_grad=True)`` to get ``d output[unit] / d x``, moves ``x``
    along it (normalised to ``step_size`` per pixel on average) and clips to [0, 1].
    Returns the input (1, n_in) on the device. The layers' parameters are not changed.
    """
    device = backend.get_device(device)
    model = Sequential(list(layers))
    xp = device.xp
    x = backend.Generator(device, seed).uniform((1, n_in), 0.45, 0.55, dtype=layers[0].dtype)
    for _ in range(int(steps)):
        out = model.forward(x)
        onehot = xp.zeros(out.shape, dtype=out.dtype)
        onehot[0, unit] = 1.0
        dx = model.backward(onehot, input_grad=True)
        scale = backend.to_float(xp.mean(xp.abs(dx)))
        if scale == 0.0:
            break
        x = x + dx * (step_size / scale)
        x = xp.minimum(xp.maximum(x, 0.0), 1.0)
    model.clear_caches()
    for layer in model.layers:
        layer.grads.clear()
    return x


def _run_da(recipe, options, device, data, out, resume, verbose):
    """``dA.py``: 784-500 tied sigmoid dA, masking noise, SGD lr 0.1, batch 20, 15 epochs, summed cross-entropy."""
    started = time.perf_counter()
    p = recipe.extra["corruption"]
    rng = backend.Generator(device, options["seed"])
    noise = MaskingNoise(p, rng=backend.Generator(device, options["seed"] + 3))
    ae = TiedAutoencoder(784, recipe.extra.get("n_hidden", 500), "sigmoid", "sigmoid", dtype=options["dtype"],
                         device=device, rng=rng, name="dA")
    model = Sequential([noise, ae], name=recipe.name)
    model.compile("reconstruction_cross_entropy", SGD(lr=options["lr"]))
    x_train = device.asarray(data["train"][0])
    history, resumed = fit_on_inputs(recipe, options, device, model, x_train, None, out, resume, verbose,
                                     shuffle=False, drop_last=True)
    pictures = []
    if out:
        W = backend.to_numpy(ae.params["W"])
        filters = os.path.join(out, f"filters_corruption_{round(p * 100)}.png")
        pictures.append(picture("tile_images", W[:, :100].T, filters, title=f"dA filters, corruption {p:g}"))
        pictures.append(reconstruction_picture(out, Sequential([ae]), device.asarray(data["test"][0]),
                                               noise if p > 0 else None))
        best = [backend.to_numpy(maximize_activation(ae.encoder_layers(), unit, 784, device)) for unit in range(10)]
        pictures.append(picture("tile_images", [b[0] for b in best], os.path.join(out, "max_activation.png"),
                                title="inputs that most excite hidden units 0-9"))
    return finish(recipe, options, device, model, history, started, out, {"corruption": p}, data["test"][0],
                  resumed, pictures=pictures)


for _name, _p in (("da", 0.3), ("da-0", 0.0)):
    register(Recipe(
        _name, f"Theano denoising autoencoder, 784-500 tied sigmoid, masking corruption {_p:g}",
        "DeepLearningTutorials dA.py: lr 0.1, batch 20, 15 epochs, cross-entropy summed over pixels; "
        "filters_corruption_30.png shows stroke detectors (0: 'da-0', blob-like)",
        mnist_dlt, None, epochs=15, batch_size=20, lr=0.1, classifier=False, shuffle=False, drop_last=True,
        run=_run_da, extra={"corruption": _p}))
