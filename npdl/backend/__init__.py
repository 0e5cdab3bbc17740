"""The one package that knows which array library is in use.

Layer, loss and optimizer code never imports numpy. It asks this package for the
array namespace of the arrays it was given (``namespace(x, W)``, in the spirit of
Chainer's ``get_array_module``) and writes its math against the array API
standard, so the same lines run on

* ``"cpu"``    -- NumPy (plus the Numba kernels in :mod:`npdl.kernels`),
* ``"strict"`` -- ``array-api-strict`` on the CPU: our stand-in for a foreign device,
  which fails loudly on mixed arrays and numpy-only calls,
* ``"gpu"`` / ``"cuda"`` / ``"cuda:N"`` -- CuPy on an NVIDIA GPU.

One concern per module, each importing only those above it in this list:

* :mod:`.cupy_probe` -- is CuPy importable, does a CUDA device exist;
* :mod:`.tf32`       -- float32 matmul precision on a GPU (exact or TF32);
* :mod:`.oom`        -- recognising GPU out-of-memory errors, messages that say what to try;
* :mod:`.dtypes`     -- the dtype policy: float32 by default, float64 on request, never a
  silent float32 -> float64;
* :mod:`.host`       -- any array as NumPy (``to_numpy``, ``to_float``), memory layout;
* :mod:`.devices`    -- ``Device``, ``get_device``, ``available_devices``;
* :mod:`.namespaces` -- ``namespace``, ``device_of``, ``to_device``, ``same_device``;
* :mod:`.generators` -- one seeded random ``Generator`` per device, ``manual_seed``.

This ``__init__`` only re-exports, so ``from npdl import backend; backend.namespace(x)``
works everywhere. Settings that modules read at call time (``OOM_ERRORS``) are changed on
their module (``npdl.backend.oom.OOM_ERRORS``), not here.
"""

from .cupy_probe import GPU_INSTALL_HINT, cupy_or_none
from .devices import VALID_DEVICE_NAMES, Device, available_devices, get_device
from .dtypes import DEFAULT_FLOAT, FLOAT_DTYPES, dtype_name, float_dtype, is_floating, is_integer, resolve_float
from .generators import Generator, default_generator, manual_seed
from .host import row_major, to_float, to_numpy
from .namespaces import device_of, namespace, same_device, to_device
from .oom import OOM_ERRORS, OOM_HINT, describe_allocation, is_out_of_memory, out_of_memory
from .tf32 import TF32_ENV, allow_tf32, tf32_allowed, tf32_status

__all__ = [
    "DEFAULT_FLOAT", "FLOAT_DTYPES", "GPU_INSTALL_HINT", "OOM_ERRORS", "OOM_HINT", "TF32_ENV", "VALID_DEVICE_NAMES",
    "Device", "Generator", "allow_tf32", "available_devices", "cupy_or_none", "default_generator",
    "describe_allocation", "device_of", "dtype_name", "float_dtype", "get_device", "is_floating", "is_integer",
    "is_out_of_memory", "manual_seed", "namespace", "out_of_memory", "resolve_float", "row_major", "same_device",
    "tf32_allowed", "tf32_status", "to_device", "to_float", "to_numpy",
]
