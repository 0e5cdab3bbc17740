"""The job's world: started from the launcher's environment, one communicator per process.

``mpiexec -n N python ...`` (MPICH's Hydra, Intel MPI, MVAPICH, Open MPI) tells each process
the job's size in its environment (:data:`SIZE_VARIABLES`). :func:`init` reads it: for a job of
more than one process it initialises MPI (mpi4py) and returns an
:class:`~npdl.distributed.comm.MPICommunicator`; otherwise a
:class:`~npdl.distributed.comm.SingleProcess`, so a single process runs without MPI installed.
It also installs the failure handling of :mod:`npdl.distributed.faults`, so that no rank is
left waiting for one that failed.
"""

from __future__ import annotations

import os
import shutil
import sys

from .. import backend
from .comm import Communicator, MPICommunicator, SingleProcess
from .errors import DistributedError

#: environment variables in which launchers give the number of processes of the job
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
MPI_HINT = 'pip install "npdl-backprop[mpi]" (mpi4py, and MPICH with its mpiexec)'

_WORLD: Communicator | None = None


def launched_size(environ=None) -> int:
    """The number of processes the launcher started (1 when no launcher variable is set)."""
    environ = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        text = environ.get(name)
        if text:
            try:
                return max(1, int(text))
            except ValueError:
                raise DistributedError(f"{name}={text!r} in the environment is not a number of processes") from None
    return 1


def init(comm=None) -> Communicator:
    """The job's communicator, created on the first call (later calls return the same one).

    ``comm`` (a Communicator) replaces the launcher's world, e.g. :class:`SingleProcess` to run
    the distributed code path in one process. Without it: one process without a launcher (or
    ``mpiexec -n 1``) is a :class:`SingleProcess`; more need mpi4py, and a clear error says how
    to install it.
    """
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    if comm is None:
        size = launched_size()
        if size <= 1:
            comm = SingleProcess()
        else:
            try:
                import mpi4py  # noqa: F401
            except ImportError as exc:
                raise DistributedError(f"this process is one of {size} started by an MPI launcher, but mpi4py "
                                       f"cannot be imported ({exc}): {MPI_HINT}") from exc
            comm = MPICommunicator()
            if comm.size != size:
                raise DistributedError(f"the launcher started {size} processes but MPI sees {comm.size}: "
                                       "mpi4py is built against another MPI than the mpiexec used; use the "
                                       f"mpiexec of the MPI mpi4py was built with ({MPI_HINT})")
    _WORLD = comm
    if comm.size > 1:
        from . import faults

        faults.install(comm)
    return comm


def world() -> Communicator:
    """The communicator of :func:`init`, or a :class:`SingleProcess` when it was never called."""
    return _WORLD if _WORLD is not None else SingleProcess()


def is_writer() -> bool:
    """Whether this process writes files and prints progress: rank 0 of the job (or the only process)."""
    return _WORLD is None or _WORLD.rank == 0


def reset() -> None:
    """Forget the world (tests that run several single-process worlds one after another)."""
    global _WORLD
    _WORLD = None


def local_rank(comm: Communicator) -> int:
    """This rank's index among the ranks on the same machine (0 for a single process)."""
    if not isinstance(comm, MPICommunicator):
        return 0
    node = comm.comm.Split_type(comm.MPI.COMM_TYPE_SHARED, key=comm.rank)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def local_device(name, comm: Communicator):
    """The device this rank trains on: ``name`` itself for ``cpu``; for ``gpu``/``cuda`` the machine's GPU
    number ``local_rank % GPU count`` (one GPU per rank; ``cuda:N`` is taken as it is)."""
    device = backend.get_device(name)
    if device.kind != "cupy" or str(name).strip().lower() not in ("gpu", "cuda", "cupy"):
        return device
    count = int(backend.cupy_or_none().cuda.runtime.getDeviceCount())
    return backend.get_device(f"cuda:{local_rank(comm) % count}")


def mpi_info() -> dict:
    """What data-parallel training can use here, without starting MPI (for ``npdl info``): mpi4py's
    version, its MPI library, the ``mpiexec`` on the PATH, and NCCL's version where CuPy has it."""
    from .nccl import nccl_version

    info = {"mpi4py": None, "library": None, "mpiexec": shutil.which("mpiexec"), "nccl": nccl_version()}
    try:
        import mpi4py
    except ImportError:
        info["reason"] = f"mpi4py is not installed: {MPI_HINT}"
        return info
    info["mpi4py"] = mpi4py.__version__
    if "mpi4py.MPI" not in sys.modules:
        # the library's name needs no MPI_Init; MPICommunicator starts MPI when needed, finalized at exit
        mpi4py.rc.initialize, mpi4py.rc.finalize = False, True
    try:
        from mpi4py import MPI

        info["library"] = " ".join(MPI.Get_library_version().splitlines()[0].split())
    except Exception as exc:  # an mpi4py without a usable MPI library
        info["reason"] = f"mpi4py cannot load its MPI library ({exc})"
    return info
