"""Sequential: a stack of layers trained end to end by backpropagation.

``forward`` runs the layers bottom-up, ``backward`` runs their backward passes
top-down (each layer stores its parameter gradients in ``layer.grads``), and
``train_step`` adds the loss, the L1/L2 penalties and one optimizer step::

    model = Sequential([Dense(784, 500), Tanh(), Dense(500, 10)], name="mlp")
    model.compile("softmax_cross_entropy", SGD(lr=0.01), l2=1e-4)
    history = model.fit(x, y, epochs=10, batch_size=20, validation_data=(xv, yv))

L1/L2 here are *penalties added to the loss* on weights only (never biases), as
the Theano tutorials' ``cost = nll + L1_reg * L1 + L2_reg * L2_sqr``: the optimizer
adds their gradient to each weight's data gradient, so it flows through the rule like
the data gradient (and so is scaled by Adam's normalisation). The optimizer's ``weight_decay`` is the other, decoupled
kind (AdamW), applied by the optimizer directly to the weights.
"""

from __future__ import annotations

import itertools
import math

from .. import backend, kernels, losses
from ..errors import ShapeError
from ..losses import metrics as metric_fns
from ..losses import penalties
from ..layers.base import Layer
from ..optim import get_optimizer
from ..training import checkpoint, loop
from ..training.errors import TrainingDivergedError
from . import updates
from .state import ModelState
from .summary import summary_table

#: a distinct number per model, its key among the training step sites (:func:`npdl.kernels.step_threads`):
#: ``id(model)`` is reused once a model is freed, and a new model would inherit the old one's step times
_STEP_SITES = itertools.count()

#: metric name -> function(scores, labels, check_range); classifier metrics only
METRICS = {"accuracy": metric_fns.accuracy, "error": metric_fns.zero_one_error}

#: losses whose targets are integer class labels, so accuracy and error make sense
CLASSIFIER_LOSSES = (losses.SoftmaxCrossEntropy, losses.NegativeLogLikelihood)


def _loss_from(spec):
    """A Loss from a name, an instance, or the ``{"class", "config"}`` dict a checkpoint stores."""
    if isinstance(spec, dict):
        cls = getattr(losses, spec.get("class", ""), None)
        if not (isinstance(cls, type) and issubclass(cls, losses.Loss)):
            raise ValueError(f"unknown loss class {spec.get('class')!r}")
        return cls(**spec.get("config", {}))
    return losses.get_loss(spec)


