"""Where a window (a convolution's kernel, a pooling window) lands on an NCHW input.

Shared by the convolution and pooling definitions (:mod:`npdl.layers.conv`,
:mod:`npdl.layers.pooling`) and by their kernels, which take the same arguments and
so must read them the same way. Pure Python on shapes: no arrays.

A window of ``(KH, KW)`` moved by strides ``(sh, sw)`` over an input of ``H x W`` pixels
inside a border of ``(pt, pb, pl, pr)`` zero rows and columns (top, bottom, left, right) has

    OH = (H + pt + pb - KH) // sh + 1,    OW = (W + pl + pr - KW) // sw + 1

positions; the one at ``(oh, ow)`` covers the input pixels ``(oh*sh + kh - pt, ow*sw + kw - pl)``
for ``kh < KH``, ``kw < KW``.

The padding a user writes:

* ``"valid"``: none.
* ``"same"`` (Keras/TensorFlow): ``OH = ceil(H / sh)``; the rows needed,
  ``max((OH - 1)*sh + KH - H, 0)``, are split with the odd one at the bottom
  (``pt = total // 2``, ``pb = total - pt``); likewise columns, the extra on the right.
  At stride 1 the output has the input's size.
* an int ``p`` or a pair ``(ph, pw)``: that many zero rows on top *and* bottom (columns
  left and right), as PyTorch's ``padding=``.
"""

from __future__ import annotations

from ..errors import ShapeError


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


def output_size(size: int, k: int, s: int, before: int, after: int) -> int:
    """Positions of a window of ``k`` moved by ``s`` over ``size`` padded by ``before`` + ``after``."""
    return (size + before + after - k) // s + 1


def sizes(x_shape, kernel, stride, pad) -> tuple:
    """``(N, C, H, W, KH, KW, OH, OW)`` as Python ints, for ``pad`` = ``(pt, pb, pl, pr)``."""
    N, C, H, W = (int(d) for d in x_shape)
    KH, KW = int(kernel[0]), int(kernel[1])
    OH = output_size(H, KH, int(stride[0]), int(pad[0]), int(pad[1]))
    OW = output_size(W, KW, int(stride[1]), int(pad[2]), int(pad[3]))
    return N, C, H, W, KH, KW, OH, OW


def pooled_shape(x_shape, kernel, stride, pad) -> tuple:
    """``(N, C, OH, OW)``: the output shape of a window over ``x_shape`` (N, C, H, W)."""
    N, C, H, W, KH, KW, OH, OW = sizes(x_shape, kernel, stride, pad)
    return (N, C, OH, OW)


def window_ints(kernel, stride, pad) -> tuple:
    """``KH, KW, sh, sw, pt, pl`` as plain Python ints (the bottom and right padding only bound the output)."""
    return int(kernel[0]), int(kernel[1]), int(stride[0]), int(stride[1]), int(pad[0]), int(pad[2])


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
        OH = output_size(H, KH, sh, ph, ph) if H + 2 * ph >= KH else 0
        OW = output_size(W, KW, sw, pw, pw) if W + 2 * pw >= KW else 0
    if OH <= 0 or OW <= 0:
        shown = padding if isinstance(padding, str) else f"{padding[0]}x{padding[1]}"
        raise ShapeError(f"{who}: input of {H}x{W} pixels (shape {tuple(int(d) for d in x_shape)}) is smaller "
                         f"than the {KH}x{KW} {what} with padding {shown!r}; the output would be empty")
    return OH, OW, pad
