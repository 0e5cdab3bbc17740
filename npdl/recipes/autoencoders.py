"""Autoencoder recipes: the Theano dA and SdA, Hands-On ML chapter 15, the Keras 2-D autoencoder.

Every recipe here trains on inputs as their own targets (``fit(x, x)``) or in several
phases (pretraining, then a classifier), so each has its own ``run`` (see
:class:`npdl.recipes.Recipe`). Results: the reconstruction cost is ``train_loss`` (and
``extra["reconstruction_cost"]``), the clean test reconstruction cost ``test_loss``; the
SdA and the pretrained classifiers report ``valid_error`` / ``test_error``. With ``out``,
pictures go there as PNG files when matplotlib is installed (skipped otherwise):

* ``da``, ``da-0``: ``filters_corruption_30.png`` / ``filters_corruption_0.png`` (the
  first 100 filters, as the Theano tutorial draws them), ``reconstructions.png`` (original,
  corrupted, reconstructed test digits), ``max_activation.png`` (for hidden units 0..9, the
  input in [0, 1] that most excites the unit, found by gradient ascent through
  ``Sequential.backward(..., input_grad=True)``), ``curves.png``;
* ``sda``: ``filters_layer0.png``, ``pretraining.png`` (cost per epoch, per layer), ``curves.png``;
* ``homl-*``: ``reconstructions.png``, ``filters_layer0.png``, ``curves.png``;
* ``autoencoder2d``: ``codes.png`` (the 2-D codes of the test set coloured by label, with a
  colour bar), ``reconstructions.png``, ``curves.png``.

Single-phase recipes write ``history.csv``, ``checkpoint.npz`` and ``model.npz`` and resume
like any recipe. The ``sda`` (the long one: over an hour at batch 1) also resumes, from any
epoch of either phase (see :func:`_run_sda`). The short multi-phase ones (``homl-ae-1at1``,
``homl-pretrain``) write ``history.csv`` and ``model.npz`` of their last phase and do not resume.
"""

from __future__ import annotations

import os
import time

from .. import backend
from ..layers import Dense
from ..layers.autoencoder import StackedTiedAutoencoder, TiedAutoencoder
from ..layers.noise import DropoutNoise, GaussianNoise, MaskingNoise
from ..models import Sequential
from ..optim import SGD, Adam
from ..training import Callback, PatienceEarlyStopping, restore, save_checkpoint
from .base import Recipe, register
from .classic import mnist_dlt, mnist_keras
from .runner import (CHECKPOINT, CURVES, HISTORY, MODEL, EpochCheckpoint, RunError, RunResult, _resume,
                     check_checkpoint)


# ------------------------------------------------------------------------------ helpers

def _picture(fn, *args, **kw):
    """Call a :mod:`npdl.plots` function; None (skipped) without matplotlib."""
    try:
        from .. import plots
        return getattr(plots, fn)(*args, **kw)
    except ImportError:
        return None


def _numpy(x):
    return backend.to_numpy(x)


def _recon_cost(model, x, batch_size=1000) -> float:
    """The model's loss on clean inputs (inference mode: no corruption) against themselves."""
    return model.evaluate(x, x, batch_size=batch_size)["loss"]


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


def _fit_single(recipe, options, device, model, x_train, x_valid, out, resume, verbose, shuffle, drop_last=False):
    """``model.fit(x, x)`` with the runner's checkpoints and resume; returns the History."""
    fit_rng = backend.Generator(device, options["seed"] + 1)
    callbacks = []
    if out:
        callbacks.append(EpochCheckpoint(out, recipe.name, {k: v for k, v in options.items() if k != "data_dir"}))
    initial_epoch, history, resumed = 0, None, None
    if resume:
        ck = _resume(model, out, recipe, options, None, fit_rng)
        initial_epoch, history, resumed = ck["epoch"], ck["history"], ck["epoch"]
    validation = None if x_valid is None else (x_valid, x_valid)
    history = model.fit(x_train, x_train, epochs=options["epochs"], batch_size=options["batch_size"],
                        validation_data=validation, callbacks=callbacks, shuffle=shuffle, verbose=verbose,
                        initial_epoch=min(initial_epoch, options["epochs"]), rng=fit_rng, history=history,
                        validation_batch_size=1000, drop_last=drop_last)
    return history, resumed


