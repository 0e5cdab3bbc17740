"""Max and average pooling on NCHW batches, each a forward/backward pair.

A window of ``pool_size`` = (KH, KW) moves over each channel of each image by
``strides`` = (sh, sw) (the pool size by default, so windows tile the image). Padding
is ``"valid"`` (none; rows and columns that do not fill a window are dropped) or
``"same"`` (Keras/TensorFlow: ``ceil(H / sh)`` outputs, the odd padding row at the
bottom, the odd column at the right; see :func:`npdl.kernels.geometry.conv_geometry`).
Output pixel ``(oh, ow)`` pools the padded input cells ``(oh*sh + kh, ow*sw + kw)``,
``kh < KH``, ``kw < KW``; the window offset ``k = kh*KW + kw`` numbers a window's cells
in row-major order.

* **max pooling** pads with ``-inf`` (a padded cell never wins). The gradient of a
  window's maximum goes to **one** cell: the first maximum in row-major order
  (``kh`` first, then ``kw``) when several cells tie. Any split of ``dy`` among tied
  cells is a valid subgradient; sending it all to one cell is what PyTorch and JAX do
  too, and makes the rule easy to state and to test. Windows that overlap (stride <
  pool size) can pick the same input cell; its gradients add.
* **average pooling** divides by the number of window cells that lie *inside* the
  input: with ``"same"`` padding the padded cells are **not counted**, as in Keras
  (PyTorch's ``count_include_pad=True`` default differs at the borders).

The four window functions (``max_pool_forward`` ...) are named operations with kernels
(``pool.max_forward`` ..., :mod:`npdl.kernels`: Numba on the CPU, numba.cuda on a GPU);
``NPDL_KERNELS=off`` runs the code below.
"""

from __future__ import annotations

from .. import backend, checks, kernels
from ..kernels.geometry import conv_geometry, normalize_padding, pair, sizes
from .base import Layer
from .conv import pad_border, window


def _pool_geometry(x, pool_size, strides, padding, who):
    kernel = pair(pool_size, "pool_size", who)
    stride = kernel if strides is None else pair(strides, "strides", who)
    _, _, pad = conv_geometry(x.shape, kernel, stride, padding, who, what="pooling window")
    return kernel, stride, pad


# ------------------------------------------------------------------------ max pooling

@kernels.accelerated("pool.max_forward")
def max_pool_forward(x, kernel, stride, pad):
    r"""``(y, arg)``: $y[n, c, i, j] = \max_{kh, kw} xpad[n, c, i \cdot sh + kh, j \cdot sw + kw]$ (N, C, OH, OW),
    with ``xpad`` padded by ``-inf``, and $arg[n, c, i, j] = kh \cdot KW + kw$, the window offset of
    the maximum (the first in row-major order on ties: ``argmax`` returns the first occurrence)."""
    xp = backend.namespace(x)
    N, C, H, W, KH, KW, OH, OW = sizes(x.shape, kernel, stride, pad)
    xpad = pad_border(x, tuple(pad), value=-float("inf"))
    cells = xp.stack([xpad[window(kh, kw, OH, OW, stride)] for kh in range(KH) for kw in range(KW)],
                     axis=0)  # (KH*KW, N, C, OH, OW)
    return xp.max(cells, axis=0), xp.argmax(cells, axis=0)


@kernels.accelerated("pool.max_backward")
def max_pool_backward(dy, arg, x_shape, kernel, stride, pad):
    """``dx`` (N, C, H, W): each window's ``dy`` added to the one cell ``arg`` names; the part of
    ``dxpad`` in the padding is dropped."""
    xp = backend.namespace(dy)
    N, C, H, W, KH, KW, OH, OW = sizes(x_shape, kernel, stride, pad)
    pt, pb, pl, pr = pad
    dxpad = xp.zeros((N, C, H + pt + pb, W + pl + pr), dtype=dy.dtype, device=dy.device)
    for kh in range(KH):
        for kw in range(KW):
            where = window(kh, kw, OH, OW, stride)
            dxpad[where] = dxpad[where] + xp.where(arg == kh * KW + kw, dy, 0.0)
    return dxpad[:, :, pt:pt + H, pl:pl + W]


