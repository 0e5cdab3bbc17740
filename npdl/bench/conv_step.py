"""The convolutional benchmark workloads (``lenet_bN``, ``kcnn_bN``): layer specs shared with the peers.

Each architecture is a tuple of layer specs that ``benchmarks/peers_conv.py`` reads too,
so PyTorch and JAX build exactly the same network (NCHW, same padding, same biases):

* ``("conv", out_channels, kernel, padding, bias)``: stride 1;
* ``("maxpool", size, padding)``: stride = size;
* ``("tanh",)``, ``("relu",)``, ``("flatten",)``, ``("dense", n_out)`` (with bias).
"""

from __future__ import annotations

from .. import backend
from ..layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Tanh
from ..models import Sequential
from ..optim import SGD
from .fixed_batch import fixed_batch_step
from .workloads import Workload

ARCHS = {
    # Theano convolutional_mlp.py, without the per-channel bias after pooling ("no conv bias")
    "lenet": (("conv", 20, 5, "valid", False), ("maxpool", 2, "valid"), ("tanh",),
              ("conv", 50, 5, "valid", False), ("maxpool", 2, "valid"), ("tanh",),
              ("flatten",), ("dense", 500), ("tanh",), ("dense", 10)),
    # the Keras/TensorFlow MNIST CNN tutorial
    "kcnn": (("conv", 32, 5, "same", True), ("relu",), ("maxpool", 2, "same"),
             ("conv", 64, 5, "same", True), ("relu",), ("maxpool", 2, "same"),
             ("flatten",), ("dense", 1024), ("relu",), ("dense", 10)),
}


def build_conv_model(w: Workload, device="cpu", seed: int = 0) -> Sequential:
    """The workload's network (Glorot-uniform weights, zero biases) on ``device``, compiled with SGD."""
    device = backend.get_device(device)
    rng = backend.Generator(device, seed)
    shape = tuple(w.spec["input"])
    layers = []
    specs = list(ARCHS[w.spec["arch"]])
    while specs:
        spec = specs.pop(0)
        kind = spec[0]
        if kind == "conv":  # a ReLU right after it goes inside it, as the Keras tutorial builds it
            _, out, k, padding, bias = spec
            fused = specs.pop(0)[0] if specs and specs[0][0] == "relu" else None
            layer = Conv2D(shape[0], out, k, padding=padding, bias=bias, device=device, rng=rng, activation=fused)
        elif kind == "maxpool":
            layer = MaxPool2D(spec[1], padding=spec[2])
        elif kind == "dense":  # the activation after it goes inside it, as the recipes build it
            fused = specs.pop(0)[0] if specs and specs[0][0] in ("tanh", "relu") else None
            layer = Dense(shape[0], spec[1], device=device, rng=rng, activation=fused)
        else:
            layer = {"tanh": Tanh, "relu": ReLU, "flatten": Flatten}[kind]()
        shape = layer.output_shape(shape)
        layers.append(layer)
    model = Sequential(layers, name=w.name)
    model.compile("softmax_cross_entropy", SGD(lr=w.lr), metrics=())
    return model


def conv_step(w: Workload, device, seed: int = 0):
    """A conv classifier's step on random float32 images (N, C, H, W) and labels on the device."""
    model = build_conv_model(w, device, seed)
    rng = backend.Generator(device, seed + 1)
    x = rng.normal((w.batch_size, *w.spec["input"]), dtype="float32")
    y = rng.integers(0, w.spec["classes"], (w.batch_size,))
    return fixed_batch_step(model, x, y)
