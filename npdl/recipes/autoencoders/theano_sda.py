"""The Theano tutorial's stacked denoising autoencoder (DeepLearningTutorials ``SdA.py``): ``sda``.

Greedy layer-wise pretraining of three tied sigmoid dAs (784-1000-1000-1000, corruption
0.1/0.2/0.3) on cached codes, then the pretrained arrays themselves (shared) finetuned as an
MLP with a logistic-regression top under the patience rule. With ``out``:
``filters_layer0.png``, ``pretraining.png`` (cost per epoch, per layer), ``curves.png``; every
epoch of either phase is a resume point (see :func:`_run_sda`).
"""

from __future__ import annotations

import os
import time

from ... import backend
from ...distributed import attach_if
from ...layers import Dense
from ...layers.autoencoder import TiedAutoencoder
from ...layers.noise import MaskingNoise
from ...models import Sequential
from ...optim import SGD
from ...training import Callback, PatienceEarlyStopping, restore, save_checkpoint
from ..base import Recipe, register
from ..classic import mnist_dlt
from ..runner import CHECKPOINT, EpochCheckpoint, RunError, check_checkpoint, restore_run, saved_options
from .common import encode_batched, finish, picture


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
    finetuning epochs (default 1000, i.e. until patience runs out). ``--pretrain-epochs P``
    (``options["pretrain_epochs"]``) sets the pretraining epochs per layer itself; 0 trains the
    same network from its random start (no pretraining), the baseline that shows what
    pretraining does. ``--lr`` is the finetuning rate (0.1); pretraining uses 0.001. ``--batch-size`` applies to both.

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
    pre_epochs = options.get("pretrain_epochs")
    if pre_epochs is None:
        pre_epochs = min(options["epochs"], recipe.extra.get("pretrain_epochs", SDA_PRETRAIN_EPOCHS))
    saved = saved_options(options)
    finetune_ck = None
    if resume:
        path = os.path.join(out, CHECKPOINT)
        if os.path.exists(path):
            finetune_ck = check_checkpoint(path, recipe, options)
        elif not os.path.exists(_pretrain_path(out, 0)):
            raise RunError(f"--resume: no checkpoint in {out} (neither {CHECKPOINT} nor pretrain_0.npz); start "
                           "without --resume (or point --out at the folder of the run to continue)")
    rng = backend.Generator(device, options["seed"])
    x_train = device.asarray(data["train"][0])
    n_in = int(x_train.shape[1])
    sizes = (n_in,) + hidden
    autoencoders, pretraining, resumed_from = [], [], None
    codes = x_train
    for k, (a, b, c) in enumerate(zip(sizes[:-1], sizes[1:], corruption)):
        ae = TiedAutoencoder(a, b, "sigmoid", "sigmoid", dtype=dtype, device=device, rng=rng, name=f"dA{k}")
        dae = Sequential([MaskingNoise(c, rng=backend.Generator(device, options["seed"] + 10 + k)), ae],
                         name=f"sda-pretrain-{k}")
        dae.compile("reconstruction_cross_entropy", SGD(lr=recipe.extra.get("pretrain_lr", SDA_PRETRAIN_LR)))
        attach_if(dae, options)
        initial, history, prior_seconds = 0, None, 0.0
        path = _pretrain_path(out, k) if out else None
        if finetune_ck is not None and pre_epochs and not os.path.exists(path):
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
            saver = _PretrainCheckpoint(path, k, saved, pre_epochs, prior_seconds) if out else None
            history = dae.fit(codes, codes, epochs=pre_epochs, batch_size=bs, shuffle=False, verbose=verbose,
                              drop_last=True, initial_epoch=initial, history=history,
                              callbacks=[saver] if saver else [], diagnostics=options.get("diagnostics"))
        seconds = prior_seconds + time.perf_counter() - layer_started
        costs = list(history.loss) if history is not None else []  # none with --pretrain-epochs 0
        pretraining.append({"layer": k, "corruption": c, "cost": costs, "seconds": seconds})
        if verbose and costs:
            print(f"pre-training layer {k}, corruption {c:g}: costs {', '.join(f'{v:.3f}' for v in costs)} "
                  f"({seconds:.1f} s)")
        autoencoders.append(ae)
        if k < len(hidden) - 1 and finetune_ck is None and pre_epochs:
            # the codes of this (now frozen) layer, computed once from the clean input
            codes = backend.device_of(codes).asarray(encode_batched(ae, codes))
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
    attach_if(mlp, options)
    n_train_batches = max(1, int(x_train.shape[0]) // bs)
    n_valid = len(data["valid"][0])
    patience = PatienceEarlyStopping(data["valid"], data.get("test"), patience=10 * n_train_batches,
                                     restore_best=True, batch_size=bs if n_valid % bs else 1000, drop_last=True)
    fit_rng = backend.Generator(device, options["seed"] + 1)
    initial, history, prior_seconds = 0, None, 0.0
    if finetune_ck is not None:  # restores the shared arrays in place, so the autoencoders see them too
        ck = restore_run(mlp, out, recipe, options, patience, fit_rng)
        initial, history = ck["epoch"], ck["history"]
        prior_seconds = float(ck["extra"].get("finetune_seconds", 0.0))
        resumed_from = {"phase": "finetune", "epoch": initial}
    fine_started = time.perf_counter()
    callbacks = [patience]
    if out:
        callbacks.append(EpochCheckpoint(out, recipe.name, saved, patience, extra_fn=lambda: {
            "phase": "finetune", "finetune_seconds": prior_seconds + time.perf_counter() - fine_started}))
    history = mlp.fit(x_train, data["train"][1], epochs=options["epochs"], batch_size=bs, callbacks=callbacks,
                      shuffle=False, verbose=verbose, rng=fit_rng, drop_last=True,
                      initial_epoch=min(initial, options["epochs"]), history=history,
                      diagnostics=options.get("diagnostics"))
    fine_seconds = prior_seconds + time.perf_counter() - fine_started
    extra = {"pretraining": pretraining, "pretrain_seconds": pre_seconds, "finetune_seconds": fine_seconds,
             "pretrain_epochs": pre_epochs, "finetune_epochs": len(history),
             "validations": [list(v) for v in patience.validations], "resumed_from": resumed_from}
    pictures = []
    if out:
        W = backend.to_numpy(autoencoders[0].params["W"])
        side = int(round(n_in ** 0.5))
        if side * side == n_in:
            pictures.append(picture("tile_images", W[:, :100].T, os.path.join(out, "filters_layer0.png"),
                                    image_shape=(side, side), title="SdA first-layer filters (after finetuning)"))
        if pre_epochs:
            pictures.append(picture("line_curves", {f"layer {p['layer']} (corruption {p['corruption']:g})": p["cost"]
                                                    for p in pretraining},
                                    os.path.join(out, "pretraining.png"), ylabel="reconstruction cost",
                                    title="SdA pretraining"))
    result = finish(recipe, options, device, mlp, history, started, out, extra, None,
                    None if resumed_from is None else resumed_from["epoch"] if resumed_from["phase"] == "finetune"
                    else 0,
                    patience.best_validation if patience.best_iteration is not None else None,
                    patience.test_score, pictures)
    if patience.best_iteration is not None:
        result.best_epoch = patience.best_iteration // patience.n_train_batches + 1
    result.stopped_early = patience.stopped_iteration is not None
    result.test_loss = mlp.evaluate(*data["test"], batch_size=1000)["loss"]
    return result


register(Recipe(
    "sda", "Theano stacked denoising autoencoder, 784-1000-1000-1000-10 sigmoid, corruption 0.1/0.2/0.3",
    "DeepLearningTutorials SdA.py: pretraining 15 epochs per layer, lr 0.001, batch 1; finetuning lr 0.1, "
    "patience 10 x n_train_batches; best validation 1.28%, test 1.30% (585 + 444 min on one Xeon thread). "
    "--epochs caps both phases (pretraining at most 15)",
    mnist_dlt, None, epochs=1000, batch_size=1, lr=0.1, shuffle=False, drop_last=True, run=_run_sda))
