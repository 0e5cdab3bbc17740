"""Gradients in few, large messages: flat buffers holding many parameters each.

An allreduce costs a latency (microseconds over shared memory, tens of microseconds
between machines) plus its bytes over the bandwidth; one message per parameter pays the
latency once per parameter (a Dense layer has two, an LSTM three). So the gradients are
*bucketed*: consecutive parameters of one device and dtype share a flat buffer of at most
:data:`BUCKET_BYTES` (PyTorch's DistributedDataParallel uses the same 25 MiB), and each
bucket is one allreduce. A small model is one message per step.

Layout (the same on every rank, from the parameters' order)::

    bucket k:  [ g_a.ravel() | g_b.ravel() | ... | (one scalar slot, in the first bucket of its dtype) ]

:meth:`Buckets.pack` copies every gradient into its slot -- a gradient kept as factors
(:class:`npdl.deferred.ProductGrad`, ``g = sum_p A_p^T B_p``) is formed straight into it
by ``matmul(A^T, B, out=slot)``, with no temporary -- and :meth:`Buckets.views` gives each
slot back as an array of the parameter's shape, a view into the buffer: after the
allreduce they *are* the averaged gradients. The scalar slot carries the batch loss
along for free.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..deferred import ProductGrad, formed

#: the most bytes of gradients one allreduce carries
BUCKET_BYTES = 25 * 2 ** 20


def _itemsize(dtype_name: str) -> int:
    return np.dtype(dtype_name).itemsize


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _matmul_module(a):
    """The library whose ``matmul`` takes ``out=`` for ``a``: NumPy or CuPy."""
    return np if type(a) is np.ndarray else backend.cupy_or_none()


class Buckets:
    """Flat buffers for the arrays of ``params`` (name -> array: only shapes, dtypes and devices are read).

    ``scalar_dtype`` (a dtype name) reserves one extra element on ``scalar_device`` for a
    scalar reduced with the gradients (the loss).
    """

    def __init__(self, params: dict, bucket_bytes: int = BUCKET_BYTES, scalar_dtype=None, scalar_device=None):
        plan = []  # [(device, dtype, [(name, shape, offset, size)], used)]
        open_bucket = {}
        for name, p in params.items():
            device, dtype, shape = backend.device_of(p), backend.dtype_name(p), tuple(int(d) for d in p.shape)
            size = _size(shape)
            key = (device, dtype)
            k = open_bucket.get(key)
            if k is None or (plan[k][3] + size) * _itemsize(dtype) > bucket_bytes and plan[k][3] > 0:
                plan.append((device, dtype, [], 0))
                k = open_bucket[key] = len(plan) - 1
            dev, dt, entries, used = plan[k]
            entries.append((name, shape, used, size))
            plan[k] = (dev, dt, entries, used + size)
        self.scalar_slot = None
        if scalar_dtype is not None:
            key = (backend.get_device(scalar_device), backend.resolve_float(scalar_dtype))
            k = next((i for i, (dev, dt, _, _) in enumerate(plan) if (dev, dt) == key), None)
            if k is None:
                plan.append((key[0], key[1], [], 0))
                k = len(plan) - 1
            dev, dt, entries, used = plan[k]
            self.scalar_slot = (k, used)
            plan[k] = (dev, dt, entries, used + 1)
        self.flats, self._views = [], {}
        for device, dtype, entries, used in plan:
            flat = device.zeros((used,), dtype)
            self.flats.append(flat)
            xp = backend.namespace(flat)
            for name, shape, offset, size in entries:
                self._views[name] = xp.reshape(flat[offset:offset + size], shape)
        self.names = list(params)

    @property
    def messages(self) -> int:
        """Allreduce calls per step: one per bucket."""
        return len(self.flats)

    @property
    def nbytes(self) -> int:
        """Bytes each rank contributes to the reduction per step (every bucket, scalar included)."""
        return sum(_size(f.shape) * _itemsize(backend.dtype_name(f)) for f in self.flats)

    def fits(self, params: dict) -> bool:
        """Whether ``params`` has the names, shapes and dtypes this layout was made for."""
        if list(params) != self.names:
            return False
        return all(tuple(int(d) for d in p.shape) == tuple(self._views[k].shape)
                   and backend.dtype_name(p) == backend.dtype_name(self._views[k]) for k, p in params.items())

    def views(self) -> dict:
        """``{name: slot}``: each slot an array of its parameter's shape, a view into a bucket."""
        return dict(self._views)

    def scalar(self):
        """The scalar slot as a 0-d view (None without one)."""
        if self.scalar_slot is None:
            return None
        k, offset = self.scalar_slot
        flat = self.flats[k]
        return backend.namespace(flat).reshape(flat[offset:offset + 1], ())

    def zero(self) -> None:
        for flat in self.flats:
            flat[...] = 0

    def pack(self, values: dict, scalar=None) -> None:
        """Copy ``values[name]`` (arrays or :class:`ProductGrad`) into the slots, ``scalar`` into its slot."""
        for name, view in self._views.items():
            g = values[name]
            if isinstance(g, ProductGrad) and not g.is_formed:
                lib = _matmul_module(view)
                for i, (A, B) in enumerate(g.pairs):  # g = sum_p A_p^T B_p, formed in the slot
                    if i == 0:
                        lib.matmul(A.T, B, out=view)
                    else:
                        view += A.T @ B
            else:
                view[...] = formed(g)
        if self.scalar_slot is not None:
            k, offset = self.scalar_slot
            self.flats[k][offset] = 0 if scalar is None else scalar

    def unpack(self, targets: dict) -> None:
        """Copy every slot into ``targets[name]`` in place (e.g. the parameters after a broadcast)."""
        for name, view in self._views.items():
            targets[name][...] = view

    def allreduce_sum(self, comm) -> None:
        """Every bucket summed over the ranks, in place: one message per bucket."""
        for flat in self.flats:
            comm.allreduce_sum(flat)

    def broadcast(self, comm, root: int = 0) -> None:
        for flat in self.flats:
            comm.broadcast(flat, root)
