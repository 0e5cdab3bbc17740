"""The work of one training step: FLOPs counted from the layers' shapes, and the bytes it must move.

**FLOPs.** Every count here and in the layers' ``work`` methods (next to each layer's
derivation) follows the same conventions, and :mod:`npdl.bench.counting` checks them against
the code itself:

* a multiply-add is 2 FLOP: a matrix product (m, k) @ (k, n) is ``2 m k n``;
* every elementwise operation is 1 FLOP per element of its result, whatever it computes: ``+``,
  ``*``, a comparison, ``where``, ``maximum``, and ``exp``, ``tanh``, ``log1p``, ``sqrt`` alike;
* a reduction (``sum``, ``max``, ``argmax``, ``mean``) is 1 FLOP per element it reads;
* moving data costs nothing: reshapes, transposes, copies, padding, im2col, indexing; drawing
  random numbers (noise masks) is not counted either;
* the operations counted are those of the definitions, the array-API code in the layer, loss
  and optimizer files (what ``NPDL_KERNELS=off`` runs). A kernel does the same products and may
  fuse elementwise passes, but the problem is the same, so every implementation of a workload
  (npdl, PyTorch, JAX) is credited the same count for its time.

A step is **forward** (layers, loss, penalties), **backward** (the loss, then the layers down to
the lowest trainable one, which skips its input gradient, as :meth:`Sequential.backward` does;
every weight gradient counted as formed there, ``dW = x^T da`` included, though plain SGD adds
it into ``W`` within its update) and **update** (the optimizer's rule on every trainable
parameter, with weight decay, penalty gradients and clipping when set).

**Bytes.** The least a step must move, each array once: the batch (inputs and targets), the
parameters, their gradients, the optimizer's state, and the activations the layers and the loss
keep for the backward pass (each distinct tensor once; a view, such as Flatten's output, is its
input). A lower bound on the traffic: ``flops / bytes`` is the step's arithmetic intensity, and
no step can run in less memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: FLOPs per parameter element of each optimizer rule (:func:`npdl.optim.base.update_all`'s rules):
#: sgd ``g * lr``, ``p -=``; momentum 4; nesterov 6; rmsprop 9; adam 13 (see each rule's lines)
RULE_FLOPS = {"sgd": 2, "momentum": 4, "nesterov": 6, "rmsprop": 9, "adam": 13}


def elements(shape) -> int:
    size = 1
    for d in shape:
        size *= int(d)
    return size


def _itemsize(dtype) -> int:
    return 8 if str(dtype).endswith("64") else 4


@dataclass
class Work:
    """FLOPs (per phase) and bytes (per kind) of one training step; :attr:`flops`, :attr:`bytes`."""

    forward: int = 0
    backward: int = 0
    update: int = 0
    batch_bytes: int = 0
    parameter_bytes: int = 0
    gradient_bytes: int = 0
    state_bytes: int = 0
    activation_bytes: int = 0
    layers: list = field(default_factory=list)  # (layer name, forward FLOPs, backward FLOPs)

    @property
    def flops(self) -> int:
        return self.forward + self.backward + self.update

    @property
    def bytes(self) -> int:
        return self.batch_bytes + self.parameter_bytes + self.gradient_bytes + self.state_bytes + self.activation_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte."""
        return self.flops / self.bytes if self.bytes else float("inf")

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(flops=self.flops, bytes=self.bytes)
        return out


# ------------------------------------------------------------------------------- losses

def _reduce_flops(reduction, M) -> int:
    """:func:`npdl.losses.base.reduce`: ``mean`` and ``sum`` read M elements; ``batch_mean`` divides once more."""
    return M + (1 if reduction == "batch_mean" else 0)


