"""2-D convolution (cross-correlation, as every framework computes it) on NCHW batches.

``y[n, o, i, j] = b[o] + sum_{c, kh, kw} W[o, c, kh, kw] * xpad[n, c, i*sh + kh, j*sw + kw]``

with ``x`` (N, C, H, W), ``W`` (C_out, C, KH, KW), ``b`` (C_out,), strides ``(sh, sw)``
and ``xpad`` the input inside a border of zeros. The code computes it as one matrix
product: the im2col kernel (:mod:`npdl.kernels` ``im2col``) copies every KH x KW patch
into a column of ``cols`` (C*KH*KW, N*OH*OW), and ``y`` is ``W2 @ cols`` with
``W2 = W`` reshaped to (C_out, C*KH*KW).

Padding:

* ``"valid"``: none; ``OH = (H - KH) // sh + 1``.
* ``"same"`` (Keras/TensorFlow): ``OH = ceil(H / sh)``; the rows needed,
  ``max((OH - 1)*sh + KH - H, 0)``, are split with the odd one at the bottom
  (``pt = total // 2``, ``pb = total - pt``); likewise columns, the extra on the right.
  At stride 1 the output has the input's size.
* an int ``p`` or a pair ``(ph, pw)``: that many zero rows on top *and* bottom (columns
  left and right), as PyTorch's ``padding=``; ``OH = (H + 2 ph - KH) // sh + 1``.
"""

from __future__ import annotations

from .. import backend, checks, kernels
from ..errors import ShapeError
from ..init import get_initializer, initializer_name
from .base import Layer


# --------------------------------------------------------------------------- geometry

