"""Max and average pooling over KH x KW windows (array-API reference).

Geometry as in :mod:`.im2col`: strides ``(sh, sw)``, padding ``(pt, pb, pl, pr)``;
output pixel ``(oh, ow)`` pools the padded input pixels ``(oh*sh + kh, ow*sw + kw)``,
``kh < KH``, ``kw < KW``. The window offset ``k = kh*KW + kw`` numbers a window's
cells in row-major order.

* **max**: padded cells hold ``-inf``, so they never win against a real value.
  ``arg[n, c, oh, ow]`` is the offset ``k`` of the maximum, the *first* in row-major
  order when several cells tie (``argmax`` returns the first occurrence), and the
  backward pass sends ``dy`` to that one cell only. Windows that overlap (stride <
  pool size) can pick the same input pixel; its gradients add.
* **average**: the mean over the window's cells *that lie inside the input*: padded
  cells are not counted (Keras/TensorFlow's ``'same'`` average pooling), so
  ``y = sum of real cells / number of real cells`` and each real cell receives
  ``dy / count`` of every window that contains it.
"""

from __future__ import annotations

from ... import backend
from .im2col import _pad, _window, output_size


def _geometry(x_shape, kernel, stride, pad):
    (KH, KW), (N, C, H, W) = kernel, tuple(int(d) for d in x_shape)
    OH, OW = output_size(H, KH, stride[0], pad[0], pad[1]), output_size(W, KW, stride[1], pad[2], pad[3])
    return N, C, H, W, KH, KW, OH, OW


def max_forward(x, kernel, stride, pad):
    """``(y, arg)``: the window maxima (N, C, OH, OW) and the offset of each maximum (first on ties)."""
    xp = backend.namespace(x)
    N, C, H, W, KH, KW, OH, OW = _geometry(x.shape, kernel, stride, pad)
    xpad = _pad(x, tuple(pad), xp, value=-float("inf"))
    cells = xp.stack([xpad[_window(kh, kw, OH, OW, stride)] for kh in range(KH) for kw in range(KW)],
                     axis=0)  # (KH*KW, N, C, OH, OW)
    return xp.max(cells, axis=0), xp.argmax(cells, axis=0)


def max_backward(dy, arg, x_shape, kernel, stride, pad):
    """``dx`` (N, C, H, W): ``dy`` of each window added to the one cell that held its maximum."""
    xp = backend.namespace(dy)
    N, C, H, W, KH, KW, OH, OW = _geometry(x_shape, kernel, stride, pad)
    pt, pb, pl, pr = pad
    dxpad = xp.zeros((N, C, H + pt + pb, W + pl + pr), dtype=dy.dtype, device=dy.device)
    for kh in range(KH):
        for kw in range(KW):
            where = _window(kh, kw, OH, OW, stride)
            dxpad[where] = dxpad[where] + xp.where(arg == kh * KW + kw, dy, 0.0)
    return dxpad[:, :, pt:pt + H, pl:pl + W]


def _counts(x_shape, kernel, stride, pad, dtype, device, xp):
    """How many real (unpadded) input cells each window holds: (OH, OW)."""
    N, C, H, W, KH, KW, OH, OW = _geometry(x_shape, kernel, stride, pad)
    ones = _pad(xp.ones((1, 1, H, W), dtype=dtype, device=device), tuple(pad), xp)
    total = sum(ones[_window(kh, kw, OH, OW, stride)] for kh in range(KH) for kw in range(KW))
    return total[0, 0, ...]


def avg_forward(x, kernel, stride, pad):
    """``y`` (N, C, OH, OW): the mean of each window's real cells (padding not counted)."""
    xp = backend.namespace(x)
    N, C, H, W, KH, KW, OH, OW = _geometry(x.shape, kernel, stride, pad)
    xpad = _pad(x, tuple(pad), xp)
    total = sum(xpad[_window(kh, kw, OH, OW, stride)] for kh in range(KH) for kw in range(KW))
    return total / _counts(x.shape, kernel, stride, pad, x.dtype, x.device, xp)


def avg_backward(dy, x_shape, kernel, stride, pad):
    """``dx`` (N, C, H, W): every real cell of a window receives ``dy / count`` of that window."""
    xp = backend.namespace(dy)
    N, C, H, W, KH, KW, OH, OW = _geometry(x_shape, kernel, stride, pad)
    pt, pb, pl, pr = pad
    share = dy / _counts(x_shape, kernel, stride, pad, dy.dtype, dy.device, xp)
    dxpad = xp.zeros((N, C, H + pt + pb, W + pl + pr), dtype=dy.dtype, device=dy.device)
    for kh in range(KH):
        for kw in range(KW):
            where = _window(kh, kw, OH, OW, stride)
            dxpad[where] = dxpad[where] + share
    return dxpad[:, :, pt:pt + H, pl:pl + W]
