"""Independent JAX versions of every checked forward pass, differentiated by ``jax.vjp``.

Written directly in ``jax.numpy`` from the textbook formulas -- deliberately NOT the
numerically tuned forms npdl uses (e.g. sigmoid as ``1 / (1 + exp(-x))`` rather
than via tanh, BCE-on-logits through ``log(sigmoid)``) -- so agreement means two
different derivations meet, not one code path run twice.
"""

from __future__ import annotations

from .. import backend
from .cases import FAMILIES


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _reduce(jnp, e, reduction):
    return jnp.mean(e) if reduction == "mean" else jnp.sum(e) / e.shape[0]


def forward_fn(case):
    """The JAX forward for ``case``: a function of the case's inputs returning ``y``."""
    return reference_fn(case.name.split("[")[0], case.options)


def reference_fn(base: str, opt: dict):
    """The JAX forward of the layer or loss named ``base`` (a class name) configured by ``opt``."""
    jnp = _jax().numpy
    r = opt.get("reduction", "mean")

    def sigmoid(x):
        return 1.0 / (1.0 + jnp.exp(-x))

    def picked(a, labels):
        return a[jnp.arange(a.shape[0]), labels]

    table = {
        "Dense": lambda x, W, b=None: {"sigmoid": sigmoid, "tanh": jnp.tanh}.get(opt.get("activation"), lambda a: a)(
            x @ W + (0.0 if b is None else b)),
        "Sigmoid": sigmoid,
        "Tanh": lambda x: jnp.tanh(x),
        "ReLU": lambda x: jnp.maximum(x, 0.0),
        "LeakyReLU": lambda x: jnp.where(x > 0, x, opt.get("alpha", 0.01) * x),
        "ELU": lambda x: jnp.where(x > 0, x, opt.get("alpha", 1.0) * (jnp.exp(x) - 1.0)),
        "Softmax": lambda x: jnp.exp(x) / jnp.sum(jnp.exp(x), axis=-1, keepdims=True),
        "Dropout": lambda x, mask: x * mask,
        "Flatten": lambda x: x.reshape(x.shape[0], -1),
        "SoftmaxCrossEntropy": lambda logits, labels: -jnp.mean(
            picked(logits - jnp.log(jnp.sum(jnp.exp(logits), axis=1, keepdims=True)), labels)),
        "NegativeLogLikelihood": lambda probs, labels: -jnp.mean(jnp.log(picked(probs, labels))),
        "MeanSquaredError": lambda pred, target: _reduce(jnp, (pred - target) ** 2, r),
        "BinaryCrossEntropyWithLogits": lambda z, t: _reduce(
            jnp, -(t * jnp.log(sigmoid(z)) + (1 - t) * jnp.log(1 - sigmoid(z))), r),
        "BinaryCrossEntropy": lambda p, t: _reduce(jnp, -(t * jnp.log(p) + (1 - t) * jnp.log(1 - p)), r),
        "L2Penalty": lambda W1, W2: opt["lam"] * (jnp.sum(W1 ** 2) + jnp.sum(W2 ** 2)),
        "L1Penalty": lambda W1, W2: opt["lam"] * (jnp.sum(jnp.abs(W1)) + jnp.sum(jnp.abs(W2))),
    }
    for family in FAMILIES:
        table.update(family.jax_table(jnp, opt))
    if base not in table:
        raise KeyError(f"no JAX reference for {base}")
    return table[base]


def to_jax(x):
    jnp = _jax().numpy
    return jnp.asarray(backend.to_numpy(x))


def forward(case, inputs: dict):
    """``y`` of the JAX reference at ``inputs`` (any device; copied to the host)."""
    return forward_fn(case)(**{k: to_jax(v) for k, v in inputs.items()})


def vjp(case, inputs: dict, dy) -> dict:
    """``{name: dL/d inputs[name]}`` for ``L = sum(y * dy)``, by reverse-mode autodiff."""
    jax = _jax()
    fn = forward_fn(case)
    args = {k: to_jax(v) for k, v in inputs.items()}
    consts = {k: v for k, v in args.items() if k not in case.wrt}
    primals = [args[k] for k in case.wrt]

    def f(*xs):
        return fn(**dict(zip(case.wrt, xs)), **consts)

    _, pullback = jax.vjp(f, *primals)
    return dict(zip(case.wrt, pullback(to_jax(dy))))


def available() -> tuple[bool, str]:
    try:
        import jax

        return True, f"jax {jax.__version__}"
    except ImportError:
        return False, 'JAX is not installed (pip install "npdl-backprop[test]" or "jax[cpu]")'
