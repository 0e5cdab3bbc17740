"""The Keras blog's 2-D autoencoder: ``autoencoder2d``.

784-128-64-10-2 ReLU with a linear 2-D code, mirrored to 784 with a tanh output, inputs in
[-0.5, 0.5], Adam, MSE, batch 256, 20 epochs. With ``out``: ``codes.png`` (the 2-D codes of
the test set coloured by label, with a colour bar), ``reconstructions.png``, ``curves.png``.
Resumes like any recipe.
"""

from __future__ import annotations

import os
import time

from ... import backend
from ...layers import Dense
from ...models import Sequential
from ...optim import Adam
from ..base import Recipe, register
from ..classic import mnist_keras
from .common import finish, fit_on_inputs, picture, reconstruction_cost, reconstruction_picture


AE2D_ENCODER = (784, 128, 64, 10, 2)


def _run_autoencoder2d(recipe, options, device, data, out, resume, verbose):
    """784-128-64-10-2 ReLU with a linear code, mirrored to 784 with a tanh output; inputs in
    [-0.5, 0.5]; Adam (Keras default lr 0.001), MSE, batch 256, 20 epochs on the 60,000 images."""
    started = time.perf_counter()
    rng = backend.Generator(device, options["seed"])
    widths = AE2D_ENCODER + AE2D_ENCODER[-2::-1]
    layers, n_encoder = [], None
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        code = b == AE2D_ENCODER[-1]  # the linear code: no activation
        layers.append(Dense(a, b, dtype=options["dtype"], device=device, rng=rng,
                            activation=None if code else "tanh" if i == len(widths) - 2 else "relu"))
        if code:
            n_encoder = len(layers)
    model = Sequential(layers, name=recipe.name)
    model.compile("mse", Adam(lr=options["lr"]))
    x_train = device.asarray(data["train"][0]) - 0.5
    x_test = device.asarray(data["test"][0]) - 0.5
    history, resumed = fit_on_inputs(recipe, options, device, model, x_train, None, out, resume, verbose,
                                     shuffle=True)
    pictures = []
    if out:
        codes = Sequential(layers[:n_encoder]).predict(x_test, batch_size=1000)
        pictures.append(picture("code_scatter", backend.to_numpy(codes), data["test"][1],
                                os.path.join(out, "codes.png"), title="2-D codes of the test set"))
        pictures.append(reconstruction_picture(out, model, x_test, shift=0.5))
    result = finish(recipe, options, device, model, history, started, out, {}, None, resumed, pictures=pictures)
    result.test_loss = result.extra["test_reconstruction_cost"] = reconstruction_cost(model, x_test)
    return result


register(Recipe(
    "autoencoder2d", "Keras 2-D autoencoder, 784-128-64-10-2 ReLU (linear code), mirrored, tanh output",
    "Keras tutorial: inputs in [-0.5, 0.5], Adam, MSE, batch 256, 20 epochs on 60,000 images; final loss 0.0391",
    mnist_keras, None, epochs=20, batch_size=256, lr=0.001, classifier=False, run=_run_autoencoder2d))
