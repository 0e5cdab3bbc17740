"""The ``da_bN`` workloads (tied denoising autoencoder) in PyTorch (eager) and JAX (jit).

The same step as :mod:`npdl.bench.autoencoder_step`: tied ``W`` (784, 1000) drawn from the
Theano dA's x4 Glorot range, zero biases, masking corruption (each input zeroed with
probability ``corruption``, a new mask every step), ``h = sigmoid(x~ W + b)``,
logits ``a = h W^T + b'``, cost = binary cross-entropy of ``sigmoid(a)`` against the clean
input, summed over pixels and averaged over the batch (computed on the logits), plain SGD.
Registered into ``PEERS`` by ``benchmarks/peers.py``.
"""

from __future__ import annotations


def _bound(w):
    n_visible, n_hidden = w.sizes
    return 4.0 * (6.0 / (n_visible + n_hidden)) ** 0.5


def torch_step(w, device):
    import torch

    dev = torch.device("cuda" if device == "gpu" else "cpu")
    n_visible, n_hidden = w.sizes
    gen = torch.Generator().manual_seed(0)
    r = _bound(w)
    W = ((torch.rand(n_visible, n_hidden, generator=gen) * 2 - 1) * r).to(dev).requires_grad_()
    b = torch.zeros(n_hidden, device=dev, requires_grad=True)
    b_prime = torch.zeros(n_visible, device=dev, requires_grad=True)
    opt = torch.optim.SGD([W, b, b_prime], lr=w.lr)
    x = torch.rand(w.batch_size, n_visible, generator=gen).to(dev)
    keep = 1.0 - w.spec["corruption"]
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")

    def step():
        opt.zero_grad(set_to_none=True)
        x_tilde = x * (torch.rand(x.shape, device=dev) < keep)
        h = torch.sigmoid(x_tilde @ W + b)
        loss = loss_fn(h @ W.T + b_prime, x) / x.shape[0]
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    return step, sync, f"torch {torch.__version__} (threads {torch.get_num_threads()})"


def jax_step(w, device):
    import jax
    import jax.numpy as jnp

    n_visible, n_hidden = w.sizes
    key, kw, kx = jax.random.split(jax.random.PRNGKey(0), 3)
    r = _bound(w)
    params = (jax.random.uniform(kw, (n_visible, n_hidden), jnp.float32, -r, r),
              jnp.zeros(n_hidden, jnp.float32), jnp.zeros(n_visible, jnp.float32))
    x = jax.random.uniform(kx, (w.batch_size, n_visible), jnp.float32)
    keep = 1.0 - w.spec["corruption"]

    def loss_fn(params, x, key):
        W, b, b_prime = params
        x_tilde = x * jax.random.bernoulli(key, keep, x.shape).astype(x.dtype)
        h = jax.nn.sigmoid(x_tilde @ W + b)
        a = h @ W.T + b_prime
        # -(x log sigmoid(a) + (1 - x) log(1 - sigmoid(a))), stable
        per_pixel = jnp.maximum(a, 0.0) - a * x + jnp.log1p(jnp.exp(-jnp.abs(a)))
        return jnp.sum(per_pixel) / x.shape[0]

    @jax.jit
    def train_step(params, x, key):
        key, sub = jax.random.split(key)
        grads = jax.grad(loss_fn)(params, x, sub)
        return jax.tree_util.tree_map(lambda p, g: p - w.lr * g, params, grads), key

    state = {"params": params, "key": key}

    def step():
        state["params"], state["key"] = train_step(state["params"], x, state["key"])

    def sync():
        jax.block_until_ready(state["params"])

    return step, sync, f"jax {jax.__version__} ({jax.default_backend()})"


PEERS_AUTOENCODER = {"da": {"torch": torch_step, "jax": jax_step}}
