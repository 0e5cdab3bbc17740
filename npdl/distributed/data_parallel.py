"""Data parallelism: every rank holds the whole model and trains on its shard of each global batch.

A global batch of ``B`` examples is cut into ``P`` contiguous shards (:func:`shard_bounds`:
sizes differ by at most one, the first ranks get the extra examples, and a rank gets none
when ``B < P``). Rank ``r`` holds ``n_r`` examples, rows ``lo_r .. lo_r + n_r - 1``. One step:

    L_r = loss of the shard                      (a mean over its n_r examples, like the model's loss)
    g_r = w_r dL_r/dtheta,   w_r = n_r / B       (backward from the loss with dL/dL_r = w_r, not 1)
    g   = sum_r g_r          (one allreduce per bucket, :mod:`npdl.distributed.buckets`)
        = (1 / B) sum over the whole batch of the per-example gradients
        = the gradient one process computes on the whole batch

since a mean over the batch is the average of the shard means weighted by the shard sizes.
A loss with ``reduction="sum"`` has ``w_r = 1``; a rank with an empty shard sends zeros. Then
every rank hands ``g`` (the *data* gradient) to its optimizer, which adds the L1/L2 penalties'
gradients and the decoupled weight decay from its own parameters -- the same on every rank --
and takes the same step. So penalties and decay count once, not once per rank, and the ranks'
parameters stay equal: they start from rank 0's (:meth:`DataParallel.sync_parameters`) and see
the same bits from the allreduce at every step (checked once per epoch, :meth:`check_in_sync`).

The batch loss ``sum_r w_r L_r`` rides along in the last element of a bucket. Random draws per
example (dropout, corruption) come from :class:`npdl.distributed.keyed.KeyedGenerator`\\ s keyed
by the example's row in the global batch, so P ranks draw exactly what one process does.
"""

from __future__ import annotations

import math
import numbers
import os
import time

from .. import backend
from ..training.errors import TrainingDivergedError
from .buckets import BUCKET_BYTES, Buckets
from .errors import DistributedError
from .keyed import KeyedGenerator
from .launch import world


def shard_bounds(n: int, size: int, rank: int) -> tuple:
    """``(lo, hi)``: rank ``rank``'s rows of ``n`` split over ``size`` ranks, as ``numpy.array_split`` does."""
    q, extra = divmod(int(n), int(size))
    lo = rank * q + min(rank, extra)
    return lo, lo + q + (1 if rank < extra else 0)


def _drawing_layers(model) -> list:
    """The layers that keep a generator for per-example draws (an ``rng`` attribute), wrapped ones included."""
    found = []
    for layer in model.layers:
        for candidate in (layer, getattr(layer, "layer", None)):
            if candidate is not None and "rng" in vars(candidate):
                found.append(candidate)
    return found