def maxpool2d_forward(x, pool_size=2, strides=None, padding="valid"):
    r"""$y[n, c, i, j] = \max_{kh, kw} xpad[n, c, i \cdot sh + kh, j \cdot sw + kw]$ with ``xpad`` padded by ``-inf``.

    Shapes: ``x`` (N, C, H, W) -> ``y`` (N, C, OH, OW). Cache: ``(arg, x_shape, geometry)``,
    where $arg[n, c, i, j] = kh \cdot KW + kw$ is the window offset of the (first) maximum.
    """
    kernel, stride, pad = _pool_geometry(x, pool_size, strides, padding, "maxpool2d_forward")
    y, arg = max_pool_forward(x, kernel, stride, pad)
    return y, (arg, tuple(x.shape), (kernel, stride, pad))


def maxpool2d_backward(dy, cache):
    r"""The maximum is locally the identity on its winning cell and constant in the others:
    $\frac{\partial y[n, c, i, j]}{\partial xpad[n, c, p, q]} = 1$ for the cell
    $(p, q) = (i \cdot sh + kh, j \cdot sw + kw)$ with $kh \cdot KW + kw = arg[n, c, i, j]$, and 0 elsewhere.
    So each ``dy`` element is routed to its window's winning cell, and a cell that won several
    overlapping windows collects the sum, shape (N, C, H, W):

    $$
    dx[n, c, p, q] = \sum_{i, j \,:\, \text{winner } (p, q)} dy[n, c, i, j]
    $$

    A winner in the padding (only possible when a window holds nothing but ``-inf``) is dropped.
    """
    arg, x_shape, (kernel, stride, pad) = cache
    return max_pool_backward(dy, arg, x_shape, kernel, stride, pad)


# -------------------------------------------------------------------- average pooling

def _counts(x_shape, kernel, stride, pad, dtype, device, xp):
    """How many real (unpadded) input cells each window holds: (OH, OW)."""
    N, C, H, W, KH, KW, OH, OW = sizes(x_shape, kernel, stride, pad)
    ones = pad_border(xp.ones((1, 1, H, W), dtype=dtype, device=device), tuple(pad))
    total = sum(ones[window(kh, kw, OH, OW, stride)] for kh in range(KH) for kw in range(KW))
    return total[0, 0, ...]


@kernels.accelerated("pool.avg_forward")
def avg_pool_forward(x, kernel, stride, pad):
    r"""``y`` (N, C, OH, OW): $y[n, c, i, j] = \frac{1}{count[i, j]} \sum_{kh, kw} xpad[n, c, i \cdot sh + kh, j \cdot sw + kw]$ over
    the window, where ``count[i, j]`` is the number of the window's cells inside the input
    (padding is zero and not counted). The cells are added in row-major window order."""
    N, C, H, W, KH, KW, OH, OW = sizes(x.shape, kernel, stride, pad)
    xpad = pad_border(x, tuple(pad))
    total = sum(xpad[window(kh, kw, OH, OW, stride)] for kh in range(KH) for kw in range(KW))
    return total / _counts(x.shape, kernel, stride, pad, x.dtype, x.device, backend.namespace(x))


@kernels.accelerated("pool.avg_backward")
def avg_pool_backward(dy, x_shape, kernel, stride, pad):
    r"""``dx`` (N, C, H, W): every real cell of a window receives $\frac{dy}{count}$ of that window."""
    xp = backend.namespace(dy)
    N, C, H, W, KH, KW, OH, OW = sizes(x_shape, kernel, stride, pad)
    pt, pb, pl, pr = pad
    share = dy / _counts(x_shape, kernel, stride, pad, dy.dtype, dy.device, xp)
    dxpad = xp.zeros((N, C, H + pt + pb, W + pl + pr), dtype=dy.dtype, device=dy.device)
    for kh in range(KH):
        for kw in range(KW):
            where = window(kh, kw, OH, OW, stride)
            dxpad[where] = dxpad[where] + share
    return dxpad[:, :, pt:pt + H, pl:pl + W]


