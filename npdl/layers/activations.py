r"""Elementwise activations and softmax, each a forward/backward pair.

For an elementwise $y = f(x)$ the chain rule is one multiplication per element,
$dx = dy \odot f'(x)$, so the only question per activation is what to cache so that
$f'(x)$ is cheap: often the output ``y`` itself (sigmoid, tanh, ReLU), sometimes the
sign of ``x`` (leaky ReLU, ELU). Shapes: ``x``, ``y``, ``dy`` and ``dx`` all have the
same shape, any rank.

The elementwise forwards also take a ``bias`` (shape ``x.shape[-1:]``, ``x``'s dtype),
giving $y = f(x + bias)$: a layer whose pre-activation is $x W + b$ (a dense layer, an
autoencoder) passes the product ``x @ W`` and ``b``, with ``overwrite=True`` since the
product is its own to reuse (the bias is then added in place, and an accelerated version
may write ``y`` over it). The bias is a constant shift inside $f$, so the backward pass
is unchanged: $\frac{\partial L}{\partial (x W)} = dy \odot f'$ as before, and the layer sums
the same array over the batch for ``db``.

Sigmoid, tanh and ReLU are named operations (:func:`npdl.kernels.accelerated`): their
forwards ``bias_activation.<name>``, their backwards ``activation_backward.<name>``. The
code below is their definition, and what runs with ``NPDL_KERNELS=off``.
On a GPU a kernel does the same in one launch: ``f(x + bias)`` in one instead of two
(tanh, ReLU) or five (sigmoid: the add, ``* 1/2``, ``tanh``, ``+ 1``, ``* 1/2``), a backward
in one instead of two or three. On the CPU the backward is a one-pass Numba loop, and
so are the float32 sigmoid and tanh forwards, with the vectorised float32 tanh of
:mod:`npdl.kernels.numba.fast_tanh` (within 7 ulps of the exact value; NumPy's float32
``tanh`` is a scalar loop on CPUs without AVX-512). float64 (gradient checks) and ReLU
run the code below.
"""

from __future__ import annotations

from .. import backend, checks, kernels
from .base import Layer


def _biased(x, bias, overwrite):
    """``x + bias`` (``bias`` broadcast over the leading axes): in place in ``x`` with ``overwrite``,
    ``x`` itself when ``bias`` is None."""
    if bias is None:
        return x
    if overwrite:
        x += bias
        return x
    return x + bias


# ----------------------------------------------------------------------------- sigmoid

@kernels.accelerated("bias_activation.sigmoid")
def sigmoid_forward(x, *, bias=None, overwrite=False):
    r"""$y = \sigma(z) = \frac{1}{1 + e^{-z}}$ with $z = x$ (or $x + bias$), computed as $\frac{\tanh(z/2) + 1}{2}$.

    The two are equal ($\tanh(z/2) = \frac{1 - e^{-z}}{1 + e^{-z}}$); the tanh form never
    overflows ($e^{-z}$ does for z < -88 in float32), saturates cleanly to exactly 0
    and 1, and costs one transcendental. The ``+ 1`` and ``/ 2`` are done in place on
    tanh's fresh output. Cache: ``y``.
    """
    xp = backend.namespace(x)
    z = _biased(x, bias, overwrite)
    y = xp.tanh(z * 0.5)
    y += 1.0
    y *= 0.5
    return y, y


@kernels.accelerated("activation_backward.sigmoid")
def sigmoid_backward(dy, cache):
    r"""$\frac{\partial y}{\partial x} = \frac{e^{-x}}{(1 + e^{-x})^2} = y (1 - y)$, so $dx = dy \odot y \odot (1 - y)$."""
    y = cache
    return dy * y * (1.0 - y)


# -------------------------------------------------------------------------------- tanh

@kernels.accelerated("bias_activation.tanh")
def tanh_forward(x, *, bias=None, overwrite=False):
    r"""$y = \tanh(z)$ with $z = x$ (or $x + bias$). Cache: ``y``."""
    y = backend.namespace(x).tanh(_biased(x, bias, overwrite))
    return y, y


@kernels.accelerated("activation_backward.tanh")
def tanh_backward(dy, cache):
    r"""$\frac{\partial \tanh(x)}{\partial x} = 1 - \tanh(x)^2 = 1 - y^2$, so $dx = dy \odot (1 - y^2)$."""
    y = cache
    return dy * (1.0 - y * y)


# -------------------------------------------------------------------------------- ReLU

@kernels.accelerated("bias_activation.relu")
def relu_forward(x, *, bias=None, overwrite=False):
    r"""$y = \max(z, 0)$ with $z = x$ (or $x + bias$); ``nan`` stays ``nan``, ``-0.0`` becomes ``0.0``.
    Cache: ``y`` itself ($y > 0$ exactly where $z > 0$)."""
    y = backend.namespace(x).maximum(_biased(x, bias, overwrite), 0.0)
    return y, y