def loss_work(loss, shape, dtype="float32") -> dict:
    """FLOPs of ``loss.forward`` and ``loss.backward`` on predictions of ``shape`` and what its cache keeps
    (beyond the targets): ``{"forward", "backward", "keeps_input", "kept_bytes"}``.

    * softmax cross-entropy (N, K): ``max``, ``z - m``, ``exp``, ``sum``, ``e / s`` (5 NK), ``log s``,
      the picked ``- log s``, the mean (3 N) and the sign (1); backward: the one-hot comparison,
      ``probs - onehot``, the scale (3 NK). Keeps ``probs``.
    * negative log-likelihood (N, K): ``log``, the mean (2 N, +N with ``eps``), the sign; backward:
      the one-hot, ``-dloss/n / picked`` (N), ``where`` (2 NK + N). Keeps the picked probabilities.
    * mean squared error (M elements): ``diff``, ``diff * diff``, the reduction; backward ``diff *`` the scale.
    * binary cross-entropy on logits (and the dA's reconstruction cost on logits): ``maximum``, ``z t``,
      ``abs``, the sign, ``exp``, ``log1p``, ``-``, ``+`` (8 M) and the reduction; backward the
      sigmoid's 4, ``s - t`` and the scale (6 M). Keeps the logits.
    * binary cross-entropy on probabilities (and the dA's reconstruction cost): ``clip``, two logs,
      two products, ``1 - t``, ``1 - pc``, ``+``, the sign and the in-range mask (3) (12 M) and the
      reduction; backward ``pc - t``, ``1 - pc``, ``*``, ``/``, ``where``, the scale (6 M). Keeps ``pc`` and the mask.
    """
    name, item = type(loss).__name__, _itemsize(dtype)
    M = elements(shape)
    if name == "SoftmaxCrossEntropy":
        N = int(shape[0])
        return {"forward": 5 * M + 3 * N + 1, "backward": 3 * M, "kept_bytes": item * M}
    if name == "NegativeLogLikelihood":
        N = int(shape[0])
        return {"forward": 2 * N + 1 + (N if loss.eps > 0 else 0), "backward": 2 * M + N, "kept_bytes": item * N}
    reduction = "batch_mean" if name.startswith("Reconstruction") else getattr(loss, "reduction", "mean")
    if name == "MeanSquaredError":
        return {"forward": 2 * M + _reduce_flops(reduction, M), "backward": M, "kept_bytes": item * M}
    if name in ("BinaryCrossEntropyWithLogits", "ReconstructionCrossEntropyWithLogits"):
        return {"forward": 8 * M + _reduce_flops(reduction, M), "backward": 6 * M, "keeps_input": True}
    if name in ("BinaryCrossEntropy", "ReconstructionCrossEntropy"):
        return {"forward": 12 * M + _reduce_flops(reduction, M), "backward": 6 * M, "kept_bytes": (item + 1) * M}
    raise NotImplementedError(f"the work of loss {name} is not counted")


# -------------------------------------------------------------------------- optimizers

def update_work(model, trainable_sizes: dict) -> tuple[int, int, int]:
    """``(update FLOPs, penalty FLOPs in the forward pass, optimizer state bytes per parameter byte)``.

    ``trainable_sizes`` maps each trainable parameter's global name to its size; weights (the names
    penalties and decay apply to) are those :meth:`Sequential.step_inputs` lists as decayed.
    Update: the rule per element (:data:`RULE_FLOPS`); decoupled decay ``p *= shrink`` per decayed
    element; the penalties' gradients ``2 l2 p`` and ``+`` (2 per weight element) and ``l1 sign(p)``
    and ``+`` (3); clipping ``g * g``, ``sum``, ``g *= scale`` (3 per element), the sum of the
    per-array norms (one add each) and ``sqrt``, ``maximum``, ``max_norm /`` (3). Forward:
    ``lam sum(W^2)`` as ``vecdot`` (2 per element) or ``lam sum(|W|)`` (2), one add per weight,
    ``lam *`` (1), the two penalties' sum (1) and the penalty added to the loss (1).
    """
    opt = model.optimizer
    from ..optim.base import Optimizer

    if opt.kernel_rule not in RULE_FLOPS or type(opt)._update is not Optimizer._update:
        raise NotImplementedError(f"the work of optimizer {type(opt).__name__} is not counted")
    _, _, decay, _ = model.step_inputs()
    P = sum(trainable_sizes.values())
    W = sum(size for name, size in trainable_sizes.items() if name in decay)
    n_weights = sum(1 for name in trainable_sizes if name in decay)
    update = RULE_FLOPS[opt.kernel_rule] * P + (W if opt.weight_decay else 0)
    update += (2 * W if model.l2 else 0) + (3 * W if model.l1 else 0)
    if opt.clip_norm is not None:
        update += 3 * P + len(trainable_sizes) + 3
    penalty = 0
    for lam in (model.l2, model.l1):
        if lam and n_weights:
            penalty += 2 * W + n_weights + 1
    if penalty:
        penalty += 1 + (1 if model.l1 and model.l2 else 0)
    return update, penalty, len(opt.slot_kinds)


# ------------------------------------------------------------------------------ a model

