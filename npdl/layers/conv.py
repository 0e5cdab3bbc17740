r"""2-D convolution (cross-correlation, as every framework computes it) on NCHW batches.

$$
y[n, o, i, j] = b[o] + \sum_{c, kh, kw} W[o, c, kh, kw] \cdot xpad[n, c, i \cdot sh + kh, j \cdot sw + kw]
$$

with ``x`` (N, C, H, W), ``W`` (C_out, C, KH, KW), ``b`` (C_out,), strides ``(sh, sw)``
and ``xpad`` the input inside a border of ``(pt, pb, pl, pr)`` zeros; with an ``activation``
$f$ (as Keras's ``Conv2D(..., activation="relu")``) the output is $f$ of that, elementwise. The code computes it
as one matrix product: :func:`im2col` copies every KH x KW patch into a column of
``cols`` (C*KH*KW, N*OH*OW), and ``y`` is ``W2 @ cols`` with ``W2 = W`` reshaped to
(C_out, C*KH*KW).

Padding (:func:`npdl.kernels.geometry.conv_geometry` works it out):

* ``"valid"``: none; $OH = \lfloor (H - KH) / sh \rfloor + 1$.
* ``"same"`` (Keras/TensorFlow): $OH = \lceil H / sh \rceil$; the rows needed,
  $\max((OH - 1) \cdot sh + KH - H, 0)$, are split with the odd one at the bottom
  (``pt = total // 2``, ``pb = total - pt``); likewise columns, the extra on the right.
  At stride 1 the output has the input's size.
* an int ``p`` or a pair ``(ph, pw)``: that many zero rows on top *and* bottom (columns
  left and right), as PyTorch's ``padding=``; $OH = \lfloor (H + 2 ph - KH) / sh \rfloor + 1$.

Four functions here are named operations with kernels (:mod:`npdl.kernels`):
``im2col.im2col`` and ``im2col.col2im`` (Numba on the CPU, numba.cuda on a GPU) and
``conv2d.forward`` and ``conv2d.backward``. On NumPy arrays the last two go to the
Numba kernel in ``npdl/kernels/numba/conv2d.py``, which does the same products a few
images at a time so that ``cols`` never leaves the CPU's cache (from 16 input channels with
``cols``'s rows in ``(kh, kw, c)`` order, a layout that is faster to copy); on a GPU the code below
runs, with the numba.cuda im2col and cuBLAS for the products. ``NPDL_KERNELS=off``
runs the code below everywhere.
"""

from __future__ import annotations

from .. import backend, checks, kernels
from ..init import get_initializer, initializer_name
from ..kernels.geometry import conv_geometry, normalize_padding, output_size, pair
from .activations import ELEMENTWISE, ELEMENTWISE_WORK, check_elementwise
from .base import Layer


# ------------------------------------------------------------------ im2col and col2im

def pad_border(x, pad, value=0.0):
    """``x`` (N, C, H, W) inside a border of ``value``: (N, C, H + pt + pb, W + pl + pr); ``x`` itself
    when ``pad`` is all zeros."""
    pt, pb, pl, pr = pad
    N, C, H, W = x.shape
    if tuple(pad) == (0, 0, 0, 0):
        return x
    xp = backend.namespace(x)
    xpad = xp.full((N, C, H + pt + pb, W + pl + pr), value, dtype=x.dtype, device=x.device)
    xpad[:, :, pt:pt + H, pl:pl + W] = x
    return xpad


def window(kh, kw, OH, OW, stride):
    """The slices of the padded input holding, for every output pixel, the cell at window offset ``(kh, kw)``:
    ``xpad[window(kh, kw, ...)][n, c, oh, ow] = xpad[n, c, oh*sh + kh, ow*sw + kw]``, shape (N, C, OH, OW)."""
    sh, sw = stride
    return (slice(None), slice(None), slice(kh, kh + sh * (OH - 1) + 1, sh), slice(kw, kw + sw * (OW - 1) + 1, sw))


