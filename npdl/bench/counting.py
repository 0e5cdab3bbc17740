"""An array namespace that counts the floating-point operations it is asked for.

:class:`Counted` wraps a NumPy array and computes with NumPy, and its namespace
(``backend.namespace(counted)``) counts, into the active :class:`Tally`, what every
operation costs under the conventions of :mod:`npdl.bench.work`:

* a matrix product ``(..., m, k) @ (..., k, n)``: ``2 m k n`` per matrix (a multiply-add is 2);
* an elementwise operation (arithmetic, comparison, ``where``, ``maximum``, ``exp``, ``tanh``,
  ``sqrt``, ...), in place or not: 1 per element of its result;
* a reduction (``sum``, ``max``, ``argmax``, ``mean``): 1 per element it reads; ``vecdot``: 2;
* moving data (``reshape``, ``permute_dims``, ``stack``, indexing, ``astype``, creating arrays): 0.

No kernel serves a :class:`Counted` array (:mod:`npdl.kernels` finds none for its namespace),
so layer, loss and optimizer code runs its definition: the count is that of the code in
those files. Count a piece of code with::

    with Tally() as tally:
        y, cache = dense_forward(Counted(x), Counted(W), Counted(b), "tanh")
    tally.flops                                   # 2 N n_in n_out + 2 N n_out

A function the namespace does not know raises ``AttributeError`` (add it to one of the
tables below, with its cost), so nothing is counted as free by accident.
"""

from __future__ import annotations

import operator

import numpy as np

_ACTIVE: list = []  # the tallies being counted into (nested ``with`` blocks all count)


class Tally:
    """FLOPs counted while the ``with`` block runs, in total (:attr:`flops`) and per operation (:attr:`by_op`)."""

    def __init__(self):
        self.flops = 0
        self.by_op: dict = {}

    def __enter__(self):
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE.remove(self)
        return False


def _add(op: str, flops: int) -> None:
    for tally in _ACTIVE:
        tally.flops += int(flops)
        tally.by_op[op] = tally.by_op.get(op, 0) + int(flops)


def _raw(x):
    if isinstance(x, Counted):
        return x.a
    if isinstance(x, (list, tuple)):
        return type(x)(_raw(v) for v in x)
    return x


def _wrap(x):
    return Counted(x) if isinstance(x, (np.ndarray, np.generic)) else x


def _size(x) -> int:
    return int(np.size(x))


def _matmul_flops(a, b, out) -> int:
    return 2 * _size(out) * int(np.shape(a)[-1])


class Counted:
    """A NumPy array whose operations are counted (see the module docstring)."""

    __array_ufunc__ = None  # ``ndarray * Counted`` defers to Counted.__rmul__
    __hash__ = object.__hash__

    def __init__(self, a):
        self.a = np.asarray(a)

    # -- what layer code reads
    shape = property(lambda self: self.a.shape)
    ndim = property(lambda self: self.a.ndim)
    dtype = property(lambda self: self.a.dtype)
    size = property(lambda self: self.a.size)
    nbytes = property(lambda self: self.a.nbytes)
    device = property(lambda self: "cpu")
    T = property(lambda self: Counted(self.a.T))
    mT = property(lambda self: Counted(np.swapaxes(self.a, -1, -2)))

    def __array_namespace__(self, api_version=None):
        return NAMESPACE

    def __repr__(self):
        return f"Counted({self.a!r})"

    def __len__(self):
        return len(self.a)

    def __float__(self):
        return float(self.a)

    def __int__(self):
        return int(self.a)

    def __bool__(self):
        return bool(self.a)

    def __getitem__(self, index):
        return Counted(self.a[_raw(index)])

    def __setitem__(self, index, value):
        self.a[_raw(index)] = _raw(value)

    def __matmul__(self, other):
        out = self.a @ _raw(other)
        _add("matmul", _matmul_flops(self.a, _raw(other), out))
        return Counted(out)

    def __rmatmul__(self, other):
        out = _raw(other) @ self.a
        _add("matmul", _matmul_flops(_raw(other), self.a, out))
        return Counted(out)

    def __imatmul__(self, other):
        return NotImplemented


def _binary(name, fn, reflected=False):
    def method(self, other):
        out = fn(_raw(other), self.a) if reflected else fn(self.a, _raw(other))
        _add(name, _size(out))
        return _wrap(out)
    return method


def _inplace(name, ufunc):
    def method(self, other):
        ufunc(self.a, _raw(other), out=self.a)
        _add(name, self.a.size)
        return self
    return method


def _unary(name, fn):
    def method(self):
        out = fn(self.a)
        _add(name, _size(out))
        return _wrap(out)
    return method