def model_work(model, input_shape, target_shape=None, target_itemsize=8) -> Work:
    """The :class:`Work` of one ``model.train_step`` on inputs of ``input_shape`` (batch axis first).

    ``target_shape`` and ``target_itemsize`` size the targets (default: one int64 label per example;
    pass ``(0,)`` when the targets are the inputs themselves, as for an autoencoder). Every layer must
    have a ``work`` method, the loss and the optimizer must be known (:func:`loss_work`,
    :func:`update_work`): otherwise ``NotImplementedError`` names the one that is not counted.
    """
    if model.loss is None or model.optimizer is None:
        raise ValueError(f"{model.name}: compile the model before counting its step")
    dtype = next((layer.dtype for layer in model.layers if getattr(layer, "dtype", None)), "float32")
    item = _itemsize(dtype)
    N = int(input_shape[0])
    stop = model._lowest_trainable()
    shapes, works = [tuple(int(d) for d in input_shape)], []
    for i, layer in enumerate(model.layers):
        if not hasattr(layer, "work"):
            raise NotImplementedError(f"the work of layer {type(layer).__name__} is not counted")
        works.append(layer.work(shapes[-1], stop is not None and i > stop, dtype))
        shapes.append((N,) + tuple(int(d) for d in layer.output_shape(shapes[-1][1:])))
    lw = loss_work(model.loss, shapes[-1], dtype)
    out = Work(forward=lw["forward"], backward=lw["backward"] if stop is not None else 0)
    for i, (layer, w) in enumerate(zip(model.layers, works)):
        backward = w["backward"] if stop is not None and i >= stop else 0
        out.forward += w["forward"]
        out.backward += backward
        out.layers.append((layer.name, w["forward"], backward))
    # the activations kept: tensors t_0 .. t_L between the layers, a view being its input's tensor
    group = list(range(len(shapes)))
    for i, w in enumerate(works):
        if w.get("view"):
            group[i + 1] = group[i]
    kept = set()
    for i, w in enumerate(works):
        out.activation_bytes += w.get("kept_bytes", 0)
        if w.get("keeps_input"):
            kept.add(group[i])
        if w.get("keeps_output"):
            kept.add(group[i + 1])
    if lw.get("keeps_input"):
        kept.add(group[-1])
    out.activation_bytes += lw.get("kept_bytes", 0)
    out.activation_bytes += sum(item * elements(shapes[g]) for g in kept if g != group[0])
    # the batch, the parameters, their gradients and the optimizer's state
    target_shape = (N,) if target_shape is None else tuple(target_shape)
    out.batch_bytes = item * elements(shapes[0]) + target_itemsize * elements(target_shape)
    params, _, _, _ = model.step_inputs()
    sizes = {name: elements(p.shape) for name, p in params.items()}
    out.parameter_bytes = item * sum(layer.parameter_count() for layer in model.layers)
    out.gradient_bytes = item * sum(sizes.values())
    update, penalty, slots = update_work(model, sizes)
    out.update, out.forward = update, out.forward + penalty
    out.state_bytes = slots * out.gradient_bytes
    return out


# --------------------------------------------------------------------------- workloads

def batch_shapes(w) -> tuple:
    """``(input shape, target shape, target itemsize)`` of a benchmark workload's batch."""
    N, spec = w.batch_size, w.spec
    if w.family in ("mlp", "sda"):
        return (N, w.sizes[0]), (N,), 8
    if w.family in ("lenet", "kcnn"):
        return (N, *spec["input"]), (N,), 8
    if w.family == "da":
        return (N, w.sizes[0]), (0,), 4  # the targets are the inputs: no more bytes
    if spec["cell"] == "simple_rnn":
        return (N, spec["steps"], spec["features"]), (N,), 8
    return (N, spec["steps"], spec["features"]), (N, spec["steps"], spec["outputs"]), 4


def workload_model(w):
    """The workload's compiled npdl model on the CPU (parameters only, no batch)."""
    if w.family in ("mlp", "sda"):
        from .npdl_step import build_model

        return build_model(w, "cpu")
    if w.family in ("lenet", "kcnn"):
        from .conv_step import build_conv_model

        return build_conv_model(w, "cpu")
    if w.family == "da":
        from .autoencoder_step import build_autoencoder

        return build_autoencoder(w, "cpu")
    from .rnn_step import build_rnn_model

    return build_rnn_model(w, "cpu")


_MODELS: dict = {}  # family -> its model: parameters do not depend on the batch size


def workload_work(w) -> Work:
    """The :class:`Work` of one step of benchmark workload ``w`` (the same count for every implementation).
    Nothing of the batch's size is allocated, so any batch size can be counted."""
    if w.family not in _MODELS:
        _MODELS[w.family] = workload_model(w)
    return model_work(_MODELS[w.family], *batch_shapes(w))
