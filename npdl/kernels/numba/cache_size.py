"""The CPU's last-level cache, read from Linux's sysfs: a size that decides where a product runs.

A kernel that streams a matrix once per call is bounded by the bandwidth of wherever the matrix
lives. When a training step's weight matrices fit in the last-level cache together, one core
streams them quickly and a second thread mostly adds the cost of waking it; when they do not,
they come from memory, and a second core's share of the memory bandwidth pays
(:data:`npdl.kernels.numba.ONE_THREAD_MAX`).
"""

from __future__ import annotations

import os

#: where Linux describes CPU 0's caches, one ``index*`` folder per cache
SYSFS = "/sys/devices/system/cpu/cpu0/cache"

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _size(text: str) -> int | None:
    """``"8192K"`` -> 8388608; None for anything else."""
    text = text.strip().upper()
    scale = _UNITS.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in _UNITS else text
    return int(digits) * scale if digits.isdigit() else None


def last_level_bytes(root: str = SYSFS) -> int | None:
    """Bytes of the highest-level data or unified cache of CPU 0, or None where sysfs does not say
    (another OS, a container without ``/sys``, a file that does not parse)."""
    best = None  # (level, bytes)
    try:
        entries = os.listdir(root)
    except OSError:
        return None
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            with open(os.path.join(root, entry, "level")) as f:
                level = int(f.read().strip())
            with open(os.path.join(root, entry, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(root, entry, "size")) as f:
                size = _size(f.read())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and size and (best is None or level > best[0]):
            best = (level, size)
    return None if best is None else best[1]
