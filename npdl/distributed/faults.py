"""No rank waits forever: a rank that raises or dies ends the whole job, with a message naming it.

Three ways a job can lose a rank, and what ends it:

* **an exception on a rank**: :func:`fail` (used by :func:`guard` and by the ``sys.excepthook``
  that :func:`install` sets) prints ``npdl: rank R of N failed: ...`` and calls ``MPI_Abort``,
  which makes the launcher end every rank with a non-zero status;
* **a rank killed or exiting early** (``kill -9``, out of memory, ``os._exit``): the launcher
  (MPICH's Hydra) ends the others when a rank dies of a signal; and a watchdog thread on every
  rank checks every :data:`POLL_SECONDS` that the other ranks *on the same machine* are alive
  (their process ids were exchanged at start), so a rank that ended without dying of a signal
  is noticed too: ``npdl: rank K (pid P) ended before the job finished; rank R stops the job``;
* **an NCCL operation that never completes**: timed out (:mod:`npdl.distributed.nccl`), which
  raises on that rank and so aborts as above.

A job that ends normally calls :func:`finalize` (registered with ``atexit`` too): a barrier that
gives up after :data:`FINISH_TIMEOUT` seconds, after which ranks may exit in any order
without the watchdog taking it for a failure. Files are written by rank 0 alone and
atomically, so the last checkpoint stays intact whichever rank dies.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import threading
import time
import traceback

from ..errors import NpdlError

#: seconds between two checks of the other ranks' processes
POLL_SECONDS = 0.5
#: seconds :func:`finalize` waits for every rank to reach the end of the job
FINISH_TIMEOUT = 120.0

_STATE = {"comm": None, "finishing": False, "finished": False, "lost": None, "thread": None, "cleanups": []}


def on_abort(fn) -> None:
    """Call ``fn()`` before this rank aborts the job (e.g. to remove its scratch files)."""
    _STATE["cleanups"].append(fn)


def fail(comm, exc: BaseException, who: str = "npdl") -> None:
    """Print that this rank failed (a traceback for anything but an npdl error) and abort the job."""
    head = f"{who}: rank {comm.rank} of {comm.size} failed"
    if isinstance(exc, NpdlError):
        text = f"{head}: {exc}\n"
    else:
        text = f"{head}:\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stderr.write(text + f"{who}: ending every rank of the job\n")
    sys.stderr.flush()
    sys.stdout.flush()
    for cleanup in _STATE["cleanups"]:
        try:
            cleanup()
        except Exception:  # the job ends anyway
            pass
    comm.abort(1)


@contextlib.contextmanager
def guard(comm, who: str = "npdl"):
    """Run the body; any exception (or Ctrl-C) on this rank ends the whole job (:func:`fail`)."""
    try:
        yield
    except SystemExit as exc:
        if exc.code not in (None, 0) and comm.size > 1 and not _STATE["finished"]:
            fail(comm, RuntimeError(f"exited with status {exc.code}"), who)
        raise
    except BaseException as exc:  # noqa: B036 -- every way out of a rank must end the others
        if comm.size > 1:
            fail(comm, exc, who)
        raise


def _excepthook(kind, value, tb):
    comm = _STATE["comm"]
    if comm is not None and not _STATE["finished"]:
        fail(comm, value.with_traceback(tb))
    sys.__excepthook__(kind, value, tb)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(comm, peers: dict) -> None:
    """The watchdog thread: a peer process on this machine that is gone ends the job (unless it is finishing)."""
    while not _STATE["finished"]:
        for rank, pid in peers.items():
            if not _alive(pid):
                _STATE["lost"] = (rank, pid)
                if _STATE["finishing"]:
                    return  # finalize decides: a peer may exit right after the last barrier
                sys.stderr.write(f"npdl: rank {rank} (pid {pid}) ended before the job finished; rank {comm.rank} "
                                 "stops the job\n")
                sys.stderr.flush()
                comm.abort(1)
                os._exit(1)
        time.sleep(POLL_SECONDS)


def install(comm) -> None:
    """Set the failure handling for ``comm`` (a communicator of more than one rank): the excepthook,
    the watchdog of the peers on this machine, and :func:`finalize` at exit."""
    if _STATE["comm"] is not None:
        return
    _STATE["comm"] = comm
    sys.excepthook = _excepthook
    me = (socket.gethostname(), os.getpid())
    everyone = comm.gather_all(me)
    if comm.rank == 0:  # so that a launcher's message about a process id names the rank
        ranks = ", ".join(f"rank {r} pid {pid} on {host}" for r, (host, pid) in enumerate(everyone))
        sys.stderr.write(f"npdl: a data-parallel job of {comm.size} ranks ({comm.library()}): {ranks}\n")
        sys.stderr.flush()
    peers = {rank: pid for rank, (host, pid) in enumerate(everyone) if host == me[0] and rank != comm.rank}
    if peers:
        thread = threading.Thread(target=_watch, args=(comm, peers), name="npdl-rank-watchdog", daemon=True)
        thread.start()
        _STATE["thread"] = thread
    atexit.register(finalize)


def finalize(timeout: float = FINISH_TIMEOUT) -> None:
    """The end of a job: wait (at most ``timeout`` s) until every rank gets here, then stop watching.

    A rank that is lost, or a wait that times out, aborts the job: the other ranks cannot
    all have finished."""
    comm = _STATE["comm"]
    if comm is None or _STATE["finished"]:
        return
    _STATE["finishing"] = True
    comm.synchronize()
    request = comm.comm.Ibarrier()
    deadline = time.monotonic() + timeout
    lost_at = None
    while not request.Test():
        lost = _STATE["lost"]
        if lost is not None and lost_at is None:  # it may have passed the barrier already: let it complete
            lost_at = time.monotonic()
        if (lost_at is not None and time.monotonic() > lost_at + 2.0) or time.monotonic() > deadline:
            why = (f"rank {lost[0]} (pid {lost[1]}) ended before reaching the end of the job" if lost is not None
                   else f"not every rank reached the end of the job within {timeout:g} s")
            sys.stderr.write(f"npdl: rank {comm.rank} of {comm.size}: {why}; ending the job\n")
            sys.stderr.flush()
            comm.abort(1)
        time.sleep(0.01)
    _STATE["finished"] = True
