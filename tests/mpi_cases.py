"""Small float64 models of every family and data for them, shared by the data-parallel checks.

Used by ``tests/mpi_equivalence.py`` (run under ``mpiexec -n 2``) and by ``tests/test_distributed.py``
(in one process). Each case builds the same model from a seed on every rank, so a rank's own
copy is the one-process reference.
"""

from __future__ import annotations

import threading

import numpy as np

import npdl
from npdl.layers import (LSTM, Conv2D, Dense, Dropout, Flatten, MaskingNoise, MaxPool2D, SimpleRNN,
                         TimeDistributed)
from npdl.layers.autoencoder import TiedAutoencoder
from npdl.distributed import Communicator
from npdl.optim import SGD, Adam, Momentum

DT = "float64"
#: 15 examples in batches of 7: 7, 7, 1 -- shards 4/3, 4/3 and 1/0 over two ranks (3 steps)
N, BATCH = 15, 7


def _g(seed):
    return npdl.Generator("cpu", seed)


def mlp(seed):
    return [Dense(6, 5, activation="tanh", dtype=DT, rng=_g(seed)), Dense(5, 3, dtype=DT, rng=_g(seed + 1))]


def mlp_dropout(seed):
    return [Dense(6, 5, activation="tanh", dtype=DT, rng=_g(seed)), Dropout(0.4, rng=_g(seed + 7)),
            Dense(5, 3, dtype=DT, rng=_g(seed + 1))]


def tied_da(seed):
    return [MaskingNoise(0.3, rng=_g(seed + 3)), TiedAutoencoder(6, 4, "sigmoid", "sigmoid", dtype=DT, rng=_g(seed))]


def conv(seed):
    return [Conv2D(1, 2, 3, dtype=DT, rng=_g(seed)), MaxPool2D(2), Flatten(), Dense(8, 3, dtype=DT, rng=_g(seed + 1))]


def rnn(seed):
    return [SimpleRNN(4, 5, dtype=DT, rng=_g(seed)), Dense(5, 3, dtype=DT, rng=_g(seed + 1))]


def lstm(seed):
    return [LSTM(2, 4, return_sequences=True, dtype=DT, rng=_g(seed)),
            TimeDistributed(Dense(4, 1, dtype=DT, rng=_g(seed + 1)))]


#: name -> (layers, loss, x shape of one example, y: "labels" or "inputs" or a target shape, keyed draws?)
FAMILIES = {
    "mlp": (mlp, "softmax_cross_entropy", (6,), "labels", False),
    "mlp-dropout": (mlp_dropout, "softmax_cross_entropy", (6,), "labels", True),
    "tied-da": (tied_da, "reconstruction_cross_entropy", (6,), "inputs", True),
    "conv": (conv, "softmax_cross_entropy", (1, 6, 6), "labels", False),
    "rnn": (rnn, "softmax_cross_entropy", (3, 4), "labels", False),
    "lstm": (lstm, "mse", (3, 2), (3, 1), False),
}
OPTIMIZERS = {"sgd": lambda: SGD(lr=0.1), "momentum": lambda: Momentum(lr=0.05, momentum=0.9),
              "adam": lambda: Adam(lr=0.01)}
L2 = 1e-3


def data(family, n=N, seed=0):
    """``(x, y)`` for ``family``: float64 inputs in [0, 1), integer labels or float targets."""
    _, _, shape, target, _ = FAMILIES[family]
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + shape)
    if target == "labels":
        y = rng.integers(0, 3, n).astype(np.int64)
    elif target == "inputs":
        y = x
    else:
        y = rng.standard_normal((n,) + target)
    return x, y


def model(family, optimizer, seed=11):
    """The compiled model of ``family`` with ``optimizer`` and an L2 penalty, the same for every seed."""
    layers, loss, _, _, _ = FAMILIES[family]
    m = npdl.Sequential(layers(seed), name=family)
    metrics = ["error"] if loss == "softmax_cross_entropy" else None
    return m.compile(loss, OPTIMIZERS[optimizer](), metrics=metrics, l2=L2)


def relative_difference(a: dict, b: dict) -> float:
    """max over parameters of ``max|a - b| / max|b|``."""
    worst = 0.0
    for k in b:
        scale = float(np.max(np.abs(b[k]))) or 1.0
        worst = max(worst, float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) / scale)
    return worst


def params(m) -> dict:
    return {k: np.array(v) for k, v in m.state_dict().items()}


# ------------------------------------------------------------ ranks as threads, for tests without MPI

class ThreadWorld:
    """``size`` ranks as threads of one process: what each rank sends meets at a barrier (30 s at most,
    so a rank left waiting fails the test instead of hanging it)."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=30)
        self.slots = [None] * size

    def run(self, fn):
        """``[fn(comm_of_rank_r) for r]``, each on its own thread; the first exception is raised."""
        results, errors = [None] * self.size, [None] * self.size

        def body(rank):
            try:
                results[rank] = fn(ThreadComm(self, rank))
            except BaseException as exc:  # noqa: B036 -- reported below
                errors[rank] = exc
                self.barrier.abort()

        threads = [threading.Thread(target=body, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first = next((e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)),
                     next((e for e in errors if e is not None), None))
        if first is not None:
            raise first
        return results


class ThreadComm(Communicator):
    """One rank of a :class:`ThreadWorld`; sums in rank order, so every rank gets the same bits."""

    def __init__(self, world, rank):
        self.world, self.rank, self.size = world, rank, world.size
        self.calls = {"allreduce_sum": 0, "broadcast": 0, "agree_max": 0}

    def _exchange(self, value):
        self.world.slots[self.rank] = value
        self.world.barrier.wait()
        values = list(self.world.slots)
        self.world.barrier.wait()
        return values

    def allreduce_sum(self, a):
        self.calls["allreduce_sum"] += 1
        values = self._exchange(np.array(a, copy=True))
        total = values[0].copy()
        for v in values[1:]:
            total += v
        a[...] = total
        return a

    def broadcast(self, a, root=0):
        self.calls["broadcast"] += 1
        a[...] = self._exchange(np.array(a, copy=True))[root]
        return a

    def barrier(self):
        self._exchange(None)

    def agree_max(self, values):
        self.calls["agree_max"] += 1
        return [max(column) for column in zip(*self._exchange([int(v) for v in values]))]

    def host_sum(self, values):
        return [float(sum(column)) for column in zip(*self._exchange([float(v) for v in values]))]

    def share(self, obj, root=0):
        return self._exchange(obj)[root]

    def gather_all(self, obj):
        return self._exchange(obj)

    def abort(self, code=1):
        raise RuntimeError(f"rank {self.rank} aborted the job")
