"""Data-parallel training across processes: MPI between CPUs, NCCL between GPUs.

Run one process per CPU (or GPU) with an MPI launcher; each holds the whole model and trains
on its shard of every global batch, and the gradients are averaged before every step::

    mpiexec -n 4 npdl train keras-mlp --distributed          # the batch size stays the global one

or in a script (the same script runs alone, without MPI, as a job of one)::

    import npdl, npdl.distributed as dist
    comm = dist.init()                       # from the launcher's environment
    model = build(...)                       # every rank builds it; rank 0's parameters win
    dist.attach(model)                       # model.fit / model.evaluate now run sharded
    model.fit(x, y, batch_size=128, epochs=5, rng=npdl.Generator("cpu", 1))
    if dist.is_writer():                     # rank 0 writes files and prints
        model.save_checkpoint("model.npz")

Modules, each importing only those above it:

* :mod:`.errors`        -- :class:`DistributedError`;
* :mod:`.comm`          -- communicators: ``rank``, ``size``, ``allreduce_sum/mean``, ``broadcast``,
  ``barrier``; MPI for NumPy arrays, a single process without MPI;
* :mod:`.nccl`          -- NCCL for CuPy arrays, with a timeout on every wait;
* :mod:`.launch`        -- :func:`init` from the launcher's environment, :func:`world`, :func:`is_writer`;
* :mod:`.faults`        -- a rank that raises or dies ends the job with a message naming it;
* :mod:`.keyed`         -- random draws keyed by the example's place in the global batch;
* :mod:`.buckets`       -- gradients packed into few, large allreduce messages;
* :mod:`.data_parallel` -- the synchronous step, parameter broadcast, sharding (:class:`DataParallel`);
* :mod:`.loops`         -- ``fit`` and evaluation, sharded and reduced, decisions agreed.
"""

from .buckets import BUCKET_BYTES, Buckets
from .comm import Communicator, MPICommunicator, SingleProcess
from .errors import DistributedError
from .data_parallel import DataParallel, attach, attach_if, detach, shard_bounds
from .faults import finalize, guard
from .keyed import KeyedGenerator
from .launch import (MPI_HINT, SIZE_VARIABLES, init, is_writer, launched_size, local_device, mpi_info,  # noqa: F401
                     world)

__all__ = [
    "BUCKET_BYTES", "Buckets", "Communicator", "DataParallel", "DistributedError", "KeyedGenerator", "MPI_HINT",
    "MPICommunicator", "SIZE_VARIABLES", "SingleProcess", "attach", "attach_if", "detach", "finalize", "guard",
    "init", "is_writer", "launched_size", "local_device", "mpi_info", "shard_bounds", "world",
]