for _name, _fn in [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("floordiv", operator.floordiv), ("pow", operator.pow),
                   ("mod", operator.mod), ("and", operator.and_), ("or", operator.or_), ("xor", operator.xor)]:
    setattr(Counted, f"__{_name}__", _binary(_name, _fn))
    setattr(Counted, f"__r{_name}__", _binary(_name, _fn, reflected=True))
for _name, _fn in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("truediv", np.true_divide),
                   ("pow", np.power), ("and", np.bitwise_and), ("or", np.bitwise_or)]:
    setattr(Counted, f"__i{_name}__", _inplace(_name, _fn))
for _name, _fn in [("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge),
                   ("eq", operator.eq), ("ne", operator.ne)]:
    setattr(Counted, f"__{_name}__", _binary(_name, _fn))
for _name, _fn in [("neg", operator.neg), ("pos", operator.pos), ("abs", operator.abs), ("invert", operator.invert)]:
    setattr(Counted, f"__{_name}__", _unary(_name, _fn))


# ------------------------------------------------------------------------ the namespace

#: elementwise functions: 1 FLOP per element of the result
ELEMENTWISE = ("abs", "acos", "asin", "atan", "add", "subtract", "multiply", "divide", "pow", "negative",
               "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "square", "sin", "cos", "tan", "tanh",
               "sinh", "cosh", "sign", "maximum", "minimum", "where", "clip", "floor", "ceil", "round",
               "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and",
               "logical_or", "logical_not", "isnan", "isinf", "isfinite", "reciprocal")
#: reductions: 1 FLOP per element read
REDUCTIONS = ("sum", "max", "min", "mean", "prod", "argmax", "argmin", "any", "all", "cumulative_sum")
#: data movement and creation: free
FREE = ("reshape", "permute_dims", "stack", "concat", "zeros", "zeros_like", "ones", "ones_like", "full",
        "full_like", "empty", "empty_like", "asarray", "arange", "astype", "take", "take_along_axis",
        "broadcast_to", "broadcast_arrays", "expand_dims", "squeeze", "flip", "matrix_transpose", "eye",
        "linspace", "tril", "triu", "unstack", "moveaxis", "roll", "repeat", "tile")
#: attributes handed over unchanged (dtypes, dtype queries)
PASSTHROUGH = ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool", "newaxis", "pi", "e",
               "inf", "nan", "finfo", "iinfo", "result_type", "can_cast")

_NUMPY_NAMES = {"pow": "power", "concat": "concatenate", "permute_dims": "transpose",
                "cumulative_sum": "cumsum", "matrix_transpose": "matrix_transpose"}


def _numpy(name):
    return getattr(np, _NUMPY_NAMES.get(name, name))


def _call(name, cost):
    fn = _numpy(name)

    def call(*args, **kwargs):
        kwargs.pop("device", None)
        raw_args = [_raw(a) for a in args]
        out = fn(*raw_args, **{k: _raw(v) for k, v in kwargs.items()})
        flops = cost(raw_args, out)
        if flops:
            _add(name, flops)
        if isinstance(out, tuple):
            return tuple(_wrap(o) for o in out)
        return _wrap(out)
    call.__name__ = name
    return call


def _elementwise_cost(args, out):
    return _size(out)


def _reduction_cost(args, out):
    return _size(args[0])


class _Namespace:
    """The namespace of :class:`Counted` arrays (``backend.namespace`` returns it)."""

    __name__ = "npdl.bench.counting"

    def __init__(self):
        for name in ELEMENTWISE:
            setattr(self, name, _call(name, _elementwise_cost))
        for name in REDUCTIONS:
            setattr(self, name, _call(name, _reduction_cost))
        for name in FREE:
            setattr(self, name, _call(name, lambda args, out: 0))
        for name in PASSTHROUGH:
            setattr(self, name, getattr(np, name))
        self.vecdot = _call("vecdot", lambda args, out: 2 * _size(args[0]))
        self.matmul = _call("matmul", lambda args, out: _matmul_flops(args[0], args[1], out))

    def isdtype(self, dtype, kind):
        return np.isdtype(np.dtype(dtype), kind)

    def __repr__(self):
        return "<npdl.bench.counting namespace>"


NAMESPACE = _Namespace()


def count(fn, *args, **kwargs):
    """``(result, flops)`` of ``fn(*args, **kwargs)`` (pass :class:`Counted` arrays to count anything)."""
    with Tally() as tally:
        out = fn(*args, **kwargs)
    return out, tally.flops


def counted_tree(x):
    """``x`` with every NumPy array (also inside lists, tuples and dicts) wrapped as :class:`Counted`."""
    if isinstance(x, np.ndarray):
        return Counted(x)
    if isinstance(x, (list, tuple)):
        return type(x)(counted_tree(v) for v in x)
    if isinstance(x, dict):
        return {k: counted_tree(v) for k, v in x.items()}
    return x


__all__ = ["Counted", "NAMESPACE", "Tally", "count", "counted_tree"]