def pair(value, what: str, who: str, minimum: int = 1) -> tuple:
    """``value`` (an int or a pair of ints) as ``(h, w)``, each at least ``minimum``."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        value = (value, value)
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)):
        return int(value[0]), int(value[1])
    raise ValueError(f"{who}: {what} must be an int >= {minimum} or a pair of them, got {value!r}")


def normalize_padding(padding, who: str):
    """``"valid"``, ``"same"`` or ``(ph, pw)`` from what a user may write."""
    if isinstance(padding, str):
        if padding.lower() in ("valid", "same"):
            return padding.lower()
        raise ValueError(f"{who}: padding must be 'valid', 'same', an int or a pair of ints, got {padding!r}")
    return pair(padding, "padding", who, minimum=0)


def conv_geometry(x_shape, kernel, stride, padding, who: str, what: str = "kernel"):
    """``(OH, OW, (pt, pb, pl, pr))`` for a window of ``kernel`` = (KH, KW) over ``x_shape`` (N, C, H, W).

    Raises :class:`ShapeError` naming ``who`` and the shapes when the output would be empty.
    """
    H, W = int(x_shape[2]), int(x_shape[3])
    (KH, KW), (sh, sw) = kernel, stride
    padding = normalize_padding(padding, who)
    if padding == "same":
        OH, OW = -(-H // sh), -(-W // sw)
        th, tw = max((OH - 1) * sh + KH - H, 0), max((OW - 1) * sw + KW - W, 0)
        pad = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        ph, pw = (0, 0) if padding == "valid" else padding
        pad = (ph, ph, pw, pw)
        OH = (H + 2 * ph - KH) // sh + 1 if H + 2 * ph >= KH else 0
        OW = (W + 2 * pw - KW) // sw + 1 if W + 2 * pw >= KW else 0
    if OH <= 0 or OW <= 0:
        shown = padding if isinstance(padding, str) else f"{padding[0]}x{padding[1]}"
        raise ShapeError(f"{who}: input of {H}x{W} pixels (shape {tuple(int(d) for d in x_shape)}) is smaller "
                         f"than the {KH}x{KW} {what} with padding {shown!r}; the output would be empty")
    return OH, OW, pad


# ------------------------------------------------------------------ the pure functions

def conv2d_forward(x, W, b, stride=1, padding="valid", workspace=None):
    """Convolve a batch: ``x`` (N, C, H, W), ``W`` (C_out, C, KH, KW), ``b`` (C_out,) or ``None``.

    Returns ``y`` (N, C_out, OH, OW) and the cache ``(x_shape, W, cols, stride, pad, has_bias, workspace)``.
    With the compiled CPU kernel (which has ``conv_forward``: the same products a chunk of
    images at a time, so ``cols`` never leaves the cache) the cache holds ``x`` in place
    of ``cols`` and the kernel's ``workspace``, and the backward pass goes to the kernel's
    ``conv_backward``, which rebuilds each chunk's ``cols``.
    The backward pass needs ``cols`` (for ``dW``) and ``W`` (for ``dx``); ``cols`` holds every
    input value KH*KW times over, the price of doing the whole convolution as one
    matrix product. ``workspace`` is a dict the layer owns, where the Numba kernel
    keeps its ``cols`` buffer from one call to the next.
    """
    xp = backend.namespace(x, W)
    stride = pair(stride, "stride", "conv2d_forward")
    C_out, C, KH, KW = (int(d) for d in W.shape)
    N = int(x.shape[0])
    OH, OW, pad = conv_geometry(x.shape, (KH, KW), stride, padding, "conv2d_forward")
    kernel = kernels.get("im2col", xp)
    if hasattr(kernel, "conv_forward"):
        # the compiled kernel does these same products a few images at a time (cols stays in
        # cache, see npdl.kernels.numba.im2col); the backward pass rebuilds cols from x
        workspace = {} if workspace is None else workspace
        y = kernel.conv_forward(x, W, b, stride, pad, workspace)
        return y, (tuple(x.shape), W, x, stride, pad, b is not None, workspace)
    cols = kernel.im2col(x, (KH, KW), stride, pad, workspace)  # (C*KH*KW, N*OH*OW)
    W2 = xp.reshape(W, (C_out, C * KH * KW))
    out = W2 @ cols                                                                # (C_out, N*OH*OW)
    if b is not None:
        out += xp.reshape(b, (C_out, 1))  # out is a fresh array: add in place
    # (C_out, N, OH*OW) -> (N, C_out, OH*OW): moves whole OH*OW blocks; the reshape to
    # (N, C_out*OH*OW) forces the copy into NCHW order, the last one is a free view
    y = xp.reshape(xp.permute_dims(xp.reshape(out, (C_out, N, OH * OW)), (1, 0, 2)), (N, C_out * OH * OW))
    return xp.reshape(y, (N, C_out, OH, OW)), (tuple(x.shape), W, cols, stride, pad, b is not None, None)


def conv2d_backward(dy, cache, need_dx=True):
    """Gradients of the convolution, given ``dy = dL/dy`` of shape (N, C_out, OH, OW).

    Differentiate ``y[n, o, i, j] = b[o] + sum_{c, kh, kw} W[o, c, kh, kw] xpad[n, c, i*sh + kh, j*sw + kw]``:

    * ``dL/db[o] = sum_{n, i, j} dy[n, o, i, j]``: (C_out,). ``b[o]`` was broadcast over
      every image and pixel of channel ``o``; a broadcast forward is a sum backward.
    * ``dL/dW[o, c, kh, kw] = sum_{n, i, j} dy[n, o, i, j] xpad[n, c, i*sh + kh, j*sw + kw]``:
      (C_out, C, KH, KW). Each weight met one input pixel per output pixel, so its
      gradient is the **correlation of the input with the upstream gradient**
      (``dy`` as the kernel, its taps ``sh``, ``sw`` apart), summed over the batch.
    * ``dL/dxpad[n, c, p, q] = sum dy[n, o, i, j] W[o, c, kh, kw]`` over every ``(o, i, j, kh, kw)``
      with ``i*sh + kh = p`` and ``j*sw + kw = q``: each input pixel collects ``dy`` from
      every output pixel whose window covered it, weighted by the tap that met it.
      That is the **full correlation of ``dy`` (with ``sh - 1``, ``sw - 1`` zeros between its
      pixels) with the kernel rotated by 180 degrees** and with in- and output channels
      swapped -- a transposed convolution. ``dx`` is ``dxpad`` without its border
      (padding is a constant, not an input).

    The code does all three as the same matrix products the forward pass used. With
    ``cols[(c, kh, kw), (n, i, j)] = xpad[n, c, i*sh + kh, j*sw + kw]`` and ``dy`` reordered to
    ``dy_t[o, (n, i, j)] = dy[n, o, i, j]``, the forward pass was ``out = W2 @ cols``, so

    * ``db = sum(dy_t, axis=1)``: (C_out,);
    * ``dW2 = dy_t @ cols^T``: (C_out, N*OH*OW) @ (N*OH*OW, C*KH*KW) -> (C_out, C*KH*KW), reshaped to ``W``'s
      shape -- the sum over ``(n, i, j)`` above is this product's inner dimension;
    * ``dcols = W2^T @ dy_t``: (C*KH*KW, C_out) @ (C_out, N*OH*OW) -> (C*KH*KW, N*OH*OW), the gradient of
      every copy im2col made; ``dx = col2im(dcols)`` adds each copy's gradient back into the
      pixel it was copied from (im2col's adjoint: a pixel in several patches gets the sum)
      and drops the border: (N, C, H, W).

    Returns ``(dx, dW, db)``; ``db`` is ``None`` without a bias and ``dx`` is ``None`` with
    ``need_dx=False`` (a network's first layer: that skips ``dcols`` and col2im, the
    larger half of the backward pass).
    """
    x_shape, W, cols, stride, pad, has_bias, workspace = cache
    xp = backend.namespace(dy, W)
    if workspace is not None:  # the chunked kernel's cache: ``cols`` holds x, see conv2d_forward
        return kernels.get("im2col", xp).conv_backward(dy, cols, W, stride, pad, has_bias, need_dx, workspace)
    N, C_out, OH, OW = (int(d) for d in dy.shape)
    W2 = xp.reshape(W, (C_out, -1))
    # (N, C_out, OH*OW) -> (C_out, N*OH*OW), copied so the products below see one plain matrix
    dy_t = xp.reshape(xp.permute_dims(xp.reshape(dy, (N, C_out, OH * OW)), (1, 0, 2)), (C_out, N * OH * OW))
    dW = xp.reshape(dy_t @ cols.T, tuple(W.shape))
    db = xp.sum(dy_t, axis=1) if has_bias else None
    dx = None
    if need_dx:
        dcols = W2.T @ dy_t
        dx = kernels.get("im2col", xp).col2im(dcols, x_shape, tuple(W.shape[2:]), stride, pad)
    return dx, dW, db


# ------------------------------------------------------------------------------ layer

class Conv2D(Layer):
    """2-D convolution layer on NCHW input: ``Conv2D(in_channels, out_channels, kernel_size)``.

    ``kernel_size`` and ``stride`` are an int or a pair ``(h, w)``; ``padding`` is
    ``"valid"``, ``"same"`` (Keras/TensorFlow: ``ceil(H / stride)`` outputs, the odd padding
    row at the bottom and column at the right), an int or a pair (zeros on both sides).
    The weight ``W`` has shape (out_channels, in_channels, KH, KW). ``init`` is as for
    :class:`~npdl.layers.Dense`, with the fans of a convolution:
    ``fan_in = in_channels*KH*KW`` (the inputs of one output unit) and
    ``fan_out = out_channels*KH*KW``; the bias starts at zero. ``dtype``, ``device`` and
    ``rng`` are as for Dense.
    """

    weight_names = ("W",)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding="valid",
                 init="glorot_uniform", bias: bool = True, dtype=None, device="cpu", rng=None,
                 name: str | None = None):
        super().__init__(name)
        if int(in_channels) <= 0 or int(out_channels) <= 0:
            raise ValueError(f"Conv2D: in_channels and out_channels must be positive, "
                             f"got in_channels={in_channels}, out_channels={out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2D")
        self.stride = pair(stride, "stride", "Conv2D")
        self.padding = normalize_padding(padding, "Conv2D")
        self.bias = bool(bias)
        self.init = get_initializer(init)
        self.dtype = backend.resolve_float(dtype)
        device = backend.get_device(device)
        rng = rng if rng is not None else backend.default_generator(device)
        KH, KW = self.kernel_size
        shape = (self.out_channels, self.in_channels, KH, KW)
        fan_in, fan_out = self.in_channels * KH * KW, self.out_channels * KH * KW
        self.params["W"] = device.asarray(self.init(rng, shape, fan_in, fan_out, self.dtype))
        if self.bias:
            self.params["b"] = device.zeros((self.out_channels,), self.dtype)
        self._workspace: dict = {}  # buffers the kernels reuse between steps (never part of the result)

    @property
    def who(self) -> str:
        KH, KW = self.kernel_size
        return f"Conv2D({self.in_channels}->{self.out_channels}, {KH}x{KW}) '{self.name}'"

    def forward(self, x, training=False):
        who = self.who
        checks.check_float(x, who, dtype=self.dtype)
        checks.check_rank(x, 4, who, layout="(batch, channels, height, width)")
        checks.check_dim(x, 1, self.in_channels, who, meaning="channels")
        checks.check_same_device(x, self.params["W"], who)
        conv_geometry(x.shape, self.kernel_size, self.stride, self.padding, who)
        y, self.cache = conv2d_forward(x, self.params["W"], self.params.get("b"), self.stride, self.padding,
                                       workspace=self._workspace)
        return y

    def backward(self, dy):
        dx, dW, db = conv2d_backward(dy, self.cache, self.need_input_grad)
        self.grads["W"] = dW
        if db is not None:
            self.grads["b"] = db
        return dx

    def to(self, device):
        self._workspace = {}
        return super().to(device)

    def output_shape(self, input_shape):
        C, H, W = (int(d) for d in input_shape)
        OH, OW, _ = conv_geometry((1, C, H, W), self.kernel_size, self.stride, self.padding, self.who)
        return (self.out_channels, OH, OW)

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "init": initializer_name(self.init), "bias": self.bias, "dtype": self.dtype, "name": self.name}
