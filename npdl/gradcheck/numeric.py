"""Central finite differences and the relative error used to compare gradients.

Both run on the arrays' own device through the array API, so the same check
proves the NumPy, array-api-strict and CuPy backends.
"""

from __future__ import annotations

from .. import backend
from ..deferred import formed


def relative_error(a, b) -> float:
    """``max_i |a_i - b_i| / max(1e-8, max_i (|a_i| + |b_i|))``.

    The error is scaled by the size of the gradients as a whole, not element by
    element: an element whose true gradient is ~1e-12 would otherwise turn
    round-off into a "100% error". The 1e-8 floor keeps an all-zero gradient
    (correctly zero on both sides) at error 0 instead of 0/0. A gradient kept as
    its factors (:class:`npdl.deferred.ProductGrad`) is formed first.
    """
    a, b = formed(a), formed(b)
    xp = backend.namespace(a, b)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare gradients of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = xp.reshape(a, (-1,)), xp.reshape(b, (-1,))
    if int(a.shape[0]) == 0:
        return 0.0
    num = backend.to_float(xp.max(xp.abs(a - b)))
    den = backend.to_float(xp.max(xp.abs(a) + xp.abs(b)))
    return num / max(1e-8, den)


def numerical_vjp(forward, inputs: dict, wrt: str, dy, eps: float = 1e-6):
    """``dL/d inputs[wrt]`` for ``L = sum(forward(**inputs)[0] * dy)`` by central differences.

    Each element ``v`` of ``inputs[wrt]`` is moved to ``v + eps`` and ``v - eps``:
    ``dL/dv ~ (L(v + eps) - L(v - eps)) / (2 eps)``, with error O(eps^2) from the
    Taylor series plus O(round-off / eps); eps = 1e-6 in float64 balances the two at
    ~1e-10. Contracting with a random ``dy`` (not ``sum(y)``) checks the whole
    Jacobian, including mistakes that a sum would cancel (e.g. a transposed matrix).
    """
    x = inputs[wrt]
    xp = backend.namespace(x)
    shape = tuple(x.shape)
    flat = xp.asarray(xp.reshape(x, (-1,)), copy=True)
    grad = xp.zeros_like(flat)

    def objective():
        args = dict(inputs)
        args[wrt] = xp.reshape(flat, shape)
        y, _ = forward(**args)
        return backend.to_float(xp.sum(y * dy))

    for i in range(int(flat.shape[0])):
        v = float(flat[i])
        flat[i] = v + eps
        plus = objective()
        flat[i] = v - eps
        minus = objective()
        flat[i] = v
        grad[i] = (plus - minus) / (2.0 * eps)
    return xp.reshape(grad, shape)
