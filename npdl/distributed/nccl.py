"""NCCL for CuPy arrays: allreduce and broadcast between the GPUs of a job, one GPU per rank.

NCCL's collectives are launched on the current CUDA stream and return at once; the
arrays are ready for whatever the stream runs next (the optimizer step), so the host does
not wait. NCCL itself never times out: a rank that died leaves the others' kernels
spinning. So every operation records an event, and the *next* operation (or
:meth:`NCCLChannel.synchronize`, called by ``barrier``) first waits for it, for at most
``timeout`` seconds (``NPDL_NCCL_TIMEOUT``, default :data:`DEFAULT_TIMEOUT`); past that the
NCCL communicator is aborted and :class:`DistributedError` names the operation, so the
rank's failure handler ends the whole job instead of hanging. The host thus runs at most
one collective ahead of the GPU.

The NCCL unique id is created on rank 0 and shared over MPI, the usual bootstrap.
"""

from __future__ import annotations

import os
import time

from .errors import DistributedError

#: seconds a rank waits for one NCCL operation before it aborts the job
DEFAULT_TIMEOUT = 300.0
TIMEOUT_ENV = "NPDL_NCCL_TIMEOUT"


def timeout_seconds() -> float:
    """``NPDL_NCCL_TIMEOUT`` (seconds, > 0), else :data:`DEFAULT_TIMEOUT`."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DistributedError(f"{TIMEOUT_ENV}={text!r}: expected a number of seconds > 0")
    return value


def nccl_version() -> str | None:
    """NCCL's version as ``"2.21.5"``, or None where CuPy has no NCCL."""
    try:
        from cupy.cuda import nccl
    except ImportError:
        return None
    try:
        v = int(nccl.get_version())
    except Exception:
        return None
    major, rest = divmod(v, 10000) if v >= 10000 else divmod(v, 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


def _nccl_dtype(nccl, a):
    kinds = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64, "int64": nccl.NCCL_INT64,
             "int32": nccl.NCCL_INT32}
    name = str(a.dtype)
    if name not in kinds:
        raise DistributedError(f"NCCL: cannot reduce arrays of dtype {name}")
    return kinds[name]


class NCCLChannel:
    """An NCCL communicator over the job's ranks on one GPU (``device``) of this rank."""

    def __init__(self, mpi, device, timeout: float | None = None):
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as exc:
            raise DistributedError(f"GPU arrays in a distributed run need CuPy with NCCL ({exc}); install "
                                   '"npdl-backprop[gpu]" (its wheels bring NCCL)') from exc
        self.cupy, self.nccl, self.device = cupy, nccl, device
        self.timeout = timeout_seconds() if timeout is None else float(timeout)
        uid = mpi.share(nccl.get_unique_id() if mpi.rank == 0 else None)
        with cupy.cuda.Device(device.index):
            self.comm = nccl.NcclCommunicator(mpi.size, uid, mpi.rank)
        self.rank, self.size = mpi.rank, mpi.size
        self._pending = None  # (event, what) of the last operation launched

    def _wait(self) -> None:
        """Wait for the last operation, at most ``timeout`` seconds; abort NCCL past that."""
        if self._pending is None:
            return
        event, what = self._pending
        deadline = time.monotonic() + self.timeout
        pause = 1e-5
        while not event.done:
            if time.monotonic() > deadline:
                self.abort()
                raise DistributedError(
                    f"rank {self.rank} of {self.size}: NCCL {what} on {self.device} did not finish within "
                    f"{self.timeout:g} s ({TIMEOUT_ENV}); another rank stopped or hangs")
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
        self._pending = None

    def _launch(self, what: str, op) -> None:
        self._wait()
        with self.cupy.cuda.Device(self.device.index):
            stream = self.cupy.cuda.get_current_stream()
            op(stream.ptr)
            self._pending = (stream.record(), what)

    def allreduce_sum(self, a):
        """``a <- sum over ranks of a`` in place on the GPU; returns ``a``."""
        dtype = _nccl_dtype(self.nccl, a)
        self._launch("allreduce", lambda s: self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, dtype,
                                                                 self.nccl.NCCL_SUM, s))
        return a

    def broadcast(self, a, root: int = 0):
        """``a <- root's a`` in place on the GPU; returns ``a``."""
        dtype = _nccl_dtype(self.nccl, a)
        self._launch("broadcast", lambda s: self.comm.broadcast(a.data.ptr, a.data.ptr, a.size, dtype, root, s))
        return a

    def synchronize(self) -> None:
        self._wait()

    def abort(self) -> None:
        try:
            self.comm.abort()
        except Exception:  # already aborted or destroyed
            pass
