"""A recipe run (``npdl train MODEL --distributed``) on every rank: the same code, one writer.

Every rank runs the whole recipe -- loading data, building models, training, scoring --
so every collective happens on every rank in the same order, whatever the recipe does
(pretraining phases, pictures, reports). Only rank 0 writes the run folder the user named
and prints; every other rank gets a private scratch copy of it (:func:`private_copy`:
the files a resume reads, copied from the user's folder), writes its own checkpoints
there unseen, and deletes it when the process ends. So the folder holds exactly one run,
and a resume reads the same checkpoint on every rank.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from .errors import DistributedError
from .faults import on_abort
from .launch import init


def private_copy(out: str, resume: bool, rank: int) -> str:
    """A scratch run folder for rank ``rank``, named like ``out`` inside a new temporary folder that is
    removed when this process ends. When resuming it holds a copy of the files directly in ``out``
    (the checkpoints a resume reads); otherwise it does not exist yet, as a new run's folder."""
    root = tempfile.mkdtemp(prefix=f"npdl-rank{rank}-")
    atexit.register(shutil.rmtree, root, True)
    on_abort(lambda: shutil.rmtree(root, True))
    scratch = os.path.join(root, os.path.basename(os.path.normpath(out)) or "run")
    if resume and os.path.isdir(out):
        os.makedirs(scratch)
        for name in os.listdir(out):
            path = os.path.join(out, name)
            if os.path.isfile(path) and not name.endswith((".lock", ".tmp")):
                shutil.copy2(path, os.path.join(scratch, name))
    return scratch


def prepare_run(options: dict, out, resume: bool, verbose: int, report: bool, looking_inside: bool):
    """What :func:`npdl.recipes.train` runs with on this rank: ``(out, verbose, report)``.

    Marks ``options`` distributed (``options["distributed"] = True`` makes recipes attach their
    models, :func:`npdl.distributed.attach_if`) and records the number of ranks. Rank 0 keeps
    everything; other ranks are silent and write into :func:`private_copy`.
    """
    comm = init()
    if looking_inside:
        raise DistributedError("--diagnostics and --tensorboard record one process's steps; leave them out with "
                               "--distributed (the gradients and losses are those of one process with the "
                               "global batch)")
    options["distributed"] = True
    options["ranks"] = comm.size
    if comm.rank == 0:
        return out, verbose, report
    if not out:
        return None, 0, False
    return private_copy(out, resume, comm.rank), 0, False


def run_as_rank(args, run, who: str) -> int:
    """``run(args)`` as one rank of the launcher's job: on this rank's device (``--device gpu``: one GPU
    per rank), any failure ending every rank (:func:`npdl.distributed.guard`), and a clean finish."""
    from .faults import finalize, guard
    from .launch import local_device

    comm = init()
    with guard(comm, who):
        args.device = local_device(args.device, comm).name
        code = run(args)
        finalize()
    return code
