"""Max and average pooling on NCHW batches, each a forward/backward pair.

A window of ``pool_size`` = (KH, KW) moves over each channel of each image by
``strides`` = (sh, sw) (the pool size by default, so windows tile the image). Padding
is ``"valid"`` (none; rows and columns that do not fill a window are dropped) or
``"same"`` (Keras/TensorFlow: ``ceil(H / sh)`` outputs, the odd padding row at the
bottom, the odd column at the right; see :func:`npdl.layers.conv.conv_geometry`).
The windows are computed by the ``pool`` kernel (:mod:`npdl.kernels`).

* **max pooling** pads with ``-inf`` (a padded cell never wins). The gradient of a
  window's maximum goes to **one** cell: the first maximum in row-major order
  (``kh`` first, then ``kw``) when several cells tie. Any split of ``dy`` among tied
  cells is a valid subgradient; sending it all to one cell is what PyTorch and JAX do
  too, and makes the rule easy to state and to test.
* **average pooling** divides by the number of window cells that lie *inside* the
  input: with ``"same"`` padding the padded cells are **not counted**, as in Keras
  (PyTorch's ``count_include_pad=True`` default differs at the borders).
"""

from __future__ import annotations

from .. import backend, checks, kernels
from .base import LAYERS, Layer
from .conv import conv_geometry, normalize_padding, pair


def _pool_geometry(x, pool_size, strides, padding, who):
    kernel = pair(pool_size, "pool_size", who)
    stride = kernel if strides is None else pair(strides, "strides", who)
    _, _, pad = conv_geometry(x.shape, kernel, stride, padding, who, what="pooling window")
    return kernel, stride, pad


# ------------------------------------------------------------------------ max pooling

def maxpool2d_forward(x, pool_size=2, strides=None, padding="valid"):
    """``y[n, c, i, j] = max_{kh, kw} xpad[n, c, i*sh + kh, j*sw + kw]`` with ``xpad`` padded by ``-inf``.

    Shapes: ``x`` (N, C, H, W) -> ``y`` (N, C, OH, OW). Cache: ``(arg, x_shape, geometry)``,
    where ``arg[n, c, i, j] = kh*KW + kw`` is the window offset of the (first) maximum.
    """
    xp = backend.namespace(x)
    kernel, stride, pad = _pool_geometry(x, pool_size, strides, padding, "maxpool2d_forward")
    y, arg = kernels.get("pool", xp).max_forward(x, kernel, stride, pad)
    return y, (arg, tuple(x.shape), (kernel, stride, pad))


def maxpool2d_backward(dy, cache):
    """The maximum is locally the identity on its winning cell and constant in the others:
    ``dy[n, c, i, j] / dxpad[n, c, p, q] = 1`` for the cell ``(p, q) = (i*sh + kh, j*sw + kw)`` with
    ``kh*KW + kw = arg[n, c, i, j]``, and 0 elsewhere. So each ``dy`` element is routed to
    its window's winning cell, and a cell that won several overlapping windows collects
    the sum: ``dx[n, c, p, q] = sum_{i, j: winner (p, q)} dy[n, c, i, j]``; shape (N, C, H, W).
    A winner in the padding (only possible when a window holds nothing but ``-inf``) is dropped.
    """
    arg, x_shape, (kernel, stride, pad) = cache
    return kernels.get("pool", backend.namespace(dy)).max_backward(dy, arg, x_shape, kernel, stride, pad)


# -------------------------------------------------------------------- average pooling

def avgpool2d_forward(x, pool_size=2, strides=None, padding="valid"):
    """``y[n, c, i, j] = (1 / count[i, j]) sum xpad[n, c, i*sh + kh, j*sw + kw]`` over the window,
    where ``count[i, j]`` is the number of the window's cells inside the input (padding
    is zero and not counted). Shapes: (N, C, H, W) -> (N, C, OH, OW). Cache: ``(x_shape, geometry)``.
    """
    xp = backend.namespace(x)
    kernel, stride, pad = _pool_geometry(x, pool_size, strides, padding, "avgpool2d_forward")
    y = kernels.get("pool", xp).avg_forward(x, kernel, stride, pad)
    return y, (tuple(x.shape), (kernel, stride, pad))


def avgpool2d_backward(dy, cache):
    """``y[n, c, i, j]`` depends on each real cell of its window with slope ``1 / count[i, j]``, so
    ``dx[n, c, p, q] = sum dy[n, c, i, j] / count[i, j]`` over the windows ``(i, j)`` that contain
    ``(p, q)``; shape (N, C, H, W). With non-overlapping windows that is one term per cell."""
    x_shape, (kernel, stride, pad) = cache
    return kernels.get("pool", backend.namespace(dy)).avg_backward(dy, x_shape, kernel, stride, pad)


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

    def get_config(self):
        return {"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding, "name": self.name}


LAYERS.pop("_Pool2D")  # a shared base, not a layer to rebuild from a config


class MaxPool2D(_Pool2D):
    """Max pooling: ``MaxPool2D(pool_size=2, strides=None, padding="valid")``; ``strides``
    defaults to ``pool_size``. The gradient of a tied window goes to its first maximum
    in row-major order; ``"same"`` padding pads with ``-inf``."""
    forward_fn, backward_fn = maxpool2d_forward, maxpool2d_backward


class AvgPool2D(_Pool2D):
    """Average pooling: ``AvgPool2D(pool_size=2, strides=None, padding="valid")``; with
    ``"same"`` padding a border window averages only its cells inside the input (Keras)."""
    forward_fn, backward_fn = avgpool2d_forward, avgpool2d_backward