def _finish(recipe, options, device, model, history, started, out, result_extra, test_x=None, resumed=None,
            valid_error=None, test_error=None, pictures=()):
    train_loss = history.loss[-1] if len(history) else None
    test_loss = None if test_x is None else _recon_cost(model, test_x)
    result = RunResult(model=recipe.name, device=device.name, epochs=len(history),
                       seconds=time.perf_counter() - started, train_loss=train_loss, valid_error=valid_error,
                       test_error=test_error, test_loss=test_loss, resumed_from_epoch=resumed, out=out)
    result.extra.update({"reconstruction_cost": train_loss, "test_reconstruction_cost": test_loss}
                        if not recipe.classifier else {})
    result.extra.update(result_extra)
    if out:
        save_checkpoint(os.path.join(out, MODEL), model, model.optimizer, None, len(history), history,
                        {"recipe": recipe.name, "result": {k: v for k, v in result.as_dict().items()
                                                           if k != "extra"}})
        history.to_csv(os.path.join(out, HISTORY))
        written = [_picture("training_curves", history, os.path.join(out, CURVES))]
        written += [p for p in pictures]
        result.extra["pictures"] = [p for p in written if p]
        result.extra["curves"] = written[0]
    return result


def _device_x(device, x):
    return device.asarray(x)


def _reconstruction_picture(out, model, x_clean, x_corrupt_layer=None, n=10, shape=(28, 28), shift=0.0, name=None,
                            to_image=None):
    """original / corrupted / reconstructed rows for the first ``n`` examples."""
    xs = x_clean[:n]
    rows = [("original", _numpy(xs) + shift)]
    if x_corrupt_layer is not None:
        corrupted = x_corrupt_layer(xs, training=True)
        rows.append(("corrupted", _numpy(corrupted) + shift))
        recon = model.forward(corrupted)
    else:
        recon = model.forward(xs)
    recon = _numpy(to_image(recon) if to_image is not None else recon) + shift
    rows.append(("reconstructed", recon))
    model.clear_caches()
    return _picture("image_rows", rows, os.path.join(out, name or "reconstructions.png"), image_shape=shape)


# -------------------------------------------------------------------------- Theano dA

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
    x_train = _device_x(device, data["train"][0])
    history, resumed = _fit_single(recipe, options, device, model, x_train, None, out, resume, verbose,
                                   shuffle=False, drop_last=True)
    pictures = []
    if out:
        W = _numpy(ae.params["W"])
        pictures.append(_picture("tile_images", W[:, :100].T, os.path.join(out, f"filters_corruption_{round(p * 100)}.png"),
                                 title=f"dA filters, corruption {p:g}"))
        pictures.append(_reconstruction_picture(out, Sequential([ae]), _device_x(device, data["test"][0]),
                                                noise if p > 0 else None))
        best = [_numpy(maximize_activation(ae.encoder_layers(), unit, 784, device)) for unit in range(10)]
        pictures.append(_picture("tile_images", [b[0] for b in best], os.path.join(out, "max_activation.png"),
                                 title="inputs that most excite hidden units 0-9"))
    return _finish(recipe, options, device, model, history, started, out, {"corruption": p}, data["test"][0],
                   resumed, pictures=pictures)


for _name, _p in (("da", 0.3), ("da-0", 0.0)):
    register(Recipe(
        _name, f"Theano denoising autoencoder, 784-500 tied sigmoid, masking corruption {_p:g}",
        "DeepLearningTutorials dA.py: lr 0.1, batch 20, 15 epochs, cross-entropy summed over pixels; "
        "filters_corruption_30.png shows stroke detectors (0: 'da-0', blob-like)",
        mnist_dlt, None, epochs=15, batch_size=20, lr=0.1, classifier=False, shuffle=False, drop_last=True,
        run=_run_da, extra={"corruption": _p}))


# -------------------------------------------------------------------------- Theano SdA

SDA_HIDDEN = (1000, 1000, 1000)
SDA_CORRUPTION = (0.1, 0.2, 0.3)
SDA_PRETRAIN_EPOCHS, SDA_PRETRAIN_LR = 15, 0.001


def _pretrain_path(out, k):
    return os.path.join(out, f"pretrain_{k}.npz")