def avgpool2d_forward(x, pool_size=2, strides=None, padding="valid"):
    r"""$y[n, c, i, j] = \frac{1}{count[i, j]} \sum_{kh, kw} xpad[n, c, i \cdot sh + kh, j \cdot sw + kw]$ over the window,
    where ``count[i, j]`` is the number of the window's cells inside the input (padding
    is zero and not counted). Shapes: (N, C, H, W) -> (N, C, OH, OW). Cache: ``(x_shape, geometry)``.
    """
    kernel, stride, pad = _pool_geometry(x, pool_size, strides, padding, "avgpool2d_forward")
    return avg_pool_forward(x, kernel, stride, pad), (tuple(x.shape), (kernel, stride, pad))


def avgpool2d_backward(dy, cache):
    r"""$y[n, c, i, j]$ depends on each real cell of its window with slope $\frac{1}{count[i, j]}$, so
    $dx[n, c, p, q] = \sum_{i, j} \frac{dy[n, c, i, j]}{count[i, j]}$ over the windows $(i, j)$ that contain
    $(p, q)$; shape (N, C, H, W). With non-overlapping windows that is one term per cell."""
    x_shape, (kernel, stride, pad) = cache
    return avg_pool_backward(dy, x_shape, kernel, stride, pad)


# ----------------------------------------------------------------------------- layers

class _Pool2D(Layer):
    forward_fn = None
    backward_fn = None

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None):
        super().__init__(name)
        kind = type(self).__name__
        self.pool_size = pair(pool_size, "pool_size", kind)
        self.strides = self.pool_size if strides is None else pair(strides, "strides", kind)
        self.padding = normalize_padding(padding, kind)
        if not isinstance(self.padding, str):
            raise ValueError(f"{kind}: padding must be 'valid' or 'same', got {padding!r}")

    @property
    def who(self) -> str:
        return f"{type(self).__name__}({self.pool_size[0]}x{self.pool_size[1]}) '{self.name}'"

    def forward(self, x, training=False):
        who = self.who
        checks.check_float(x, who)
        checks.check_rank(x, 4, who, layout="(batch, channels, height, width)")
        _pool_geometry(x, self.pool_size, self.strides, self.padding, who)
        y, self.cache = type(self).forward_fn(x, self.pool_size, self.strides, self.padding)
        return y

    def backward(self, dy):
        return type(self).backward_fn(dy, self.cache)

    def output_shape(self, input_shape):
        C, H, W = (int(d) for d in input_shape)
        OH, OW, _ = conv_geometry((1, C, H, W), self.pool_size, self.strides, self.padding, self.who,
                                  what="pooling window")
        return (C, OH, OW)

    def work(self, input_shape, need_input_grad=True, dtype=None) -> dict:
        """FLOPs of forward and backward on ``input_shape`` (N, C, H, W) and what the cache keeps
        (:mod:`npdl.bench.work`). With ``K = KH*KW`` window cells and ``M = N*C*OH*OW`` outputs: max
        pooling reads every cell twice (``max``, ``argmax``: 2 K M) and keeps ``arg`` (int64, M); its
        backward does ``arg == k``, ``where`` and an add per cell (3 K M). Average pooling adds K M cells
        and divides M by the counts (K OH OW to count them), forward and backward alike."""
        N, C = int(input_shape[0]), int(input_shape[1])
        _, OH, OW = self.output_shape(tuple(input_shape[1:]))
        K, M = self.pool_size[0] * self.pool_size[1], N * C * OH * OW
        if isinstance(self, MaxPool2D):
            return {"forward": 2 * K * M, "backward": 3 * K * M, "kept_bytes": 8 * M}
        return {"forward": K * M + K * OH * OW + M, "backward": K * M + K * OH * OW + M}

    def get_config(self):
        return {"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding, "name": self.name}




class MaxPool2D(_Pool2D):
    """Max pooling: ``MaxPool2D(pool_size=2, strides=None, padding="valid")``; ``strides``
    defaults to ``pool_size``. The gradient of a tied window goes to its first maximum
    in row-major order; ``"same"`` padding pads with ``-inf``."""
    forward_fn, backward_fn = maxpool2d_forward, maxpool2d_backward


class AvgPool2D(_Pool2D):
    """Average pooling: ``AvgPool2D(pool_size=2, strides=None, padding="valid")``; with
    ``"same"`` padding a border window averages only its cells inside the input (Keras)."""
    forward_fn, backward_fn = avgpool2d_forward, avgpool2d_backward
