"""Communicators: what the ranks of a data-parallel job say to each other.

Every communicator has ``rank`` and ``size`` and works in place on arrays:

* ``allreduce_sum(a)`` / ``allreduce_mean(a)``: every rank's ``a`` becomes the sum / mean over
  the ranks (the same bits on every rank: MPI's and NCCL's allreduce apply one commutative
  sum, reduced once, to every rank's copy);
* ``broadcast(a, root=0)``: every rank's ``a`` becomes ``root``'s;
* ``barrier()``; and on the host ``agree_max(ints)`` (a decision every rank takes together),
  ``host_sum(floats)`` and ``share(obj, root=0)`` (a picklable object from ``root``).

The array operations choose the transport by the arrays' device: NumPy arrays go through MPI
(:class:`MPICommunicator`, mpi4py), CuPy arrays through NCCL (:class:`npdl.distributed.nccl.NCCLChannel`,
bootstrapped over MPI, one GPU per rank). :class:`SingleProcess` is the one-rank world: every
operation is the identity and nothing needs MPI installed.
"""

from __future__ import annotations

import os
import pickle
import sys
import time

import numpy as np

from .. import backend
from ..errors import DeviceError


class Communicator:
    """The interface (see the module docstring); :class:`SingleProcess` and :class:`MPICommunicator` implement it."""

    rank: int = 0
    size: int = 1

    def allreduce_sum(self, a):
        raise NotImplementedError

    def allreduce_mean(self, a):
        """``a <- (sum over ranks of a) / size`` in place; returns ``a``."""
        self.allreduce_sum(a)
        if self.size > 1:
            a /= self.size
        return a

    def broadcast(self, a, root: int = 0):
        raise NotImplementedError

    def barrier(self) -> None:
        raise NotImplementedError

    def agree_max(self, values) -> list:
        """The elementwise maximum over ranks of a list of ints: a decision every rank takes together."""
        raise NotImplementedError

    def host_sum(self, values) -> list:
        """The elementwise sum over ranks of a list of floats (float64 on the host)."""
        raise NotImplementedError

    def share(self, obj, root: int = 0):
        """``root``'s ``obj`` (picklable) on every rank."""
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now, with exit status ``code``."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"rank {self.rank} of {self.size}"


class SingleProcess(Communicator):
    """One rank: every collective is the identity. Needs no MPI."""

    def allreduce_sum(self, a):
        return a

    def broadcast(self, a, root: int = 0):
        return a

    def barrier(self) -> None:
        pass

    def agree_max(self, values) -> list:
        return [int(v) for v in values]

    def host_sum(self, values) -> list:
        return [float(v) for v in values]

    def share(self, obj, root: int = 0):
        return obj

    def abort(self, code: int = 1) -> None:
        raise SystemExit(code)


def _host_buffer(a, who: str):
    """``a`` as a C-contiguous NumPy array MPI can read and write in place, else a DeviceError."""
    if type(a) is not np.ndarray:
        raise DeviceError(f"{who}: MPI works on NumPy arrays ('cpu'), got {type(a).__module__}.{type(a).__name__}; "
                          "GPU arrays go through NCCL, and 'strict' arrays are not supported in distributed runs")
    if not a.flags.c_contiguous:
        raise DeviceError(f"{who}: the array must be C-contiguous to be reduced in place")
    return a


#: seconds :meth:`MPICommunicator.abort` waits before ``MPI_Abort``, for the launcher to forward
#: what the ranks wrote last (the reason the job ends)
ABORT_GRACE_SECONDS = 0.25


class MPICommunicator(Communicator):
    """The ranks of an MPI communicator (``mpi4py.MPI.COMM_WORLD`` by default).

    NumPy arrays are reduced and broadcast by MPI in place; CuPy arrays by an NCCL channel
    created on first use for the array's GPU (its unique id shared over MPI).
    """

    def __init__(self, comm=None):
        from mpi4py import MPI

        if not MPI.Is_initialized():  # imported without starting MPI (npdl info's mpi_info)
            MPI.Init_thread(MPI.THREAD_MULTIPLE)
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._nccl = {}

    # -- arrays: MPI for NumPy, NCCL for CuPy
    def _channel(self, a):
        """The NCCL channel for a CuPy array's GPU, or None for anything else."""
        if type(a) is np.ndarray:
            return None
        device = backend.device_of(a)
        if device.kind != "cupy":
            return None
        channel = self._nccl.get(device.index)
        if channel is None:
            from .nccl import NCCLChannel

            channel = self._nccl[device.index] = NCCLChannel(self, device)
        return channel

    def allreduce_sum(self, a):
        """``a <- sum over ranks of a`` in place; returns ``a``."""
        channel = self._channel(a)
        if channel is not None:
            return channel.allreduce_sum(a)
        self.comm.Allreduce(self.MPI.IN_PLACE, _host_buffer(a, "allreduce_sum"), op=self.MPI.SUM)
        return a

    def broadcast(self, a, root: int = 0):
        """``a <- root's a`` in place; returns ``a``."""
        channel = self._channel(a)
        if channel is not None:
            return channel.broadcast(a, root)
        self.comm.Bcast(_host_buffer(a, "broadcast"), root=root)
        return a

    def synchronize(self) -> None:
        """Wait for every NCCL operation this rank launched (each with its timeout)."""
        for channel in self._nccl.values():
            channel.synchronize()

    # -- the host
    def barrier(self) -> None:
        self.synchronize()
        self.comm.Barrier()

    def agree_max(self, values) -> list:
        buf = np.asarray([int(v) for v in values], dtype=np.int64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.MAX)
        return [int(v) for v in buf]

    def host_sum(self, values) -> list:
        buf = np.asarray([float(v) for v in values], dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return [float(v) for v in buf]

    def share(self, obj, root: int = 0):
        data = pickle.dumps(obj) if self.rank == root else None
        return pickle.loads(self.comm.bcast(data, root=root))

    def gather_all(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        return self.comm.allgather(obj)

    def abort(self, code: int = 1) -> None:
        """End every rank of the job, :data:`ABORT_GRACE_SECONDS` after this call.

        Whoever aborts has just written why to stderr; the launcher forwards each rank's output
        through its own process (MPICH's Hydra proxy), and ``MPI_Abort`` lets it tear the job down
        at once, so lines written just before could be lost (seen on a loaded 2-core machine: a
        ``--resume`` without a checkpoint ended the job with the reason missing from its stderr).
        The pause gives the launcher time to pass them on."""
        for channel in self._nccl.values():
            channel.abort()
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_SECONDS)
        try:
            self.comm.Abort(code)
        finally:  # MPI_Abort may return before the launcher ends this process: never run on
            os._exit(code)

    def library(self) -> str:
        """The MPI library's first line, e.g. ``MPICH Version: 5.0.2``."""
        return " ".join(self.MPI.Get_library_version().splitlines()[0].split())

    def describe(self) -> str:
        return f"rank {self.rank} of {self.size} (MPI)"