class _PretrainCheckpoint(Callback):
    """After every pretraining epoch of layer ``k``: ``pretrain_<k>.npz`` (the denoising autoencoder with its
    noise generator, the epochs done, the cost history and the seconds spent so far on this layer)."""

    def __init__(self, path, k, options, pre_epochs, prior_seconds):
        super().__init__()
        self.path, self.k, self.options, self.pre_epochs = path, k, options, pre_epochs
        self.prior_seconds, self.started = prior_seconds, time.perf_counter()

    def seconds(self) -> float:
        return self.prior_seconds + time.perf_counter() - self.started

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        if not model.parameters_finite():
            return
        save_checkpoint(self.path, model, model.optimizer, None, epoch + 1, model.history,
                        {"recipe": "sda", "phase": "pretrain", "layer": self.k, "options": self.options,
                         "pretrain_epochs": self.pre_epochs, "seconds": self.seconds()})


def _run_sda(recipe, options, device, data, out, resume, verbose):
    """``SdA.py``: greedy layer-wise dA pretraining on cached codes, then finetuning with the patience rule.

    ``--epochs N`` caps both phases: min(N, 15) pretraining epochs per layer, at most N
    finetuning epochs (default 1000, i.e. until patience runs out). ``--lr`` is the
    finetuning rate (0.1); pretraining uses 0.001. ``--batch-size`` applies to both.

    With ``out`` every epoch of either phase leaves a resume point: ``pretrain_<k>.npz`` for
    layer ``k``'s pretraining, ``checkpoint.npz`` (+ ``best.npz``) for the finetuning.
    ``--resume`` skips finished layers (their weights come back from their files, and the
    codes of the next layer are recomputed from them, exactly), continues an unfinished one
    from its last epoch, and continues the finetuning where it stopped, patience state
    included; on the CPU the result is bit-identical to an uninterrupted run.
    """
    started = time.perf_counter()
    hidden = tuple(recipe.extra.get("hidden", SDA_HIDDEN))
    corruption = tuple(recipe.extra.get("corruption", SDA_CORRUPTION))
    bs, dtype = options["batch_size"], options["dtype"]
    pre_epochs = min(options["epochs"], recipe.extra.get("pretrain_epochs", SDA_PRETRAIN_EPOCHS))
    saved_options = {k: v for k, v in options.items() if k != "data_dir"}
    finetune_ck = None
    if resume:
        path = os.path.join(out, CHECKPOINT)
        if os.path.exists(path):
            finetune_ck = check_checkpoint(path, recipe, options)
        elif not os.path.exists(_pretrain_path(out, 0)):
            raise RunError(f"--resume: no checkpoint in {out} (neither {CHECKPOINT} nor pretrain_0.npz); start "
                           "without --resume (or point --out at the folder of the run to continue)")
    rng = backend.Generator(device, options["seed"])
    x_train = _device_x(device, data["train"][0])
    n_in = int(x_train.shape[1])
    sizes = (n_in,) + hidden
    autoencoders, pretraining, resumed_from = [], [], None
    codes = x_train
    for k, (a, b, c) in enumerate(zip(sizes[:-1], sizes[1:], corruption)):
        ae = TiedAutoencoder(a, b, "sigmoid", "sigmoid", dtype=dtype, device=device, rng=rng, name=f"dA{k}")
        dae = Sequential([MaskingNoise(c, rng=backend.Generator(device, options["seed"] + 10 + k)), ae],
                         name=f"sda-pretrain-{k}")
        dae.compile("reconstruction_cross_entropy", SGD(lr=recipe.extra.get("pretrain_lr", SDA_PRETRAIN_LR)))
        initial, history, prior_seconds = 0, None, 0.0
        path = _pretrain_path(out, k) if out else None
        if finetune_ck is not None and not os.path.exists(path):
            raise RunError(f"--resume: {out} holds a finetuning checkpoint but no {os.path.basename(path)}; "
                           "start again without --resume")
        if resume and os.path.exists(path):
            ck = check_checkpoint(path, recipe, options)
            if (ck["extra"].get("layer"), ck["extra"].get("pretrain_epochs")) != (k, pre_epochs):
                raise RunError(f"--resume: {path} was written for layer {ck['extra'].get('layer')} with "
                               f"{ck['extra'].get('pretrain_epochs')} pretraining epochs per layer; this run has "
                               f"{pre_epochs} (resume with the same --epochs)")
            restore(dae, dae.optimizer, None, ck)
            initial, history, prior_seconds = ck["epoch"], ck["history"], float(ck["extra"].get("seconds", 0.0))
            if initial < pre_epochs and finetune_ck is None and resumed_from is None:
                resumed_from = {"phase": "pretrain", "layer": k, "epoch": initial}
        if finetune_ck is not None and initial < pre_epochs:
            raise RunError(f"--resume: {out} holds a finetuning checkpoint but layer {k}'s pretraining is not "
                           f"complete there ({path}); start again without --resume")
        layer_started = time.perf_counter()
        if initial < pre_epochs:
            saver = _PretrainCheckpoint(path, k, saved_options, pre_epochs, prior_seconds) if out else None
            history = dae.fit(codes, codes, epochs=pre_epochs, batch_size=bs, shuffle=False, verbose=verbose,
                              drop_last=True, initial_epoch=initial, history=history,
                              callbacks=[saver] if saver else [])
        seconds = prior_seconds + time.perf_counter() - layer_started
        pretraining.append({"layer": k, "corruption": c, "cost": list(history.loss), "seconds": seconds})
        if verbose:
            print(f"pre-training layer {k}, corruption {c:g}: costs {', '.join(f'{v:.3f}' for v in history.loss)} "
                  f"({seconds:.1f} s)")
        autoencoders.append(ae)
        if k < len(hidden) - 1 and finetune_ck is None:
            # the codes of this (now frozen) layer, computed once from the clean input
            codes = backend.device_of(codes).asarray(_encode_batched(ae, codes))
    pre_seconds = sum(p["seconds"] for p in pretraining)
    if resume and resumed_from is None and finetune_ck is None:  # every layer was done, no finetuning epoch yet
        resumed_from = {"phase": "finetune", "epoch": 0}

    layers = []
    for ae in autoencoders:
        layers += ae.encoder_layers()  # the pretrained arrays themselves (share_params)
    layers.append(Dense(hidden[-1], int(recipe.extra.get("classes", 10)), init="zeros", dtype=dtype, device=device,
                        rng=rng, name="logreg"))
    mlp = Sequential(layers, name=recipe.name)
    mlp.compile("softmax_cross_entropy", SGD(lr=options["lr"]), metrics=["error"])
    n_train_batches = max(1, int(x_train.shape[0]) // bs)
    n_valid = len(data["valid"][0])
    patience = PatienceEarlyStopping(data["valid"], data.get("test"), patience=10 * n_train_batches,
                                     restore_best=True, batch_size=bs if n_valid % bs else 1000, drop_last=True)
    fit_rng = backend.Generator(device, options["seed"] + 1)
    initial, history, prior_seconds = 0, None, 0.0
    if finetune_ck is not None:  # restores the shared arrays in place, so the autoencoders see them too
        ck = _resume(mlp, out, recipe, options, patience, fit_rng)
        initial, history = ck["epoch"], ck["history"]
        prior_seconds = float(ck["extra"].get("finetune_seconds", 0.0))
        resumed_from = {"phase": "finetune", "epoch": initial}
    fine_started = time.perf_counter()
    callbacks = [patience]
    if out:
        callbacks.append(EpochCheckpoint(out, recipe.name, saved_options, patience, extra_fn=lambda: {
            "phase": "finetune", "finetune_seconds": prior_seconds + time.perf_counter() - fine_started}))
    history = mlp.fit(x_train, data["train"][1], epochs=options["epochs"], batch_size=bs, callbacks=callbacks,
                      shuffle=False, verbose=verbose, rng=fit_rng, drop_last=True,
                      initial_epoch=min(initial, options["epochs"]), history=history)
    fine_seconds = prior_seconds + time.perf_counter() - fine_started
    extra = {"pretraining": pretraining, "pretrain_seconds": pre_seconds, "finetune_seconds": fine_seconds,
             "pretrain_epochs": pre_epochs, "finetune_epochs": len(history),
             "validations": [list(v) for v in patience.validations], "resumed_from": resumed_from}
    pictures = []
    if out:
        W = _numpy(autoencoders[0].params["W"])
        side = int(round(n_in ** 0.5))
        if side * side == n_in:
            pictures.append(_picture("tile_images", W[:, :100].T, os.path.join(out, "filters_layer0.png"),
                                     image_shape=(side, side), title="SdA first-layer filters (after finetuning)"))
        pictures.append(_picture("line_curves", {f"layer {p['layer']} (corruption {p['corruption']:g})": p["cost"]
                                                 for p in pretraining},
                                 os.path.join(out, "pretraining.png"), ylabel="reconstruction cost",
                                 title="SdA pretraining"))
    result = _finish(recipe, options, device, mlp, history, started, out, extra, None,
                     None if resumed_from is None else resumed_from["epoch"] if resumed_from["phase"] == "finetune"
                     else 0,
                     patience.best_validation if patience.best_iteration is not None else None,
                     patience.test_score, pictures)
    if patience.best_iteration is not None:
        result.best_epoch = patience.best_iteration // patience.n_train_batches + 1
    result.stopped_early = patience.stopped_iteration is not None
    result.test_loss = mlp.evaluate(*data["test"], batch_size=1000)["loss"]
    return result


def _encode_batched(ae, x, batch_size=1000):
    xp = backend.namespace(x)
    return xp.concat([ae.encode(x[i:i + batch_size]) for i in range(0, int(x.shape[0]), batch_size)], axis=0)


register(Recipe(
    "sda", "Theano stacked denoising autoencoder, 784-1000-1000-1000-10 sigmoid, corruption 0.1/0.2/0.3",
    "DeepLearningTutorials SdA.py: pretraining 15 epochs per layer, lr 0.001, batch 1; finetuning lr 0.1, "
    "patience 10 x n_train_batches; best validation 1.28%, test 1.30% (585 + 444 min on one Xeon thread). "
    "--epochs caps both phases (pretraining at most 15)",
    mnist_dlt, None, epochs=1000, batch_size=1, lr=0.1, shuffle=False, drop_last=True, run=_run_sda))


# ------------------------------------------------------------------ Hands-On ML, chapter 15

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
    pictures = [_reconstruction_picture(out, model if corrupt is None else Sequential([stacked]), x_test, corrupt)]
    if stacked is not None:
        pictures.append(_picture("tile_images", _numpy(stacked.params["W0"])[:, :100].T,
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
    history, resumed = _fit_single(recipe, options, device, model, _device_x(device, x_train), None, out, resume,
                                   verbose, shuffle=True)
    pictures = _homl_pictures(out, model, stacked, _device_x(device, data["test"][0])) if out else []
    return _finish(recipe, options, device, model, history, started, out, {}, data["test"][0], resumed,
                   pictures=pictures)


def _run_homl_ae_1at1(recipe, options, device, data, out, resume, verbose):
    """One autoencoder at a time: phase 1 the outer pair (784-300-784) on the images, phase 2 the inner
    pair (300-150-300) on the frozen outer codes; then the stacked model holds both."""
    if resume:
        raise RunError(f"npdl train {recipe.name} does not resume (two phases); start it again")
    started = time.perf_counter()
    rng = backend.Generator(device, options["seed"])
    (x_train, _), _ = _homl_split(data)
    x = _device_x(device, x_train)
    outer = TiedAutoencoder(784, 300, "elu", "linear", init="he_normal", dtype=options["dtype"], device=device,
                            rng=rng, name="outer")
    inner = TiedAutoencoder(300, 150, "elu", "elu", init="he_normal", dtype=options["dtype"], device=device,
                            rng=rng, name="inner")
    phases = []
    fit_rng = backend.Generator(device, options["seed"] + 1)
    codes = None
    for phase, (ae, inputs) in enumerate(((outer, x), (inner, None))):
        if inputs is None:
            inputs = codes = _encode_batched(outer, x)
        m = Sequential([ae], name=f"{recipe.name}-phase{phase + 1}")
        m.compile("mse", Adam(lr=options["lr"]), l2=HOML_L2)
        h = m.fit(inputs, inputs, epochs=options["epochs"], batch_size=options["batch_size"], verbose=verbose,
                  rng=fit_rng)
        phases.append({"phase": phase + 1, "loss": list(h.loss)})
    del codes
    stacked = _homl_stacked(options, device, rng)
    for k, ae in enumerate((outer, inner)):
        stacked.params[f"W{k}"][...] = ae.params["W"]
        stacked.params[f"b{k}"][...] = ae.params["b"]
        stacked.params[f"c{k}"][...] = ae.params["b_prime"]
    model = Sequential([stacked], name=recipe.name)
    model.compile("mse", Adam(lr=options["lr"]), l2=HOML_L2)
    extra = {"phases": phases, "train_reconstruction_cost": _recon_cost(model, x)}
    pictures = _homl_pictures(out, model, stacked, _device_x(device, data["test"][0])) if out else []
    result = _finish(recipe, options, device, model, h, started, out, extra, data["test"][0], pictures=pictures)
    # the reconstruction cost of the whole stack (phase 2's loss is on the codes)
    result.train_loss = result.extra["reconstruction_cost"] = extra["train_reconstruction_cost"]
    return result


def _run_homl_denoising(recipe, options, device, data, out, resume, verbose):
    """Hands-On ML's denoising autoencoders: 784-300-150-300-784 ReLU (untied), Gaussian noise (sigma 1)
    or dropout (rate 0.3) on the input in training only, Adam 0.01, MSE against the clean input."""
    started = time.perf_counter()
    rng = backend.Generator(device, options["seed"])
    noise_rng = backend.Generator(device, options["seed"] + 3)
    noise = GaussianNoise(1.0, rng=noise_rng) if recipe.extra["noise"] == "gaussian" else DropoutNoise(0.7, rng=noise_rng)
    layers = [noise]
    widths = (784, 300, 150, 300, 784)
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(Dense(a, b, init="he_normal", dtype=options["dtype"], device=device, rng=rng,
                            activation="relu" if i < len(widths) - 2 else None))
    model = Sequential(layers, name=recipe.name)
    model.compile("mse", Adam(lr=options["lr"]))
    (x_train, _), _ = _homl_split(data)
    history, resumed = _fit_single(recipe, options, device, model, _device_x(device, x_train), None, out, resume,
                                   verbose, shuffle=True)
    pictures = [_reconstruction_picture(out, Sequential(layers[1:]), _device_x(device, data["test"][0]), noise)] \
        if out else []
    return _finish(recipe, options, device, model, history, started, out, {"noise": recipe.extra["noise"]},
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
    ae_hist = ae_model.fit(_device_x(device, x_train), _device_x(device, x_train), epochs=options["epochs"],
                           batch_size=options["batch_size"], verbose=verbose,
                           rng=backend.Generator(device, options["seed"] + 1))
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
        h = clf.fit(xl, yl, epochs=int(recipe.extra.get("classifier_epochs", 40)),
                    batch_size=min(options["batch_size"], n_labeled), verbose=0,
                    rng=backend.Generator(device, options["seed"] + 6))
        valid_error = clf.evaluate(x_valid, y_valid, batch_size=1000, metrics=["error"])["error"]
        test_error = clf.evaluate(*data["test"], batch_size=1000, metrics=["error"])["error"]
        classifiers[variant] = {"valid_error": valid_error, "test_error": test_error, "train_loss": h.loss[-1]}
        if verbose:
            print(f"{variant:9s} classifier on {n_labeled} labels: validation error {100 * valid_error:.2f}%, "
                  f"test error {100 * test_error:.2f}%")
        if variant == "finetuned":
            chosen = (clf, h)
    extra = {"classifiers": classifiers, "n_labeled": n_labeled, "autoencoder_loss": list(ae_hist.loss)}
    pictures = [_reconstruction_picture(out, ae_model, _device_x(device, data["test"][0]))] if out else []
    clf, h = chosen
    result = _finish(recipe, options, device, clf, h, started, out, extra, None, None,
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
    "homl-pretrain", "Hands-On ML unsupervised pretraining, then a classifier on 500 labels (frozen/fine-tuned/scratch)",
    f"{_HOML}: pretrained layers help most when labels are few; valid/test error of the fine-tuned classifier",
    mnist_keras, None, epochs=HOML_EPOCHS, batch_size=HOML_BATCH, lr=HOML_LR, run=_run_homl_pretrain,
    extra={"n_labeled": 500, "classifier_epochs": 40}))


# ------------------------------------------------------------------- Keras 2-D autoencoder

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
    x_train = _device_x(device, data["train"][0]) - 0.5
    x_test = _device_x(device, data["test"][0]) - 0.5
    history, resumed = _fit_single(recipe, options, device, model, x_train, None, out, resume, verbose,
                                   shuffle=True)
    pictures = []
    if out:
        codes = Sequential(layers[:n_encoder]).predict(x_test, batch_size=1000)
        pictures.append(_picture("code_scatter", _numpy(codes), data["test"][1], os.path.join(out, "codes.png"),
                                 title="2-D codes of the test set"))
        pictures.append(_reconstruction_picture(out, model, x_test, shift=0.5))
    result = _finish(recipe, options, device, model, history, started, out, {}, None, resumed, pictures=pictures)
    result.test_loss = result.extra["test_reconstruction_cost"] = _recon_cost(model, x_test)
    return result


register(Recipe(
    "autoencoder2d", "Keras 2-D autoencoder, 784-128-64-10-2 ReLU (linear code), mirrored, tanh output",
    "Keras tutorial: inputs in [-0.5, 0.5], Adam, MSE, batch 256, 20 epochs on 60,000 images; final loss 0.0391",
    mnist_keras, None, epochs=20, batch_size=256, lr=0.001, classifier=False, run=_run_autoencoder2d))