class DataParallel:
    """Trains ``model`` as one rank of ``comm`` (default: :func:`npdl.distributed.world`).

    Creating it broadcasts rank 0's parameters, gives every drawing layer a
    :class:`KeyedGenerator` (rank 0's seed) and sets ``model.data_parallel``, through which
    ``model.fit`` and ``model.evaluate`` run sharded. ``bucket_bytes`` caps one allreduce.
    """

    def __init__(self, model, comm=None, bucket_bytes: int = BUCKET_BYTES):
        self.model = model
        self.comm = comm if comm is not None else world()
        self.bucket_bytes = int(bucket_bytes)
        self._buckets = None
        #: seconds spent in the gradient allreduce (waiting for the slowest rank included) and steps taken
        self.reduce_seconds, self.steps = 0.0, 0
        self.generators = self._install_generators()
        self.sync_parameters()
        model.data_parallel = self

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def size(self) -> int:
        return self.comm.size

    # -- start: the same parameters and generators on every rank
    def _install_generators(self) -> list:
        """Replace every drawing layer's generator by a keyed one seeded as rank 0's (a shared generator stays shared)."""
        device, keyed, shared = self.model.device, [], {}
        for layer in _drawing_layers(self.model):
            rng = layer.rng
            if isinstance(rng, KeyedGenerator):  # attached before: keep it (and its place in the sequence)
                shared[id(rng)] = rng
            if id(rng) not in shared:
                seed = getattr(rng, "seed", None)
                fresh = int.from_bytes(os.urandom(8), "little") >> 1 if self.rank == 0 else None
                seed = self.comm.share(int(seed) if isinstance(seed, numbers.Integral) else fresh)
                shared[id(rng)] = KeyedGenerator(device, seed)
            layer.rng = shared[id(rng)]
            if all(layer.rng is not g for g in keyed):
                keyed.append(layer.rng)
        return keyed

    def sync_parameters(self, root: int = 0) -> None:
        """Every parameter (frozen ones too) becomes ``root``'s, in bucket-sized broadcasts."""
        params = self.model.parameters()
        if self.size == 1 or not params:
            return
        buckets = Buckets(params, self.bucket_bytes)
        buckets.pack(params)
        buckets.broadcast(self.comm, root)
        buckets.unpack(params)

    def check_in_sync(self, when: str = "") -> None:
        """Raise :class:`DistributedError` (on every rank alike) unless every rank holds the same parameters.

        Compares each parameter's float64 sum, bit for bit, in one small message."""
        params = list(self.model.parameters().values())
        if self.size == 1 or not params:
            return
        xp = backend.namespace(*params)
        sums = backend.to_numpy(xp.stack([xp.sum(xp.astype(p, xp.float64)) for p in params]))
        bits = [int(b) for b in sums.view("int64")]
        agreed = self.comm.agree_max(bits + [-b for b in bits])
        highest, lowest = agreed[:len(bits)], [-b for b in agreed[len(bits):]]
        if highest != lowest:
            raise DistributedError(f"the ranks' parameters differ{' ' + when if when else ''}: the allreduce did "
                                   "not give every rank the same sum (an MPI that reduces in rank-dependent order?)")

    # -- shards
    def shard(self, n: int) -> tuple:
        """This rank's ``(lo, hi)`` of ``n`` rows (:func:`shard_bounds`)."""
        return shard_bounds(n, self.size, self.rank)

    def local(self, batch):
        """This rank's rows of a global batch."""
        lo, hi = self.shard(int(batch.shape[0]))
        return batch[lo:hi, ...]

    def loss_weight(self, n: int, batch_size: int) -> float:
        """``w_r``: ``n / batch_size`` for a mean loss, 1 for a summed one (see the module docstring)."""
        return 1.0 if getattr(self.model.loss, "reduction", "mean") == "sum" else n / batch_size

    def _buckets_for(self, params: dict) -> Buckets:
        if self._buckets is None or not self._buckets.fits(params):
            dtype = backend.dtype_name(next(iter(params.values()))) if params else "float32"
            self._buckets = Buckets(params, self.bucket_bytes, scalar_dtype=dtype, scalar_device=self.model.device)
        return self._buckets

    @property
    def bucket_layout(self):
        """The :class:`Buckets` of the last step (None before the first): ``messages``, ``nbytes``."""
        return self._buckets

    # -- one step
    def train_shard(self, xb, yb, batch_size: int, offset: int):
        """One synchronous step on this rank's shard ``(xb, yb)`` (maybe empty) of a global batch of
        ``batch_size`` examples, whose row ``offset`` is the shard's first. Returns ``(loss, out)``: the
        global batch's loss (+ penalty) as a 0-d device array, the same on every rank, and the shard's
        output (None for an empty shard)."""
        model = self.model
        model.require_compiled("train_step")
        for generator in self.generators:
            generator.begin_step(offset)
        n = int(xb.shape[0])
        weight = self.loss_weight(n, batch_size)
        out = loss = None
        if n:
            out = model.forward(xb, training=True)
            loss = model.loss.forward(out, yb)
            model.backward(model.loss.backward(weight))
        params, grads, decay, pens = model.step_inputs()
        buckets = self._buckets_for(params)
        if n:
            buckets.pack(grads, loss * weight)
        else:
            buckets.zero()
        started = time.perf_counter()
        buckets.allreduce_sum(self.comm)
        self.reduce_seconds += time.perf_counter() - started
        self.steps += 1
        scalar = buckets.scalar()
        total = backend.namespace(scalar).asarray(scalar, copy=True)  # the slot is overwritten next step
        penalty = model.penalty_value()
        if penalty is not None:
            total = total + penalty
        if getattr(model, "check_finite", False):  # the global loss, the same on every rank: all refuse together
            value = backend.to_float(total)
            if not math.isfinite(value):
                model.clear_caches()
                raise TrainingDivergedError(f"{model.name}.train_step: the loss of this batch is {value}, so the "
                                            "step was not taken on any rank (the parameters are as they were)")
        if params:
            model.optimizer.step(params, buckets.views(), decay_names=decay, penalties=pens)
        return total, out

    def train_batch(self, xb, yb):
        """:meth:`Sequential.train_batch` for a global batch every rank holds: this rank trains on its rows.
        Returns ``(loss of the global batch, this rank's output)``."""
        n = int(xb.shape[0])
        lo, hi = self.shard(n)
        return self.train_shard(xb[lo:hi, ...], yb[lo:hi, ...], n, lo)

    def train_step(self, xb, yb):
        """:meth:`Sequential.train_step` for a global batch every rank holds; returns its loss."""
        return self.train_batch(xb, yb)[0]

    # -- loops (sharded, reduced; see npdl.distributed.loops)
    def evaluate_means(self, x, y, batch_size=256, metrics=None, drop_last=False) -> dict:
        from .loops import evaluate_means

        return evaluate_means(self, x, y, batch_size, metrics, drop_last)

    def fit(self, *args, **kwargs):
        from .loops import fit

        return fit(self, *args, **kwargs)


def attach(model, comm=None, bucket_bytes: int = BUCKET_BYTES) -> DataParallel:
    """Make ``model`` train as one rank of ``comm`` (the job's world by default); see :class:`DataParallel`."""
    return DataParallel(model, comm, bucket_bytes)


def attach_if(model, options: dict):
    """:func:`attach` when ``options["distributed"]`` (a recipe's options), else None and nothing changes."""
    return attach(model) if options.get("distributed") else None


def detach(model) -> None:
    """Train ``model`` in this process alone again (its generators stay keyed)."""
    if getattr(model, "data_parallel", None) is not None:
        model.data_parallel = None
