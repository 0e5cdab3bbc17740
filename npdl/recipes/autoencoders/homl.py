"""Hands-On ML (1st ed.), chapter 15, autoencoders: ``homl-ae``, ``homl-ae-1at1``,
``homl-ae-gaussian``, ``homl-ae-dropout``, ``homl-pretrain``.

The tied stacked autoencoder 784-300-150-300-784 (ELU, He init, L2 1e-4 on weights, Adam,
MSE) trained all at once or one autoencoder at a time, the untied ReLU denoising
autoencoders (Gaussian or dropout noise), and unsupervised pretraining before a classifier
on few labels. With ``out``: ``reconstructions.png``, ``filters_layer0.png``, ``curves.png``.
``homl-ae`` and the denoising ones resume like any recipe; the multi-phase ``homl-ae-1at1``
and ``homl-pretrain`` write ``history.csv`` and ``model.npz`` of their last phase and do not
resume.
"""

from __future__ import annotations

import os
import time

from ... import backend
from ...distributed import attach_if
from ...layers import Dense
from ...layers.autoencoder import TiedAutoencoder
from ...layers.stacked_autoencoder import StackedTiedAutoencoder
from ...layers.noise import DropoutNoise, GaussianNoise
from ...models import Sequential
from ...optim import Adam
from ..base import Recipe, register
from ..classic import mnist_keras
from ..runner import RunError
from .common import encode_batched, finish, fit_on_inputs, picture, reconstruction_cost, reconstruction_picture


HOML_SIZES = (784, 300, 150)
HOML_L2, HOML_EPOCHS, HOML_BATCH, HOML_LR = 1e-4, 5, 150, 0.01