@kernels.accelerated("im2col.im2col")
def im2col(x, kernel, stride, pad, workspace=None):
    r"""$cols[(c, kh, kw), (n, oh, ow)] = xpad[n, c, oh \cdot sh + kh, ow \cdot sw + kw]$: (C*KH*KW, N*OH*OW).

    ``x`` (N, C, H, W), ``kernel`` = (KH, KW), ``stride`` = (sh, sw), ``pad`` = (pt, pb, pl, pr);
    rows and columns are in row-major order of their index triples, so a convolution is
    ``W.reshape(C_out, C*KH*KW) @ cols``. Every input pixel appears once per window that
    covers it; a window cell in the padding is 0.

    Built from KH*KW strided slices of the padded input, one per window offset. ``workspace``
    is a dict where a kernel may keep its ``cols`` buffer between calls (the Numba one does:
    its result is then that buffer, overwritten by the next call with the same ``workspace``);
    this code ignores it and returns a new array.
    """
    xp = backend.namespace(x)
    (KH, KW), (N, C, H, W) = kernel, x.shape
    OH, OW = output_size(H, KH, stride[0], pad[0], pad[1]), output_size(W, KW, stride[1], pad[2], pad[3])
    xpad = pad_border(x, tuple(pad))
    patches = [xpad[window(kh, kw, OH, OW, stride)] for kh in range(KH) for kw in range(KW)]  # each (N, C, OH, OW)
    cols = xp.stack(patches, axis=2)                       # (N, C, KH*KW, OH, OW)
    cols = xp.permute_dims(cols, (1, 2, 0, 3, 4))          # (C, KH*KW, N, OH, OW)
    return xp.reshape(cols, (C * KH * KW, N * OH * OW))


@kernels.accelerated("im2col.col2im")
def col2im(cols, x_shape, kernel, stride, pad):
    r"""The adjoint of :func:`im2col`: ``dx`` (N, C, H, W) from ``dcols`` (C*KH*KW, N*OH*OW).

    Every entry goes back to the input pixel it was copied from, *added* where windows
    overlap (a pixel copied into several columns receives the sum of their gradients);
    what falls in the padding is dropped. So
    $\langle \text{im2col}(x), dcols \rangle = \langle x, \text{col2im}(dcols) \rangle$.
    """
    xp = backend.namespace(cols)
    (KH, KW), (N, C, H, W) = kernel, tuple(int(d) for d in x_shape)
    pt, pb, pl, pr = pad
    OH, OW = output_size(H, KH, stride[0], pt, pb), output_size(W, KW, stride[1], pl, pr)
    blocks = xp.reshape(cols, (C, KH, KW, N, OH, OW))
    dxpad = xp.zeros((N, C, H + pt + pb, W + pl + pr), dtype=cols.dtype, device=cols.device)
    for kh in range(KH):
        for kw in range(KW):
            where = window(kh, kw, OH, OW, stride)
            dxpad[where] = dxpad[where] + xp.permute_dims(blocks[:, kh, kw, ...], (1, 0, 2, 3))
    return dxpad[:, :, pt:pt + H, pl:pl + W]


# ---------------------------------------------------------------- the convolution

@kernels.accelerated("conv2d.forward")
def conv2d_forward(x, W, b, stride=1, padding="valid", workspace=None, activation="linear"):
    """Convolve a batch: ``x`` (N, C, H, W), ``W`` (C_out, C, KH, KW), ``b`` (C_out,) or ``None``,
    then apply ``activation`` (one of :data:`npdl.layers.activations.ELEMENTWISE`; ``"linear"``:
    none) to every element.

    Returns ``y`` (N, C_out, OH, OW) and the cache ``(x, W, stride, pad, has_bias, activation,
    f_cache)``, with ``stride`` = (sh, sw) and ``pad`` = (pt, pb, pl, pr) as worked out from
    ``padding`` and ``f_cache`` the activation's own cache (its output ``y`` for ReLU, sigmoid
    and tanh; ``None`` when linear).
    The cache holds the input, not ``cols``: ``cols`` holds every input value KH*KW times
    over, and :func:`conv2d_backward` rebuilds it from ``x`` (one more im2col) rather than
    keeping it alive between the passes. Every implementation keeps this same cache.

    ``workspace`` is a dict the layer owns, where kernels keep buffers from one call to
    the next (the Numba ``cols``); it never changes a result.
    """
    xp = backend.namespace(x, W)
    if activation not in ELEMENTWISE:  # "identity", None, "ReLU" ... (Conv2D passes canonical names)
        activation = check_elementwise(activation, "conv2d_forward")
    stride = pair(stride, "stride", "conv2d_forward")
    C_out, C, KH, KW = (int(d) for d in W.shape)
    N = int(x.shape[0])
    OH, OW, pad = conv_geometry(x.shape, (KH, KW), stride, padding, "conv2d_forward")
    cols = im2col(x, (KH, KW), stride, pad, workspace)                             # (C*KH*KW, N*OH*OW)
    W2 = xp.reshape(W, (C_out, C * KH * KW))
    out = W2 @ cols                                                                # (C_out, N*OH*OW)
    if b is not None:
        out += xp.reshape(b, (C_out, 1))  # out is a fresh array: add in place
    # (C_out, N, OH*OW) -> (N, C_out, OH*OW): moves whole OH*OW blocks; the reshape to
    # (N, C_out*OH*OW) forces the copy into NCHW order, the last one is a free view
    y = xp.reshape(xp.permute_dims(xp.reshape(out, (C_out, N, OH * OW)), (1, 0, 2)), (N, C_out * OH * OW))
    y, f_cache = ELEMENTWISE[activation][0](xp.reshape(y, (N, C_out, OH, OW)), overwrite=True)  # y is fresh
    return y, (x, W, stride, pad, b is not None, activation, f_cache)