@kernels.accelerated("activation_backward.relu")
def relu_backward(dy, cache):
    r"""$\frac{\partial y}{\partial x} = 1$ where $x > 0$ and 0 elsewhere (we take 0 at the kink x = 0),
    so $dx = dy \odot \mathbb{1}[y > 0]$: ``dy`` where the unit was on and 0 where it was off.

    Written as a product with the mask cast to ``dy``'s dtype rather than ``where(y > 0, dy, 0)``:
    the same numbers (a ``nan`` or ``inf`` in ``dy`` where the unit was off gives ``nan``, as
    ``dy * 0`` does), and NumPy's ``where`` measured 20x slower on a (64, 32, 28, 28) batch."""
    y = cache
    xp = backend.namespace(dy)
    return dy * xp.astype(y > 0, dy.dtype)


# -------------------------------------------------------------------------- Leaky ReLU

def leaky_relu_forward(x, alpha=0.01, *, bias=None, overwrite=False):
    r"""$y = x$ for $x > 0$, $\alpha x$ otherwise (``x`` shifted by ``bias`` first). Cache: ``(x > 0, alpha)``."""
    xp = backend.namespace(x)
    x = _biased(x, bias, overwrite)
    positive = x > 0
    return xp.where(positive, x, alpha * x), (positive, alpha)


def leaky_relu_backward(dy, cache):
    r"""Slope 1 on the positive side, $\alpha$ on the other: $dx = dy$ or $dx = \alpha \, dy$."""
    positive, alpha = cache
    xp = backend.namespace(dy)
    return xp.where(positive, dy, alpha * dy)


# --------------------------------------------------------------------------------- ELU

def elu_forward(x, alpha=1.0, *, bias=None, overwrite=False):
    r"""$y = x$ for $x > 0$, $\alpha (e^{x} - 1)$ otherwise (``x`` shifted by ``bias`` first).

    ``expm1`` is taken of ``min(x, 0)`` so large positive inputs never overflow in
    the branch that ``where`` discards. Cache: ``(x > 0, y, alpha)``.
    """
    xp = backend.namespace(x)
    x = _biased(x, bias, overwrite)
    positive = x > 0
    y = xp.where(positive, x, alpha * xp.expm1(xp.minimum(x, 0.0)))
    return y, (positive, y, alpha)


def elu_backward(dy, cache):
    r"""For $x \le 0$: $\frac{\partial}{\partial x} \alpha (e^{x} - 1) = \alpha e^{x} = y + \alpha$; for $x > 0$ the slope is 1.
    So $dx = dy$ where positive, $dx = dy \odot (y + \alpha)$ elsewhere."""
    positive, y, alpha = cache
    xp = backend.namespace(dy)
    return xp.where(positive, dy, dy * (y + alpha))


# ----------------------------------------------------------------------------- softmax

def softmax_forward(x):
    r"""$y[n, k] = \frac{\exp(x[n, k])}{\sum_{j} \exp(x[n, j])}$ over the last axis.

    Subtracting the row maximum first changes nothing mathematically (it cancels
    between numerator and denominator) and keeps every ``exp`` <= 1. Cache: ``y``.
    """
    xp = backend.namespace(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    y = e / xp.sum(e, axis=-1, keepdims=True)
    return y, y


def softmax_backward(dy, cache):
    r"""Softmax mixes a row, so its Jacobian is a full K x K matrix per row:
    $\frac{\partial y[k]}{\partial x[j]} = y[k] (\delta_{kj} - y[j])$. Contracting with the
    upstream gradient (written ``dy``, one row of (N, K)):

    $$
    dx[j] = \sum_{k} dy[k] y[k] (\delta_{kj} - y[j]) = y[j] \left( dy[j] - \sum_{k} dy[k] y[k] \right)
    $$

    i.e. ``dx = y * (dy - sum(dy * y, axis=-1, keepdims=True))`` -- shape (N, K), no
    K x K matrix is ever formed.
    """
    y = cache
    xp = backend.namespace(dy)
    return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True))


# ------------------------------------------------------------------------------ linear

def linear_forward(x, *, bias=None, overwrite=False):
    """$y = x$ (a linear code or a linear output, e.g. logits for the fused loss), or $y = x + bias$
    (in place with ``overwrite``). Cache: nothing. No kernel: the bias add is one pass already."""
    return _biased(x, bias, overwrite), None


def linear_backward(dy, cache):
    """Slope 1 everywhere: $dx = dy$."""
    return dy


# ------------------------------------------------- by name, for layers that apply their own

#: name -> (forward, backward) of the elementwise activations a layer applies to its own
#: pre-activation (Dense, the autoencoders), the bias fused in; ELU with alpha 1, leaky ReLU 0.01
ELEMENTWISE = {
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
    "relu": (relu_forward, relu_backward),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
    "elu": (elu_forward, elu_backward),
    "linear": (linear_forward, linear_backward),
}

