"""What every JAX peer step shares: plain SGD on a loss, jit-compiled, timed with a device sync."""

from __future__ import annotations


def jax_sgd(loss_fn, params, x, y, lr: float):
    """``(step, sync, version)`` running ``params <- params - lr * grad(loss_fn)(params, x, y)``."""
    import jax

    @jax.jit
    def train_step(params, x, y):
        grads = jax.grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

    state = {"params": params}

    def step():
        state["params"] = train_step(state["params"], x, y)

    def sync():
        jax.block_until_ready(state["params"])

    return step, sync, f"jax {jax.__version__} ({jax.default_backend()})"
