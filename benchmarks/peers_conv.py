"""The convolutional workloads (``lenet_bN``, ``kcnn_bN``) in PyTorch (eager) and JAX (jit).

Both read the layer specs npdl builds from (:data:`npdl.bench.conv_step.ARCHS`), so the
three libraries train the same network: NCHW, stride-1 convolutions with the same
padding ('same' is TensorFlow's, the odd row/column at the bottom/right), max pooling
with stride = size, Glorot-uniform weights, zero biases, softmax cross-entropy, plain SGD.
Registered into ``PEERS`` by ``benchmarks/peers.py``.
"""

from __future__ import annotations

from peer_common import jax_sgd  # noqa: E402  (benchmarks/ is on sys.path)

from npdl.bench.conv_step import ARCHS


def _tf_same(size, k, s):
    """TensorFlow's 'same' padding along one axis: ``(before, after)``, the odd one after."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _shapes(w):
    """``[(spec, input shape (C, H, W) or (F,))]`` for the workload's layers."""
    shape, out = tuple(w.spec["input"]), []
    for spec in ARCHS[w.spec["arch"]]:
        out.append((spec, shape))
        kind = spec[0]
        if kind == "conv":
            _, c_out, k, padding, _ = spec
            C, H, W = shape
            shape = (c_out, H, W) if padding == "same" else (c_out, H - k + 1, W - k + 1)
        elif kind == "maxpool":
            C, H, W = shape
            k = spec[1]
            shape = (C, -(-H // k), -(-W // k)) if spec[2] == "same" else (C, H // k, W // k)
        elif kind == "flatten":
            size = 1
            for d in shape:
                size *= d
            shape = (size,)
        elif kind == "dense":
            shape = (spec[1],)
    return out


def torch_conv_step(w, device):
    import torch

    F = torch.nn.functional
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    gen = torch.Generator().manual_seed(0)
    params, plan = [], []
    for spec, shape in _shapes(w):
        kind = spec[0]
        if kind in ("conv", "dense"):
            if kind == "conv":
                _, c_out, k, padding, bias = spec
                wshape, fan_in, fan_out = (c_out, shape[0], k, k), shape[0] * k * k, c_out * k * k
            else:
                bias, wshape, fan_in, fan_out = True, (spec[1], shape[0]), shape[0], spec[1]
            r = (6.0 / (fan_in + fan_out)) ** 0.5
            W = ((torch.rand(wshape, generator=gen) * 2 - 1) * r).to(dev).requires_grad_()
            b = torch.zeros(wshape[0], device=dev, requires_grad=True) if bias else None
            params += [W] + ([b] if bias else [])
            plan.append((spec, shape, W, b))
        else:
            plan.append((spec, shape, None, None))

    def forward(x):
        for spec, shape, W, b in plan:
            kind = spec[0]
            if kind == "conv":
                if spec[3] == "same":
                    (t, bo), (le, ri) = _tf_same(shape[1], spec[2], 1), _tf_same(shape[2], spec[2], 1)
                    if (t, bo) == (bo, t) and (le, ri) == (ri, le):
                        x = F.conv2d(x, W, b, padding=(t, le))
                    else:
                        x = F.conv2d(F.pad(x, (le, ri, t, bo)), W, b)
                else:
                    x = F.conv2d(x, W, b)
            elif kind == "maxpool":
                k = spec[1]
                if spec[2] == "same":
                    (t, bo), (le, ri) = _tf_same(shape[1], k, k), _tf_same(shape[2], k, k)
                    if t or bo or le or ri:
                        x = F.pad(x, (le, ri, t, bo), value=-float("inf"))
                x = F.max_pool2d(x, k)
            elif kind == "tanh":
                x = torch.tanh(x)
            elif kind == "relu":
                x = torch.relu(x)
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
            elif kind == "dense":
                x = F.linear(x, W, b)
        return x

    opt = torch.optim.SGD(params, lr=w.lr)
    x = torch.randn((w.batch_size, *w.spec["input"]), generator=gen).to(dev)
    y = torch.randint(0, w.spec["classes"], (w.batch_size,), generator=gen).to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    return step, sync, f"torch {torch.__version__} (threads {torch.get_num_threads()})"


def jax_conv_step(w, device):
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    params, plan = [], []
    for spec, shape in _shapes(w):
        kind = spec[0]
        if kind in ("conv", "dense"):
            if kind == "conv":
                _, c_out, k, padding, bias = spec
                wshape, fan_in, fan_out = (c_out, shape[0], k, k), shape[0] * k * k, c_out * k * k
            else:
                bias, wshape, fan_in, fan_out = True, (shape[0], spec[1]), shape[0], spec[1]
            key, sub = jax.random.split(key)
            r = (6.0 / (fan_in + fan_out)) ** 0.5
            W = jax.random.uniform(sub, wshape, jnp.float32, -r, r)
            n_out = wshape[0] if kind == "conv" else wshape[1]
            params.append((W, jnp.zeros(n_out, jnp.float32) if bias else None))
            plan.append((spec, shape, len(params) - 1))
        else:
            plan.append((spec, shape, None))

    def forward(params, x):
        for spec, shape, i in plan:
            kind = spec[0]
            if kind == "conv":
                W, b = params[i]
                pad = "VALID" if spec[3] == "valid" else [_tf_same(shape[1], spec[2], 1), _tf_same(shape[2], spec[2], 1)]
                x = jax.lax.conv_general_dilated(x, W, (1, 1), pad, dimension_numbers=("NCHW", "OIHW", "NCHW"))
                if b is not None:
                    x = x + b[None, :, None, None]
            elif kind == "maxpool":
                k = spec[1]
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k), (1, 1, k, k), spec[2].upper())
            elif kind == "tanh":
                x = jnp.tanh(x)
            elif kind == "relu":
                x = jax.nn.relu(x)
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
            elif kind == "dense":
                W, b = params[i]
                x = x @ W + b
        return x

    def loss_fn(params, x, y):
        logits = forward(params, x)
        logp = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    key, kx, ky = jax.random.split(key, 3)
    x = jax.random.normal(kx, (w.batch_size, *w.spec["input"]), jnp.float32)
    y = jax.random.randint(ky, (w.batch_size,), 0, w.spec["classes"])
    return jax_sgd(loss_fn, params, x, y, w.lr)


PEERS_CONV = {"lenet": {"torch": torch_conv_step, "jax": jax_conv_step},
              "kcnn": {"torch": torch_conv_step, "jax": jax_conv_step}}