def _homl_split(data):
    """Hands-On ML trains on 55,000 images and validates on 5,000: the last 5,000 of the training set."""
    x, y = data["train"]
    n_valid = min(5000, len(x) // 10) if "valid" not in data else 0
    if "valid" in data:
        return (x, y), data["valid"]
    return (x[:len(x) - n_valid], y[:len(y) - n_valid]), (x[len(x) - n_valid:], y[len(y) - n_valid:])


def _homl_stacked(options, device, rng, sizes=HOML_SIZES):
    return StackedTiedAutoencoder(sizes, "elu", "elu", "linear", init="he_normal", dtype=options["dtype"],
                                  device=device, rng=rng, name="stacked")


def _homl_pictures(out, model, stacked, x_test, corrupt=None):
    pictures = [reconstruction_picture(out, model if corrupt is None else Sequential([stacked]), x_test, corrupt)]
    if stacked is not None:
        pictures.append(picture("tile_images", backend.to_numpy(stacked.params["W0"])[:, :100].T,
                                os.path.join(out, "filters_layer0.png"), title="first-layer weights"))
    return pictures


def _run_homl_ae(recipe, options, device, data, out, resume, verbose):
    """The tied stacked autoencoder trained all at once: 784-300-150-300-784 ELU, Adam, MSE, L2 on weights."""
    started = time.perf_counter()
    rng = backend.Generator(device, options["seed"])
    stacked = _homl_stacked(options, device, rng)
    model = Sequential([stacked], name=recipe.name)
    model.compile("mse", Adam(lr=options["lr"]), l2=HOML_L2)
    (x_train, _), _ = _homl_split(data)
    history, resumed = fit_on_inputs(recipe, options, device, model, device.asarray(x_train), None, out, resume,
                                     verbose, shuffle=True)
    pictures = _homl_pictures(out, model, stacked, device.asarray(data["test"][0])) if out else []
    return finish(recipe, options, device, model, history, started, out, {}, data["test"][0], resumed,
                  pictures=pictures)


def _run_homl_ae_1at1(recipe, options, device, data, out, resume, verbose):
    """One autoencoder at a time: phase 1 the outer pair (784-300-784) on the images, phase 2 the inner
    pair (300-150-300) on the frozen outer codes; then the stacked model holds both."""
    if resume:
        raise RunError(f"npdl train {recipe.name} does not resume (two phases); start it again")
    started = time.perf_counter()
    rng = backend.Generator(device, options["seed"])
    (x_train, _), _ = _homl_split(data)
    x = device.asarray(x_train)
    outer = TiedAutoencoder(784, 300, "elu", "linear", init="he_normal", dtype=options["dtype"], device=device,
                            rng=rng, name="outer")
    inner = TiedAutoencoder(300, 150, "elu", "elu", init="he_normal", dtype=options["dtype"], device=device,
                            rng=rng, name="inner")
    phases = []
    fit_rng = backend.Generator(device, options["seed"] + 1)
    codes = None
    for phase, (ae, inputs) in enumerate(((outer, x), (inner, None))):
        if inputs is None:
            inputs = codes = encode_batched(outer, x)
        m = Sequential([ae], name=f"{recipe.name}-phase{phase + 1}")
        m.compile("mse", Adam(lr=options["lr"]), l2=HOML_L2)
        attach_if(m, options)
        h = m.fit(inputs, inputs, epochs=options["epochs"], batch_size=options["batch_size"], verbose=verbose,
                  rng=fit_rng, diagnostics=options.get("diagnostics"))
        phases.append({"phase": phase + 1, "loss": list(h.loss)})
    del codes
    stacked = _homl_stacked(options, device, rng)
    for k, ae in enumerate((outer, inner)):
        stacked.params[f"W{k}"][...] = ae.params["W"]
        stacked.params[f"b{k}"][...] = ae.params["b"]
        stacked.params[f"c{k}"][...] = ae.params["b_prime"]
    model = Sequential([stacked], name=recipe.name)
    model.compile("mse", Adam(lr=options["lr"]), l2=HOML_L2)
    attach_if(model, options)  # scored sharded
    extra = {"phases": phases, "train_reconstruction_cost": reconstruction_cost(model, x)}
    pictures = _homl_pictures(out, model, stacked, device.asarray(data["test"][0])) if out else []
    result = finish(recipe, options, device, model, h, started, out, extra, data["test"][0], pictures=pictures)
    # the reconstruction cost of the whole stack (phase 2's loss is on the codes)
    result.train_loss = result.extra["reconstruction_cost"] = extra["train_reconstruction_cost"]
    return result


def _run_homl_denoising(recipe, options, device, data, out, resume, verbose):
    """Hands-On ML's denoising autoencoders: 784-300-150-300-784 ReLU (untied), Gaussian noise (sigma 1)
    or dropout (rate 0.3) on the input in training only, Adam 0.01, MSE against the clean input."""
    started = time.perf_counter()
    rng = backend.Generator(device, options["seed"])
    noise_rng = backend.Generator(device, options["seed"] + 3)
    noise = (GaussianNoise(1.0, rng=noise_rng) if recipe.extra["noise"] == "gaussian"
             else DropoutNoise(0.7, rng=noise_rng))
    layers = [noise]
    widths = (784, 300, 150, 300, 784)
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(Dense(a, b, init="he_normal", dtype=options["dtype"], device=device, rng=rng,
                            activation="relu" if i < len(widths) - 2 else None))
    model = Sequential(layers, name=recipe.name)
    model.compile("mse", Adam(lr=options["lr"]))
    (x_train, _), _ = _homl_split(data)
    history, resumed = fit_on_inputs(recipe, options, device, model, device.asarray(x_train), None, out, resume,
                                     verbose, shuffle=True)
    pictures = [reconstruction_picture(out, Sequential(layers[1:]), device.asarray(data["test"][0]), noise)] \
        if out else []
    return finish(recipe, options, device, model, history, started, out, {"noise": recipe.extra["noise"]},
                  data["test"][0], resumed, pictures=pictures)


def _run_homl_pretrain(recipe, options, device, data, out, resume, verbose):
    """Unsupervised pretraining, then a classifier on few labels (500), three ways.

    The tied stacked autoencoder is trained on all training images without labels
    (``--epochs`` of it, default 5); then 784-300-150-10 ELU classifiers (Adam, softmax
    cross-entropy, L2 1e-4) are trained for ``classifier_epochs`` (40) on the first
    ``n_labeled`` (500) labelled images: (a) on the pretrained hidden layers frozen (only the
    softmax layer learns), (b) on the pretrained layers fine-tuned, (c) from scratch. The
    result's valid/test error are (b)'s; ``extra["classifiers"]`` holds all three.
    """
    if resume:
        raise RunError(f"npdl train {recipe.name} does not resume (several phases); start it again")
    started = time.perf_counter()
    rng = backend.Generator(device, options["seed"])
    (x_train, y_train), (x_valid, y_valid) = _homl_split(data)
    n_labeled = int(recipe.extra.get("n_labeled", 500))
    stacked = _homl_stacked(options, device, rng)
    ae_model = Sequential([stacked], name=f"{recipe.name}-autoencoder")
    ae_model.compile("mse", Adam(lr=options["lr"]), l2=HOML_L2)
    attach_if(ae_model, options)
    ae_hist = ae_model.fit(device.asarray(x_train), device.asarray(x_train), epochs=options["epochs"],
                           batch_size=options["batch_size"], verbose=verbose,
                           rng=backend.Generator(device, options["seed"] + 1), diagnostics=options.get("diagnostics"))
    xl, yl = x_train[:n_labeled], y_train[:n_labeled]
    classifiers = {}
    chosen = None
    for variant in ("frozen", "finetuned", "scratch"):
        crng = backend.Generator(device, options["seed"] + 5)  # the same top layer (and scratch layers) each time
        if variant == "scratch":
            hidden = []
            for a, b in zip(HOML_SIZES[:-1], HOML_SIZES[1:]):
                hidden.append(Dense(a, b, init="he_normal", dtype=options["dtype"], device=device, rng=crng,
                                    activation="elu"))
        else:
            hidden = stacked.encoder_layers()
        top = Dense(HOML_SIZES[-1], 10, init="he_normal", dtype=options["dtype"], device=device, rng=crng)
        clf = Sequential(hidden + [top], name=f"{recipe.name}-{variant}")
        if variant == "frozen":
            for layer in hidden:
                layer.trainable = False
        clf.compile("softmax_cross_entropy", Adam(lr=options["lr"]), metrics=["error"], l2=HOML_L2)
        attach_if(clf, options)
        h = clf.fit(xl, yl, epochs=int(recipe.extra.get("classifier_epochs", 40)),
                    batch_size=min(options["batch_size"], n_labeled), verbose=0,
                    rng=backend.Generator(device, options["seed"] + 6), diagnostics=options.get("diagnostics"))
        valid_error = clf.evaluate(x_valid, y_valid, batch_size=1000, metrics=["error"])["error"]
        test_error = clf.evaluate(*data["test"], batch_size=1000, metrics=["error"])["error"]
        classifiers[variant] = {"valid_error": valid_error, "test_error": test_error, "train_loss": h.loss[-1]}
        if verbose:
            print(f"{variant:9s} classifier on {n_labeled} labels: validation error {100 * valid_error:.2f}%, "
                  f"test error {100 * test_error:.2f}%")
        if variant == "finetuned":
            chosen = (clf, h)
    extra = {"classifiers": classifiers, "n_labeled": n_labeled, "autoencoder_loss": list(ae_hist.loss)}
    pictures = [reconstruction_picture(out, ae_model, device.asarray(data["test"][0]))] if out else []
    clf, h = chosen
    result = finish(recipe, options, device, clf, h, started, out, extra, None, None,
                    classifiers["finetuned"]["valid_error"], classifiers["finetuned"]["test_error"], pictures)
    result.test_loss = clf.evaluate(*data["test"], batch_size=1000)["loss"]
    return result


_HOML = "Hands-On ML ch. 15 (1st ed.)"
register(Recipe(
    "homl-ae", "Hands-On ML tied stacked autoencoder 784-300-150-300-784 ELU, trained all at once",
    f"{_HOML}: He init, L2 1e-4 on weights, Adam lr 0.01, MSE, batch 150, 5 epochs",
    mnist_keras, None, epochs=HOML_EPOCHS, batch_size=HOML_BATCH, lr=HOML_LR, classifier=False, run=_run_homl_ae))
register(Recipe(
    "homl-ae-1at1", "Hands-On ML tied stacked autoencoder, one autoencoder at a time",
    f"{_HOML}: phase 1 784-300-784 on the images, phase 2 300-150-300 on the frozen codes, 4 epochs each",
    mnist_keras, None, epochs=4, batch_size=HOML_BATCH, lr=HOML_LR, classifier=False, run=_run_homl_ae_1at1))
for _noise in ("gaussian", "dropout"):
    register(Recipe(
        f"homl-ae-{_noise}", f"Hands-On ML denoising autoencoder 784-300-150-300-784 ReLU, {_noise} noise",
        f"{_HOML}: {'Gaussian noise sigma 1.0' if _noise == 'gaussian' else 'dropout rate 0.3'} on the input, "
        "Adam lr 0.01, MSE, batch 150, 10 epochs",
        mnist_keras, None, epochs=10, batch_size=HOML_BATCH, lr=HOML_LR, classifier=False, run=_run_homl_denoising,
        extra={"noise": _noise}))
register(Recipe(
    "homl-pretrain",
    "Hands-On ML unsupervised pretraining, then a classifier on 500 labels (frozen/fine-tuned/scratch)",
    f"{_HOML}: pretrained layers help most when labels are few; valid/test error of the fine-tuned classifier",
    mnist_keras, None, epochs=HOML_EPOCHS, batch_size=HOML_BATCH, lr=HOML_LR, run=_run_homl_pretrain,
    extra={"n_labeled": 500, "classifier_epochs": 40}))