class Sequential(ModelState):
    """A list of layers applied in order. See the module docstring; device and state handling
    (``to``, ``state_dict``, ``get_config``, ...) come from :class:`npdl.models.state.ModelState`."""

    def __init__(self, layers=None, input_shape=None, name=None):
        self.name = name or "sequential"
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.layers: list[Layer] = []
        self.loss = self.optimizer = None
        self.metrics: tuple = ()
        self.l1 = self.l2 = 0.0
        self.check_finite = False  # compile(check_finite=True): read each step's loss, refuse NaN/inf
        #: let dense layers apply plain SGD's update of their weights in their backward pass, in the same
        #: pass over ``W`` as the input gradient, where that changes no result (:mod:`npdl.models.updates`);
        #: False leaves every update to the optimizer's step. The same parameters either way, bit for bit.
        self.fuse_update = True
        self.stop_training = False
        self.history = None  # the History of the last (or running) fit
        self.fit_rng = None  # the generator that shuffled the last (or running) fit
        self._step_site = next(_STEP_SITES)
        for layer in layers or ():
            self.add(layer)

    # -- building
    def add(self, layer: Layer) -> "Sequential":
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}.add: expected an npdl Layer, got {type(layer).__name__}")
        self.layers.append(layer)
        return self

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def _index(self, layer_or_index) -> int:
        if isinstance(layer_or_index, int):
            if not -len(self.layers) <= layer_or_index < len(self.layers):
                raise IndexError(f"{self.name}: layer index {layer_or_index} out of range for {len(self)} layers")
            return layer_or_index % len(self.layers)
        for i, layer in enumerate(self.layers):
            if layer is layer_or_index:
                return i
        raise ValueError(f"{self.name}: {layer_or_index!r} is not a layer of this model")

    def freeze(self, layer_or_index) -> "Sequential":
        """Stop updating a layer's parameters. Gradients still flow *through* it to the layers below."""
        self.layers[self._index(layer_or_index)].trainable = False
        return self

    def unfreeze(self, layer_or_index) -> "Sequential":
        self.layers[self._index(layer_or_index)].trainable = True
        return self

    def summary(self, input_shape=None) -> str:
        """The Keras-like table of layers, output shapes and parameter counts (``print`` it)."""
        return summary_table(self, input_shape)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        return f"Sequential(name={self.name!r}, layers={self.layers!r})"

    # -- compiling
    def compile(self, loss, optimizer, metrics=None, l2: float = 0.0, l1: float = 0.0,
                check_finite: bool = False) -> "Sequential":
        """Choose the loss, the optimizer (a name or an :mod:`npdl.optim` object) and the metrics.

        ``metrics=None`` means ``("accuracy",)`` for classifier losses and none otherwise;
        ``"accuracy"`` and ``"error"`` (zero-one) need integer class labels.
        ``l2``/``l1`` add ``l2 * sum(W**2)`` / ``l1 * sum(|W|)`` over trainable weights to the loss.
        ``check_finite=True`` makes every training step check its loss (see :meth:`train_step`).
        """
        self.check_finite = bool(check_finite)
        self.loss = _loss_from(loss)
        self.optimizer = get_optimizer(optimizer)
        self.optimizer.to(self.device)
        self.l2, self.l1 = float(l2), float(l1)
        if self.l2 < 0 or self.l1 < 0:
            raise ValueError(f"{self.name}.compile: l2 and l1 must be >= 0, got l2={l2}, l1={l1}")
        self.metrics = ()
        self.metrics = tuple(self.metric_names(("accuracy",) if metrics is None and self.is_classifier
                                               else metrics or ()))
        return self

    def compile_config(self) -> dict | None:
        """What :meth:`compile` needs besides the optimizer (JSON-able), or None before compiling."""
        if self.loss is None:
            return None
        return {"loss": {"class": type(self.loss).__name__, "config": self.loss.get_config()},
                "metrics": list(self.metrics), "l2": self.l2, "l1": self.l1}

    def require_compiled(self, what: str) -> None:
        if self.loss is None or self.optimizer is None:
            raise RuntimeError(f"{self.name}.{what}: call model.compile(loss, optimizer) first")

    @property
    def is_classifier(self) -> bool:
        return isinstance(self.loss, CLASSIFIER_LOSSES)

    def metric_names(self, metrics=None) -> list:
        """Validated metric names: ``metrics`` if given, else the compiled ones."""
        names = list(self.metrics if metrics is None else metrics)
        for name in names:
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
            if not self.is_classifier:
                raise ValueError(f"metric {name!r} needs a classifier loss with integer labels "
                                 f"({', '.join(c.__name__ for c in CLASSIFIER_LOSSES)}), "
                                 f"not {type(self.loss).__name__}")
        return names

    def batch_metrics(self, out, labels, names=None) -> dict:
        """``{name: 0-d device array}`` for one batch (labels were range-checked once by the caller)."""
        return {name: METRICS[name](out, labels, check_range=False) for name in self.metric_names(names)}

    # -- forward and backward
    def forward(self, x, training: bool = False):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def __call__(self, x, training: bool = False):
        return self.forward(x, training)

    def _lowest_trainable(self):
        return next((i for i, layer in enumerate(self.layers) if layer.trainable and layer.params), None)

    def backward(self, dloss, input_grad: bool = False):
        """Backpropagate ``dloss`` (dL/d output) through the layers; each stores its ``grads``.

        Stops at the lowest trainable layer: frozen layers and parameter-free layers
        below it need no gradient at all, and that layer itself is told (through
        ``need_input_grad``) that nobody needs its input gradient, which saves a Dense
        layer a third of its backward work. ``input_grad=True`` goes all the way down
        and returns dL/d input; otherwise the return value is None.
        """
        stop = 0 if input_grad else self._lowest_trainable()
        if stop is None:
            return None
        grad = dloss
        for index in range(len(self.layers) - 1, stop - 1, -1):
            layer = self.layers[index]
            layer.need_input_grad = input_grad or index > stop
            grad = layer.backward(grad)
        return grad if input_grad else None

    def clear_caches(self) -> None:
        """Drop every cached activation (they are only needed between a forward and its backward)."""
        for layer in self.layers:
            layer.cache = None
        if self.loss is not None:
            self.loss.cache = None

    # -- penalties and the parameters an optimizer step sees
    def penalty_value(self):
        """The current L1 + L2 penalty on trainable weights as a 0-d device array, or None without penalties."""
        if not (self.l1 or self.l2):
            return None
        slots = penalties.regularized_weights([layer for layer in self.layers if layer.trainable])
        weights = [layer.params[name] for layer, name in slots]
        total = None
        if weights and self.l2:
            total = penalties.l2_penalty_forward(weights, self.l2)[0]
        if weights and self.l1:
            value = penalties.l1_penalty_forward(weights, self.l1)[0]
            total = value if total is None else total + value
        return total

    def step_inputs(self):
        """What one optimizer step receives: ``(params, grads, decay_names, penalties)``.

        ``params``/``grads`` map global names (``"0.W"``: layer index, parameter name) to every
        trainable parameter and its data gradient from the last :meth:`backward`
        (``layer.grads``, products possibly unformed); ``decay_names`` are the weights (not the
        biases) that decoupled weight decay shrinks; ``penalties`` maps each of those weights to
        ``(l1, l2)``, whose gradients the optimizer adds. See :meth:`npdl.optim.Optimizer.step`.
        """
        params, grads, decay = {}, {}, set()
        for i, layer in enumerate(self.layers):
            if layer.trainable and layer.params:
                for k, v in layer.params.items():
                    params[f"{i}.{k}"], grads[f"{i}.{k}"] = v, layer.grads.get(k)
                decay.update(f"{i}.{k}" for k in layer.weight_names if k in layer.params)
        pens = dict.fromkeys(decay, (self.l1, self.l2)) if (self.l1 or self.l2) else {}
        return params, grads, decay, pens

    # -- one step
    def train_batch(self, xb, yb, check_finite=None):
        """Forward, loss + penalties, backward, optimizer step. Returns ``(loss, output)`` on the device.

        Running out of GPU memory raises :class:`npdl.errors.GPUOutOfMemoryError` naming the model
        and batch size (the step's cached activations are freed first, so a smaller batch can retry).
        ``check_finite``: see :meth:`train_step`. The step's Numba thread count (and with
        ``NPDL_ADAPTIVE_THREADS=1`` BLAS's) is chosen from the step times (:func:`npdl.kernels.step_threads`)."""
        try:
            with kernels.step_threads(("train", self._step_site, xb.shape), xb):
                return self._train_batch(xb, yb, check_finite)
        except Exception as exc:
            if not backend.is_out_of_memory(exc):
                raise
            self.clear_caches()  # the activations: free them, so a retry with a smaller batch can fit
            raise backend.out_of_memory(
                exc, f"in a training step of model '{self.name}' (batch size {int(xb.shape[0])}) on {self.device}",
                "try a smaller batch size (--batch-size, or fit(batch_size=...)), or free GPU memory held by "
                "other arrays or processes") from exc

    def _train_batch(self, xb, yb, check_finite=None):
        """The step itself: forward, loss + penalties, backward, one optimizer step with every term.

        The penalties enter twice, both from the weights before the update: their value is
        added to the reported loss here, and their gradients (``l1 sign(W) + 2 l2 W``) are
        added by the optimizer to each weight's data gradient (:meth:`step_inputs`)."""
        self.require_compiled("train_step")
        xp = backend.namespace(xb)
        if xb.ndim and int(xb.shape[0]) == 0:
            raise ShapeError(f"{self.name}.train_step: the batch is empty (x has shape "
                             f"{tuple(int(d) for d in xb.shape)}); a step needs at least one example")
        out = self.forward(xb, training=True)
        loss = self.loss.forward(out, yb)
        penalty = self.penalty_value()
        if penalty is not None:
            loss = loss + penalty
        if self.check_finite if check_finite is None else check_finite:
            self._refuse_non_finite(loss)
        applied = updates.backward_updating(self, self.loss.backward(1.0), int(xb.shape[0]) if xb.ndim else 0)
        params, grads, decay, pens = self.step_inputs()
        if params:
            self.optimizer.step(params, grads, decay_names=decay, penalties=pens, applied=applied)
        return xp.asarray(loss), out

    def _refuse_non_finite(self, loss) -> None:
        """Read the step's loss (one host synchronisation) and raise before the update if it is NaN/inf."""
        value = float(backend.to_numpy(loss))
        if not math.isfinite(value):
            self.clear_caches()
            raise TrainingDivergedError(
                f"{self.name}.train_step: the loss of this batch is {value}, so the step was not taken (the "
                "parameters are as they were). Check the batch for NaN/inf, or try a smaller learning rate or "
                "clip_norm.")

    def train_step(self, xb, yb, check_finite=None):
        """One minibatch update on device arrays; returns the loss (+ penalty) as a 0-d device array.

        By default the loss is not looked at: it stays on the device (reading it would wait for
        the GPU every step), so a batch holding NaN/inf returns a NaN loss and the update writes
        NaN into the parameters, with no error. :meth:`fit` notices at its next read of the running
        loss (progress refresh or epoch end) and raises :class:`npdl.training.TrainingDivergedError`;
        a loop of your own should check the returned loss now and then.
        ``check_finite=True`` (or ``compile(..., check_finite=True)`` for every step, ``fit``'s
        too) reads the loss before the update, one host synchronisation per step, and raises
        ``TrainingDivergedError`` with the parameters untouched. ``False`` overrides the compiled choice.
        An empty batch raises :class:`npdl.errors.ShapeError`.
        """
        return self.train_batch(xb, yb, check_finite)[0]

    # -- loops
    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, callbacks=(), shuffle=True, verbose=1,
            initial_epoch=0, rng=None, history=None, validation_batch_size=256, drop_last=False, diagnostics=None):
        """Train for epochs ``initial_epoch .. epochs-1`` (Keras's convention) and return a History.

        ``x``/``y`` go to the model's device once; batches are sliced there. ``rng`` (a
        :class:`npdl.backend.Generator`) draws the shuffling permutations; pass the
        restored one (and ``history``) from a checkpoint to resume bit for bit. Loss and
        metrics stay on the device and are read back only at progress refreshes and epoch
        ends; a NaN/inf loss raises :class:`npdl.training.TrainingDivergedError`.
        ``verbose=0`` is silent; ``1`` shows a tqdm bar on a terminal, else one line per epoch.
        ``drop_last=True`` skips a final partial batch each epoch (the Theano tutorials' ``n // batch_size``).
        ``diagnostics`` (a :class:`npdl.diagnostics.Diagnostics`) records gradient flow every few steps.
        """
        return loop.fit(self, x, y, epochs, batch_size, validation_data, callbacks, shuffle, verbose,
                        initial_epoch, rng, history, validation_batch_size, drop_last, diagnostics)

    def evaluate(self, x, y, batch_size=256, metrics=None, drop_last=False) -> dict:
        """``{"loss": float, <metric>: float}`` over ``(x, y)`` in inference mode (loss includes penalties).
        ``drop_last=True`` scores whole batches only, as the Theano tutorials do."""
        self.require_compiled("evaluate")
        return loop.read_scalars(loop.evaluate_means(self, x, y, batch_size, metrics, drop_last))

    def predict(self, x, batch_size=256):
        """Outputs for ``x`` (training=False), batched, as one array on the model's device; keeps no caches."""
        return loop.predict(self, x, batch_size)

    # -- checkpoints
    def save_checkpoint(self, path, epoch=0, rng=None, history=None, extra=None) -> str:
        """Save model + optimizer + generators (see :func:`npdl.training.save_checkpoint`)."""
        return checkpoint.save_checkpoint(path, self, self.optimizer, rng if rng is not None else self.fit_rng, epoch,
                               history if history is not None else self.history, extra)

    def load_checkpoint(self, path) -> dict:
        """Restore parameters, layer generators and (if compiled) optimizer state from ``path``.

        Returns the checkpoint dict; ``ck["rng"]`` (restored shuffling generator), ``ck["epoch"]``
        and ``ck["history"]`` continue training: ``fit(..., initial_epoch=ck["epoch"], rng=ck["rng"],
        history=ck["history"])``.
        """
        return checkpoint.load_checkpoint(path, model=self)


checkpoint.register_model_class(Sequential)  # what npdl.load_checkpoint(path) rebuilds without a model