@kernels.accelerated("conv2d.backward")
def conv2d_backward(dy, cache, need_dx=True, workspace=None):
    r"""Gradients of the convolution, given $dy = \frac{\partial L}{\partial y}$ of shape (N, C_out, OH, OW).

    With an activation, first through it: the pre-activation ``a`` (what the sum below gives) has
    $da = \frac{\partial L}{\partial a} = dy \odot f'(a)$, for ReLU $dy \odot \mathbb{1}[y > 0]$
    (:func:`npdl.layers.activations.relu_backward`; $da = dy$ without one). Then differentiate
    $a[n, o, i, j] = b[o] + \sum_{c, kh, kw} W[o, c, kh, kw] \cdot xpad[n, c, i \cdot sh + kh, j \cdot sw + kw]$,
    writing ``dy`` for ``da`` below:

    * $\frac{\partial L}{\partial b[o]} = \sum_{n, i, j} dy[n, o, i, j]$: (C_out,). ``b[o]`` was broadcast over
      every image and pixel of channel ``o``; a broadcast forward is a sum backward.
    * $\frac{\partial L}{\partial W[o, c, kh, kw]} = \sum_{n, i, j} dy[n, o, i, j] \cdot xpad[n, c, i \cdot sh + kh, j \cdot sw + kw]$:
      (C_out, C, KH, KW). Each weight met one input pixel per output pixel, so its
      gradient is the **correlation of the input with the upstream gradient**
      (``dy`` as the kernel, its taps ``sh``, ``sw`` apart), summed over the batch.
    * $\frac{\partial L}{\partial xpad[n, c, p, q]} = \sum dy[n, o, i, j] \cdot W[o, c, kh, kw]$ over every $(o, i, j, kh, kw)$
      with $i \cdot sh + kh = p$ and $j \cdot sw + kw = q$: each input pixel collects ``dy`` from
      every output pixel whose window covered it, weighted by the tap that met it.
      That is the **full correlation of ``dy`` (with ``sh - 1``, ``sw - 1`` zeros between its
      pixels) with the kernel rotated by 180 degrees** and with in- and output channels
      swapped -- a transposed convolution. ``dx`` is ``dxpad`` without its border
      (padding is a constant, not an input).

    The code does all three as the same matrix products the forward pass used. With
    ``cols = im2col(x)`` rebuilt from the cached input,
    $cols[(c, kh, kw), (n, i, j)] = xpad[n, c, i \cdot sh + kh, j \cdot sw + kw]$, and ``dy`` reordered to
    $dy_t[o, (n, i, j)] = dy[n, o, i, j]$, the forward pass was $out = W2 \cdot cols$, so

    * ``db = sum(dy_t, axis=1)``: (C_out,);
    * $dW2 = dy_t \cdot cols^\top$: (C_out, N*OH*OW) @ (N*OH*OW, C*KH*KW) -> (C_out, C*KH*KW), reshaped to ``W``'s
      shape -- the sum over ``(n, i, j)`` above is this product's inner dimension;
    * $dcols = W2^\top \cdot dy_t$: (C*KH*KW, C_out) @ (C_out, N*OH*OW) -> (C*KH*KW, N*OH*OW), the gradient of
      every copy im2col made; ``dx = col2im(dcols)`` adds each copy's gradient back into the
      pixel it was copied from (im2col's adjoint: a pixel in several patches gets the sum)
      and drops the border: (N, C, H, W).

    Returns ``(dx, dW, db)``; ``db`` is ``None`` without a bias and ``dx`` is ``None`` with
    ``need_dx=False`` (a network's first layer: that skips ``dcols`` and col2im, the
    larger half of the backward pass). ``workspace`` is as for :func:`conv2d_forward`.
    """
    x, W, stride, pad, has_bias, activation, f_cache = cache
    xp = backend.namespace(dy, W)
    dy = ELEMENTWISE[activation][1](dy, f_cache)                                   # da: (N, C_out, OH, OW)
    N, C_out, OH, OW = (int(d) for d in dy.shape)
    kernel = (int(W.shape[2]), int(W.shape[3]))
    cols = im2col(x, kernel, stride, pad, workspace)                               # (C*KH*KW, N*OH*OW)
    W2 = xp.reshape(W, (C_out, -1))
    # (N, C_out, OH*OW) -> (C_out, N*OH*OW), copied so the products below see one plain matrix
    dy_t = xp.reshape(xp.permute_dims(xp.reshape(dy, (N, C_out, OH * OW)), (1, 0, 2)), (C_out, N * OH * OW))
    dW = xp.reshape(dy_t @ cols.T, tuple(W.shape))
    db = xp.sum(dy_t, axis=1) if has_bias else None
    dx = None
    if need_dx:
        dcols = W2.T @ dy_t
        dx = col2im(dcols, tuple(x.shape), kernel, stride, pad)
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
    ``rng`` are as for Dense. ``activation`` is as for Dense (``None``/``"linear"``, ``"relu"``,
    ``"sigmoid"``, ...): the same numbers as a Conv2D followed by that activation layer, in one
    layer (on the CPU the ReLU is applied as the output is written, and its mask as ``dy`` is read).
    """

    weight_names = ("W",)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding="valid",
                 init="glorot_uniform", bias: bool = True, dtype=None, device="cpu", rng=None,
                 name: str | None = None, activation=None):
        super().__init__(name)
        if int(in_channels) <= 0 or int(out_channels) <= 0:
            raise ValueError(f"Conv2D: in_channels and out_channels must be positive, "
                             f"got in_channels={in_channels}, out_channels={out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2D")
        self.stride = pair(stride, "stride", "Conv2D")
        self.padding = normalize_padding(padding, "Conv2D")
        self.bias = bool(bias)
        self.activation = check_elementwise(activation, "Conv2D")
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
        self._workspace: dict = {}  # buffers the kernels reuse between calls (never part of a result)

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
                                       workspace=self._workspace, activation=self.activation)
        return y

    def backward(self, dy):
        dx, dW, db = conv2d_backward(dy, self.cache, self.need_input_grad, workspace=self._workspace)
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

    def work(self, input_shape, need_input_grad=True, dtype=None) -> dict:
        """FLOPs of :func:`conv2d_forward` and :func:`conv2d_backward` on ``input_shape`` (N, C, H, W) and
        what the cache keeps (:mod:`npdl.bench.work`). With ``K = C*KH*KW`` and ``P = N*OH*OW``: forward
        ``W2 @ cols`` 2 C_out K P and the bias C_out P; backward ``dW2 = dy_t @ cols^T`` 2 C_out P K,
        ``db`` C_out P and, unless it is the first layer, ``dcols = W2^T @ dy_t`` 2 K C_out P and col2im's
        K P additions. im2col copies and adds nothing. An activation adds ``f`` and ``f'`` per output
        element, as for Dense. The cache keeps ``x``, and ``y`` for sigmoid, tanh and ReLU."""
        N = int(input_shape[0])
        C_out, OH, OW = self.output_shape(tuple(input_shape[1:]))
        K, P = self.in_channels * self.kernel_size[0] * self.kernel_size[1], N * OH * OW
        product, bias = 2 * C_out * K * P, (C_out * P if self.bias else 0)
        f, df, keeps_y, mask = ELEMENTWISE_WORK[self.activation]
        return {"forward": product + bias + f * C_out * P,
                "backward": df * C_out * P + product + bias + (product + K * P if need_input_grad else 0),
                "keeps_input": True, "keeps_output": keeps_y, "kept_bytes": mask * C_out * P}

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "init": initializer_name(self.init), "bias": self.bias, "dtype": self.dtype, "name": self.name,
                **({"activation": self.activation} if self.activation != "linear" else {})}
