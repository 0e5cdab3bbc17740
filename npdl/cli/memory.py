"""Host memory settings for the ``npdl`` command's long-running work (``train``, ``bench``).

They change the whole process (glibc's malloc), so the library never applies them on
import: the subcommands that train or time steps call :func:`retain_freed_memory` as
they start. A program that uses npdl as a library may call it too.
"""

from __future__ import annotations

import ctypes
import os

#: set to ``default`` to keep glibc's own malloc thresholds
MALLOC_ENV = "NPDL_MALLOC"


def retain_freed_memory(mmap_threshold: int = 16 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Let glibc's malloc keep freed NumPy temporaries in the process heap (Linux/glibc only).

    NumPy allocates every temporary with ``malloc``. By default glibc serves blocks over
    ~128 KiB with ``mmap`` and returns a freed heap top to the OS above a trim threshold, so a
    training step whose temporaries are a few hundred KiB (the recurrent steps' (T, N, H)
    buffers) maps, page-faults and unmaps them on every step. ``mallopt`` with a fixed mmap
    threshold (``mmap_threshold`` bytes) and trim threshold (``trim_threshold`` bytes) keeps
    that memory for the next step instead: measured on one core, the ``rnn_b50`` step 0.80 ->
    0.59 ms and ``lstm_b50`` 0.79 -> 0.58 ms, ``mlp_b20``/``da_b20`` unchanged. The cost: up to
    ``trim_threshold`` bytes of freed memory stay with the process. ``npdl train`` and
    ``npdl bench`` call this as they start (``NPDL_MALLOC=default`` skips it). Returns False
    where it cannot be applied.
    """
    if os.environ.get(MALLOC_ENV, "").strip().lower() == "default":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                 int(trim_threshold)))
