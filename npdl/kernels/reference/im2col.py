"""im2col and col2im: a convolution as one matrix product (array-API reference).

For an input ``x`` (N, C, H, W), a kernel of KH x KW, strides ``(sh, sw)`` and zero
padding ``(pt, pb, pl, pr)`` (top, bottom, left, right), the output has

    OH = (H + pt + pb - KH) // sh + 1,    OW = (W + pl + pr - KW) // sw + 1

pixels, and output pixel ``(oh, ow)`` sees the input pixels ``(oh*sh + kh - pt, ow*sw + kw - pl)``
for ``kh < KH``, ``kw < KW`` (zero where that falls in the padding). ``im2col`` writes
every such patch as one column of

    cols[(c, kh, kw), (n, oh, ow)] = xpad[n, c, oh*sh + kh, ow*sw + kw]      (C*KH*KW, N*OH*OW)

(rows and columns in row-major order of their index triples), so a convolution with
``W2 = W.reshape(C_out, C*KH*KW)`` is ``W2 @ cols``. ``col2im`` is its adjoint: it sends
every entry of a ``(C*KH*KW, N*OH*OW)`` matrix back to the input pixel it was copied
from, *adding* where patches overlap (a pixel copied into several columns receives
the sum of their gradients), and drops what falls in the padding.

This reference builds ``cols`` from KH*KW strided slices of the padded input, one
per kernel offset ``(kh, kw)``, so it is short and runs on any array-API library.
"""

from __future__ import annotations

from ... import backend


def output_size(size, k, s, before, after):
    """Output length of a window of ``k`` moved by ``s`` over ``size`` padded by ``before`` + ``after``."""
    return (size + before + after - k) // s + 1


def _pad(x, pad, xp, value=0.0):
    """``x`` (N, C, H, W) inside a border of ``value``: (N, C, H + pt + pb, W + pl + pr)."""
    pt, pb, pl, pr = pad
    N, C, H, W = x.shape
    if pad == (0, 0, 0, 0):
        return x
    xpad = xp.full((N, C, H + pt + pb, W + pl + pr), value, dtype=x.dtype, device=x.device)
    xpad[:, :, pt:pt + H, pl:pl + W] = x
    return xpad


def _window(kh, kw, OH, OW, stride):
    """The slices picking, for every output pixel, the padded input pixel at kernel offset ``(kh, kw)``."""
    sh, sw = stride
    return (slice(None), slice(None), slice(kh, kh + sh * (OH - 1) + 1, sh), slice(kw, kw + sw * (OW - 1) + 1, sw))


def im2col(x, kernel, stride, pad, workspace=None):
    """``cols`` (C*KH*KW, N*OH*OW) for ``x`` (N, C, H, W); ``workspace`` is ignored here."""
    xp = backend.namespace(x)
    (KH, KW), (N, C, H, W) = kernel, x.shape
    OH = output_size(H, KH, stride[0], pad[0], pad[1])
    OW = output_size(W, KW, stride[1], pad[2], pad[3])
    xpad = _pad(x, tuple(pad), xp)
    patches = [xpad[_window(kh, kw, OH, OW, stride)] for kh in range(KH) for kw in range(KW)]  # each (N, C, OH, OW)
    cols = xp.stack(patches, axis=2)                       # (N, C, KH*KW, OH, OW)
    cols = xp.permute_dims(cols, (1, 2, 0, 3, 4))          # (C, KH*KW, N, OH, OW)
    return xp.reshape(cols, (C * KH * KW, N * OH * OW))


def col2im(cols, x_shape, kernel, stride, pad):
    """``dx`` (N, C, H, W): each entry of ``cols`` added to the input pixel it came from."""
    xp = backend.namespace(cols)
    (KH, KW), (N, C, H, W) = kernel, tuple(int(d) for d in x_shape)
    pt, pb, pl, pr = pad
    OH = output_size(H, KH, stride[0], pt, pb)
    OW = output_size(W, KW, stride[1], pl, pr)
    blocks = xp.reshape(cols, (C, KH, KW, N, OH, OW))
    dxpad = xp.zeros((N, C, H + pt + pb, W + pl + pr), dtype=cols.dtype, device=cols.device)
    for kh in range(KH):
        for kw in range(KW):
            where = _window(kh, kw, OH, OW, stride)
            dxpad[where] = dxpad[where] + xp.permute_dims(blocks[:, kh, kw, ...], (1, 0, 2, 3))
    return dxpad[:, :, pt:pt + H, pl:pl + W]