#: the work of each :data:`ELEMENTWISE` pair per element, as the code above computes it (one FLOP per
#: elementwise operation, :mod:`npdl.bench.work`): ``(forward FLOPs without the bias add, backward FLOPs,
#: keeps its output y, bytes of mask kept)``. sigmoid: ``z * 0.5``, ``tanh``, ``+ 1``, ``* 0.5`` |
#: ``dy * y``, ``1 - y``, ``*``; tanh: ``tanh`` | ``y * y``, ``1 -``, ``dy *``; relu: ``maximum`` | ``y > 0``,
#: ``dy *``; leaky_relu: ``x > 0``, ``alpha * x``, ``where`` | ``alpha * dy``, ``where`` (a bool mask);
#: elu: ``x > 0``, ``minimum``, ``expm1``, ``alpha *``, ``where`` | ``y + alpha``, ``dy *``, ``where``.
ELEMENTWISE_WORK = {"sigmoid": (4, 3, True, 0), "tanh": (1, 3, True, 0), "relu": (1, 2, True, 0),
                    "leaky_relu": (3, 2, False, 1), "elu": (5, 3, True, 1), "linear": (0, 0, False, 0)}


def elements(shape) -> int:
    """The number of elements of an array of ``shape``."""
    size = 1
    for d in shape:
        size *= int(d)
    return size


_ALIASES = {"identity": "linear", "none": "linear", None: "linear"}


def check_elementwise(name, who: str) -> str:
    """The canonical name of an :data:`ELEMENTWISE` activation (``"identity"`` and ``None`` mean ``"linear"``)."""
    key = _ALIASES.get(name.lower() if isinstance(name, str) else name, name)
    key = key.lower() if isinstance(key, str) else key
    if key not in ELEMENTWISE:
        raise ValueError(f"{who}: unknown activation {name!r}; choose one of {', '.join(ELEMENTWISE)}")
    return key


# ------------------------------------------------------------------------------ layers

class Activation(Layer, register=False):
    """A parameter-free layer around one of the pairs above."""

    forward_fn = None
    backward_fn = None

    def forward(self, x, training=False):
        checks.check_float(x, f"{type(self).__name__} '{self.name}'")
        y, self.cache = type(self).forward_fn(x, **self._kwargs())
        return y

    def backward(self, dy):
        return type(self).backward_fn(dy, self.cache)

    def _kwargs(self) -> dict:
        return {}

    def work(self, input_shape, need_input_grad=True, dtype="float32") -> dict:
        """FLOPs of forward and backward on a batch of ``input_shape`` and what the cache keeps
        (:mod:`npdl.bench.work`): per element, :data:`ELEMENTWISE_WORK`; softmax over rows of K:
        ``max``, ``x - max``, ``exp``, ``sum``, ``e / sum`` forward, ``dy * y``, ``sum``, ``dy - s``, ``y *`` backward."""
        M = elements(input_shape)
        if isinstance(self, Softmax):
            return {"forward": 5 * M, "backward": 4 * M, "keeps_output": True}
        name = {"LeakyReLU": "leaky_relu"}.get(type(self).__name__, type(self).__name__.lower())
        forward, backward, keeps_y, mask = ELEMENTWISE_WORK[name]
        return {"forward": forward * M, "backward": backward * M, "keeps_output": keeps_y, "kept_bytes": mask * M}


class Sigmoid(Activation):
    forward_fn, backward_fn = sigmoid_forward, sigmoid_backward


class Tanh(Activation):
    forward_fn, backward_fn = tanh_forward, tanh_backward


class ReLU(Activation):
    forward_fn, backward_fn = relu_forward, relu_backward


class Softmax(Activation):
    """Softmax over the last axis. To train a classifier, prefer linear outputs with
    :class:`npdl.losses.SoftmaxCrossEntropy`, whose fused gradient is exact and stable."""
    forward_fn, backward_fn = softmax_forward, softmax_backward


class LeakyReLU(Activation):
    forward_fn, backward_fn = leaky_relu_forward, leaky_relu_backward

    def __init__(self, alpha: float = 0.01, name=None):
        super().__init__(name)
        self.alpha = float(alpha)

    def _kwargs(self):
        return {"alpha": self.alpha}

    def get_config(self):
        return {"alpha": self.alpha, "name": self.name}


class ELU(Activation):
    forward_fn, backward_fn = elu_forward, elu_backward

    def __init__(self, alpha: float = 1.0, name=None):
        super().__init__(name)
        self.alpha = float(alpha)

    def _kwargs(self):
        return {"alpha": self.alpha}

    def get_config(self):
        return {"alpha": self.alpha, "name": self.name}


ACTIVATIONS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU, "leaky_relu": LeakyReLU,
               "elu": ELU, "softmax": Softmax}


def get_activation(name: str) -> Activation:
    """A new activation layer from its name (``"sigmoid"``, ``"tanh"``, ``"relu"``, ...)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None
