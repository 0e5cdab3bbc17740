"""The references :func:`npdl.gradcheck.check_layer` compares a hand-written backward pass with.

Each takes ``run(values) -> y``, a function of named arrays (the input and the parameters,
and for a loss its targets), the names ``wrt`` to differentiate, and the upstream gradient
``dy``, and returns ``{name: dL/d values[name]}`` for ``L = sum(y * dy)``:

* :func:`numeric` -- central differences of ``run`` on the arrays' own device;
* :func:`torch_vjp` -- PyTorch autograd of ``run`` itself, called on torch tensors: the
  layer's array-API forward computes with ``array_api_compat.torch`` (autograd records
  in-place writes too, as long as it does not need the overwritten values);
* :func:`jax_vjp` -- ``jax.vjp`` of ``run`` called on JAX arrays (``jax.numpy``), which
  works where the forward writes no array in place (JAX arrays are immutable).

No reference is hand-written: the autodiff ones differentiate the very forward the layer
trains with. Where one cannot run it, :func:`why_failed` says why in one line.
"""

from __future__ import annotations

from .. import backend
from .numeric import numerical_vjp

ENGINES = ("numeric", "torch", "jax")
#: why the autodiff references skip a forward that draws random numbers (training mode)
RANDOM_FORWARD = ("the layer draws random numbers in training (a npdl.backend.Generator on its own device), which "
                  "a forward on torch tensors or JAX arrays cannot repeat; finite differences repeat the same draws")


def numeric(run, values: dict, wrt, dy, eps: float) -> dict:
    """``{name: gradient}`` by central differences (:func:`npdl.gradcheck.numerical_vjp`)."""
    def forward(**args):
        return run(args), None

    return {name: numerical_vjp(forward, values, name, dy, eps) for name in wrt}


def _is_float(x) -> bool:
    return hasattr(x, "dtype") and backend.is_floating(x)


def torch_vjp(run, values: dict, wrt, dy) -> dict:
    """``{name: gradient}`` by PyTorch autograd of ``run`` on CPU torch tensors (host copies)."""
    import torch

    def tensor(v):
        return v if v is None or not hasattr(v, "shape") else torch.from_numpy(backend.to_numpy(v).copy())

    leaves = {k: tensor(values[k]).requires_grad_(True) for k in wrt}
    # the forward gets copies of the leaves: it may write into its inputs, which a leaf forbids
    args = {k: (leaves[k].clone() if k in leaves else tensor(v)) for k, v in values.items()}
    y = run(args)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"the forward returned {type(y).__module__}.{type(y).__name__} from torch tensors: "
                        "it left the array API (e.g. called NumPy directly)")
    grads = torch.autograd.grad(y, [leaves[k] for k in wrt], grad_outputs=tensor(dy), allow_unused=True)
    return {k: (torch.zeros_like(leaves[k]) if g is None else g).detach().numpy() for k, g in zip(wrt, grads)}


def jax_vjp(run, values: dict, wrt, dy) -> dict:
    """``{name: gradient}`` by ``jax.vjp`` of ``run`` on JAX arrays (float64 enabled)."""
    from . import jax_ref

    jax = jax_ref._jax()
    jnp = jax.numpy

    def array(v):
        return v if v is None or not hasattr(v, "shape") else jnp.asarray(backend.to_numpy(v))

    consts = {k: array(v) for k, v in values.items() if k not in wrt}

    def f(*xs):
        y = run({**consts, **dict(zip(wrt, xs))})
        if not isinstance(y, jax.Array):
            raise TypeError(f"the forward returned {type(y).__module__}.{type(y).__name__} from JAX arrays: "
                            "it left the array API (e.g. called NumPy directly)")
        return y

    _, pullback = jax.vjp(f, *[array(values[k]) for k in wrt])
    return dict(zip(wrt, pullback(array(dy))))


def available(engine: str) -> tuple[bool, str]:
    """Whether ``engine``'s library imports, and its version or what to install."""
    if engine == "numeric":
        return True, "central differences"
    try:
        if engine == "torch":
            import torch

            return True, f"PyTorch {torch.__version__} autograd"
        import jax

        return True, f"JAX {jax.__version__} jax.vjp"
    except ImportError:
        if engine == "torch":
            return False, 'PyTorch is not installed (pip install "npdl-backprop[torch]")'
        return False, 'JAX is not installed (pip install "jax[cpu]")'


def why_failed(engine: str, exc: Exception) -> str:
    """One line saying why ``engine`` could not differentiate the forward."""
    msg = " ".join(str(exc).split())
    if len(msg) > 240:
        msg = msg[:237] + "..."
    text = f"{type(exc).__name__}: {msg}"
    lowered = msg.lower()
    if engine == "jax" and ("immutable" in lowered or "item assignment" in lowered):
        return f"the forward writes into an array in place, and JAX arrays are immutable ({text})"
    if "has no attribute device" in lowered or "has no attribute 'device'" in lowered:
        return f"the forward reads an array's .device, which traced JAX arrays lack ({text})"
    if engine == "torch" and "inplace operation" in lowered:
        return f"the forward overwrites in place a value autograd needs for the backward pass ({text})"
    return f"the forward could not run on {'torch tensors' if engine == 'torch' else 'JAX arrays'} ({text})"
