"""Weight initialisers.

Each initialiser is a function ``init(rng, shape, fan_in, fan_out, dtype) -> array``
drawing on ``rng``'s device. Layers pass their own fans (for a dense layer
``fan_in = n_in``, ``fan_out = n_out``; a convolution multiplies by the kernel
area), so one initialiser serves every layer.

* ``glorot_uniform``: U[-r, r] with r = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010),
  keeping the variance of activations and gradients roughly constant for tanh.
* ``glorot_uniform_sigmoid``: the same r times 4, as the Theano tutorials use for sigmoid
  (the sigmoid's slope at 0 is 1/4, a quarter of tanh's).
* ``he_normal``: N(0, 2 / fan_in) (He et al. 2015), for ReLU-like units.
* ``normal(std)``: N(0, std^2).
* ``zeros``: all zeros (biases; logistic regression's weights in the Theano tutorial).
* ``orthogonal``: a random orthogonal matrix (Saxe et al. 2014), Keras's default for recurrent
  weights: repeated products ``h W_h`` then neither grow nor shrink the state's norm at the start.
"""

from __future__ import annotations

import math


def glorot_uniform(rng, shape, fan_in, fan_out, dtype):
    r = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(shape, -r, r, dtype=dtype)


def glorot_uniform_sigmoid(rng, shape, fan_in, fan_out, dtype):
    r = 4.0 * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(shape, -r, r, dtype=dtype)


def he_normal(rng, shape, fan_in, fan_out, dtype):
    return rng.normal(shape, std=math.sqrt(2.0 / fan_in), dtype=dtype)


def zeros(rng, shape, fan_in, fan_out, dtype):
    return rng.device.zeros(shape, dtype)


def normal(std: float = 0.01):
    """An initialiser drawing from N(0, std^2)."""
    if not std > 0:
        raise ValueError(f"normal(std): std must be positive, got {std}")

    def init(rng, shape, fan_in, fan_out, dtype):
        return rng.normal(shape, std=std, dtype=dtype)

    init.__name__ = f"normal({std})"
    return init


def lenet_conv(rng, shape, fan_in, fan_out, dtype):
    """Theano's ``LeNetConvPoolLayer``: Glorot uniform with ``fan_out`` divided by the 2x2 pool's area,
    ``n_filters * KH * KW / 4`` (the convolutional_mlp.py tutorial's rule)."""
    return glorot_uniform(rng, shape, fan_in, fan_out / 4.0, dtype)


def orthogonal(rng, shape, fan_in, fan_out, dtype):
    """Rows (or columns, whichever are fewer) orthonormal: the Q of the QR decomposition of a
    standard normal matrix, its columns' signs fixed by ``diag(R)`` so Q is uniformly (Haar) distributed."""
    rows, cols = int(shape[0]), 1
    for d in shape[1:]:
        cols *= int(d)
    a = rng.normal((max(rows, cols), min(rows, cols)), dtype=dtype)
    xp = rng.device.xp
    q, r = xp.linalg.qr(a)
    q = q * xp.sign(xp.linalg.diagonal(r))  # (max, min) times the (min,) signs, broadcast over rows
    if rows < cols:
        q = q.T
    # through a flat copy: a C-ordered array (q.T is a transposed view, which BLAS-fused updates refuse)
    return xp.reshape(xp.reshape(q, (-1,)), tuple(shape))


INITIALIZERS = {
    "glorot_uniform": glorot_uniform,
    "xavier": glorot_uniform,
    "glorot_uniform_sigmoid": glorot_uniform_sigmoid,
    "he_normal": he_normal,
    "normal": normal(0.01),
    "zeros": zeros,
    "lenet_conv": lenet_conv,
    "orthogonal": orthogonal,
}


def get_initializer(spec):
    """An initialiser from its name (see :data:`INITIALIZERS`) or a callable."""
    if callable(spec):
        return spec
    if isinstance(spec, str) and spec.startswith("normal(") and spec.endswith(")"):
        return normal(float(spec[len("normal("):-1]))
    try:
        return INITIALIZERS[spec]
    except KeyError:
        raise ValueError(f"unknown initialiser {spec!r}; choose one of {', '.join(INITIALIZERS)} "
                         "or pass npdl.init.normal(std) / a callable") from None


def initializer_name(init) -> str:
    """The name under which ``init`` can be rebuilt (used in model configs)."""
    for name, fn in INITIALIZERS.items():
        if fn is init:
            return name
    return getattr(init, "__name__", repr(init))
