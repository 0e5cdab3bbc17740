"""A weight gradient kept as the matrix products it is the sum of, formed when it is read.

Many weight gradients are products: a dense layer's ``dW = x^T da`` with ``x``
(N, n_in) and ``da`` (N, n_out); a tied autoencoder's ``dW = x~^T dA_enc + dA_dec^T h``;
a recurrent layer's ``dW_x = X^T dA``. Backward stores such a gradient as a
:class:`ProductGrad` holding the factors, ``g = sum_p A_p^T B_p``, instead of the
(n_in, n_out) array. Nothing is lost by waiting:

* whoever reads it as an array gets the formed gradient: ``np.asarray(g)``, arithmetic
  (``g * 2``, ``W - lr * g``), ``g.shape``, indexing, ``print(g)``, :func:`formed`;
  it is formed once and kept;
* an optimizer that can apply ``p <- beta p + alpha sum_p A_p^T B_p`` in one GEMM
  (plain SGD, :mod:`npdl.optim.sgd`) takes the factors and never forms it, saving a
  weight-sized temporary and a pass over the weights, which at small batches is most
  of a step's time.

So ``layer.grads["W"]`` is never missing, whatever optimizer runs; only *when* the
product is computed depends on who reads it.
"""

from __future__ import annotations

import array_api_compat

from . import backend


class ProductGrad:
    """The gradient ``g = sum_p A_p^T B_p`` of one weight, for ``pairs = [(A_1, B_1), ...]``.

    Each ``A_p`` is (N_p, M), ``B_p`` (N_p, K); ``g`` is (M, K). The factors must share one
    dtype and device (they come from one layer's backward pass). Read it as an array and it
    is formed (once); :attr:`pairs` gives the factors to a consumer that applies them itself.
    """

    __slots__ = ("pairs", "shape", "dtype", "_formed")

    def __init__(self, pairs):
        pairs = list(pairs)
        if not pairs:
            raise ValueError("ProductGrad: expected a non-empty list of (A, B) factor pairs")
        A0, B0 = pairs[0]
        M, K = A0.shape[-1], B0.shape[-1]
        dtype = A0.dtype
        for A, B in pairs:  # a layer passes one or two pairs: the checks cost a few attribute reads
            if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[0] or A.shape[1] != M or B.shape[1] != K:
                raise ValueError(f"ProductGrad: factors of shapes {tuple(A.shape)} and {tuple(B.shape)} do not "
                                 f"give a ({M}, {K}) product A^T B")
            if A.dtype != dtype or B.dtype != dtype:
                raise ValueError("ProductGrad: the factors must share one dtype")
        self.pairs = pairs
        self.shape = (int(M), int(K))
        self.dtype = dtype
        self._formed = None

    @property
    def is_formed(self) -> bool:
        """Whether the array has been formed (read) already."""
        return self._formed is not None

    def form(self):
        """The gradient as an array, ``sum_p A_p^T B_p`` (computed on first use, then kept)."""
        if self._formed is None:
            g = None
            for A, B in self.pairs:
                term = A.T @ B  # (M, N_p) @ (N_p, K) -> (M, K)
                if g is None:
                    g = term
                else:
                    g += term
            self._formed = g
        return self._formed

    # -- an array to whoever reads it
    @property
    def ndim(self) -> int:
        return 2

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def device(self):
        return self.pairs[0][0].device if hasattr(self.pairs[0][0], "device") else None

    @property
    def T(self):
        return self.form().T

    def __array__(self, dtype=None, copy=None):  # NumPy asks: the formed array on the host
        out = backend.to_numpy(self.form())
        return out if dtype is None else out.astype(dtype, copy=False)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):  # NumPy ufuncs see the formed array
        if "out" in kwargs:
            kwargs["out"] = tuple(formed(o) for o in kwargs["out"])
        return getattr(ufunc, method)(*(formed(i) for i in inputs), **kwargs)

    def __array_function__(self, func, types, args, kwargs):  # np.sum(g), np.linalg.norm(g), ...
        return func(*_formed_args(args), **dict(zip(kwargs, _formed_args(kwargs.values()))))

    def __array_namespace__(self, api_version=None):  # the factors' namespace, as array_api_compat gives it
        return array_api_compat.array_namespace(self.pairs[0][0], api_version=api_version)

    def __getitem__(self, key):
        return self.form()[key]

    def __len__(self):
        return self.shape[0]

    def __iter__(self):
        return iter(self.form())

    def __float__(self):
        return float(self.form())

    def __repr__(self):
        return f"ProductGrad({len(self.pairs)} product{'s' if len(self.pairs) > 1 else ''}, " \
               f"shape={self.shape}):\n{self.form()!r}"


def _forward_binary(name):
    def method(self, other):
        return getattr(self.form(), name)(formed(other))
    method.__name__ = name
    return method


def _forward_inplace(name):
    def method(self, other):
        getattr(self.form(), name)(formed(other))
        return self
    method.__name__ = name
    return method


def _formed_args(args):
    return [formed(a) if not isinstance(a, (list, tuple)) else type(a)(formed(b) for b in a) for a in args]


def _forward_unary(name):
    def method(self):
        return getattr(self.form(), name)()
    method.__name__ = name
    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "pow", "matmul", "mod"):
    setattr(ProductGrad, f"__{_name}__", _forward_binary(f"__{_name}__"))
    setattr(ProductGrad, f"__r{_name}__", _forward_binary(f"__r{_name}__"))
for _name in ("add", "sub", "mul", "truediv"):  # in place: the formed array changes, and is what counts
    setattr(ProductGrad, f"__i{_name}__", _forward_inplace(f"__i{_name}__"))
for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    setattr(ProductGrad, f"__{_name}__", _forward_binary(f"__{_name}__"))
for _name in ("neg", "pos", "abs"):
    setattr(ProductGrad, f"__{_name}__", _forward_unary(f"__{_name}__"))
ProductGrad.__hash__ = None  # compares like an array, so it is not hashable


def formed(g):
    """``g`` as an array: a :class:`ProductGrad` formed, anything else as it is."""
    return g.form() if isinstance(g, ProductGrad) else g
