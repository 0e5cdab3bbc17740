"""Gradient-check cases for convolution and pooling, with their independent references.

* ``Conv2D`` in several configurations (stride 1 'valid', stride 2 'same', int padding
  with a non-square kernel and strides, no bias, with a ReLU: random pre-activations are
  ~0 with probability ~0, so ``+- eps`` never crosses the kink).
* ``MaxPool2D``: the input is a random permutation of well-separated values (0.1
  apart), so no window holds a tie or a near-tie and ``v +- eps`` never changes a
  window's winner; the maximum is then differentiable at the point checked.
* ``AvgPool2D``: 'valid' and 'same' (padded cells not counted).
* ``ChannelBias``: the per-channel bias LeNet and network3 add after pooling.
* ``ConvPoolDense``: conv -> max pool -> flatten -> dense, to check that the pieces
  compose (random conv outputs tie with probability ~0).

The JAX references use ``jax.lax.conv_general_dilated`` and ``jax.lax.reduce_window``
with JAX's own ``"SAME"`` padding (TensorFlow's convention, which npdl follows); the
PyTorch references use ``torch.nn.functional``, padding explicitly where PyTorch
has no asymmetric ``'same'``. Neither calls npdl.
"""

from __future__ import annotations

from .. import backend, layers as L
from .case import Case, named_grads


def _permuted(g, shape, dtype, spacing=0.1):
    """A random arrangement of ``spacing * (0, 1, ..., size - 1)``, shifted to mean ~0:
    no two values closer than ``spacing``."""
    size = 1
    for d in shape:
        size *= int(d)
    perm = g.permutation(size)
    xp = backend.namespace(perm)
    values = xp.astype(perm, backend.float_dtype(xp, dtype)) * spacing - spacing * (size / 2)
    return xp.reshape(values, tuple(shape))


def cases():
    def conv_case(suffix, x_shape, w_shape, stride, padding, bias=True, activation="linear"):
        def make(g, d):
            inputs = {"x": g.normal(x_shape, dtype=d), "W": g.normal(w_shape, dtype=d)}
            if bias:
                inputs["b"] = g.normal((w_shape[0],), dtype=d)
            return inputs

        wrt = ("x", "W", "b") if bias else ("x", "W")
        return Case("Conv2D" + suffix, make, wrt,
                    lambda x, W, b=None: L.conv2d_forward(x, W, b, stride, padding, activation=activation),
                    lambda dy, c: named_grads(wrt, L.conv2d_backward(dy, c)),
                    options={"stride": stride, "padding": padding, "activation": activation})

    def pool_case(name, fwd, bwd, suffix, x_shape, pool_size, strides, padding, permuted):
        def make(g, d):
            return {"x": _permuted(g, x_shape, d) if permuted else g.normal(x_shape, dtype=d)}

        return Case(name + suffix, make, ("x",),
                    lambda x: fwd(x, pool_size, strides, padding),
                    lambda dy, c: {"x": bwd(dy, c)},
                    options={"pool_size": pool_size, "strides": strides, "padding": padding})

    def stack_forward(x, W1, b1, W2, b2):
        h, c1 = L.conv2d_forward(x, W1, b1, 1, "valid")
        p, c2 = L.maxpool2d_forward(h, 2)
        f, c3 = L.flatten_forward(p)
        y, c4 = L.dense_forward(f, W2, b2)
        return y, (c1, c2, c3, c4)

    def stack_backward(dy, cache):
        c1, c2, c3, c4 = cache
        df, dW2, db2 = L.dense_backward(dy, c4)
        dh = L.maxpool2d_backward(L.flatten_backward(df, c3), c2)
        dx, dW1, db1 = L.conv2d_backward(dh, c1)
        return {"x": dx, "W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    max_args = (L.maxpool2d_forward, L.maxpool2d_backward)
    avg_args = (L.avgpool2d_forward, L.avgpool2d_backward)
    return [
        conv_case("", (2, 2, 5, 6), (3, 2, 3, 3), 1, "valid"),
        conv_case("[stride2_same]", (2, 2, 7, 6), (3, 2, 3, 3), 2, "same"),
        conv_case("[pad1_stride1x2]", (2, 2, 5, 7), (2, 2, 2, 3), (1, 2), 1),
        conv_case("[no_bias]", (2, 3, 4, 4), (2, 3, 2, 2), 1, "valid", bias=False),
        conv_case("[relu_same]", (2, 2, 6, 5), (3, 2, 3, 3), 1, "same", activation="relu"),
        pool_case("MaxPool2D", *max_args, "", (2, 2, 6, 5), 2, None, "valid", True),
        pool_case("MaxPool2D", *max_args, "[3x3_stride2_same]", (2, 2, 6, 5), 3, 2, "same", True),
        pool_case("MaxPool2D", *max_args, "[overlap_stride1]", (1, 2, 5, 5), 3, 1, "valid", True),
        pool_case("AvgPool2D", *avg_args, "", (2, 2, 6, 5), 2, None, "valid", False),
        pool_case("AvgPool2D", *avg_args, "[3x3_stride2_same]", (2, 2, 6, 5), 3, 2, "same", False),
        Case("ConvPoolDense", lambda g, d: {"x": g.normal((2, 1, 6, 6), dtype=d), "W1": g.normal((2, 1, 3, 3), dtype=d),
                                            "b1": g.normal((2,), dtype=d), "W2": g.normal((8, 3), dtype=d),
                                            "b2": g.normal((3,), dtype=d)},
             ("x", "W1", "b1", "W2", "b2"), stack_forward, stack_backward),
        Case("ChannelBias", lambda g, d: {"x": g.normal((2, 3, 4, 5), dtype=d), "b": g.normal((3,), dtype=d)},
             ("x", "b"), L.channel_bias_forward,
             lambda dy, c: dict(zip(("x", "b"), L.channel_bias_backward(dy, c)))),
    ]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def jax_table(jnp, opt) -> dict:
    """JAX forwards by base name, from ``jax.lax``'s own convolution and window reduction."""
    import jax

    def padding(p):
        return p.upper() if isinstance(p, str) else [(q, q) for q in _pair(p)]

    def conv(x, W, b=None, stride=1, pad="valid"):
        y = jax.lax.conv_general_dilated(x, W, _pair(stride), padding(pad),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                         precision=jax.lax.Precision.HIGHEST)
        y = y if b is None else y + b[None, :, None, None]
        return jnp.maximum(y, 0.0) if opt.get("activation") == "relu" else y

    def window():
        size = _pair(opt["pool_size"])
        strides = size if opt.get("strides") is None else _pair(opt["strides"])
        return (1, 1) + size, (1, 1) + strides, opt["padding"].upper()

    def maxpool(x):
        dims, strides, pad = window()
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, strides, pad)

    def avgpool(x):
        dims, strides, pad = window()
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, pad)
        count = jax.lax.reduce_window(jnp.ones_like(x), 0.0, jax.lax.add, dims, strides, pad)  # real cells only
        return total / count

    def stack(x, W1, b1, W2, b2):
        h = conv(x, W1, b1)
        p = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        return p.reshape(p.shape[0], -1) @ W2 + b2

    return {
        "Conv2D": lambda x, W, b=None: conv(x, W, b, opt.get("stride", 1), opt.get("padding", "valid")),
        "MaxPool2D": maxpool,
        "AvgPool2D": avgpool,
        "ConvPoolDense": stack,
        "ChannelBias": lambda x, b: x + b[None, :, None, None],
    }


def _tf_same(size, k, s):
    """TensorFlow's 'same' padding along one axis: ``(before, after)``, the odd one after."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def torch_table(torch, opt) -> dict:
    """PyTorch forwards by base name (``torch.nn.functional``); asymmetric 'same' padding is
    applied with ``F.pad`` first, since PyTorch's own ``padding='same'`` is stride-1 only."""
    F = torch.nn.functional

    def same_pad(x, kernel, stride, value=0.0):
        (kh, kw), (sh, sw) = kernel, stride
        top, bottom = _tf_same(x.shape[2], kh, sh)
        left, right = _tf_same(x.shape[3], kw, sw)
        return F.pad(x, (left, right, top, bottom), value=value)

    def conv(x, W, b=None):
        stride, pad = _pair(opt.get("stride", 1)), opt.get("padding", "valid")
        if pad == "same":
            y = F.conv2d(same_pad(x, W.shape[2:], stride), W, b, stride=stride)
        else:
            y = F.conv2d(x, W, b, stride=stride, padding=0 if pad == "valid" else _pair(pad))
        return F.relu(y) if opt.get("activation") == "relu" else y

    def geometry():
        size = _pair(opt["pool_size"])
        return size, (size if opt.get("strides") is None else _pair(opt["strides"]))

    def maxpool(x):
        size, stride = geometry()
        if opt["padding"] == "same":
            x = same_pad(x, size, stride, value=-float("inf"))
        return F.max_pool2d(x, size, stride)

    def avgpool(x):
        size, stride = geometry()
        if opt["padding"] != "same":
            return F.avg_pool2d(x, size, stride)
        area = size[0] * size[1]
        total = F.avg_pool2d(same_pad(x, size, stride), size, stride) * area
        count = F.avg_pool2d(same_pad(torch.ones_like(x), size, stride), size, stride) * area
        return total / count

    def stack(x, W1, b1, W2, b2):
        p = F.max_pool2d(F.conv2d(x, W1, b1), 2)
        return p.reshape(p.shape[0], -1) @ W2 + b2

    return {"Conv2D": conv, "MaxPool2D": maxpool, "AvgPool2D": avgpool, "ConvPoolDense": stack,
            "ChannelBias": lambda x, b: x + b[None, :, None, None]}
