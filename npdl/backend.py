"""The one module that knows which array library is in use.

Layer, loss and optimizer code never imports numpy. It asks this module for the
array namespace of the arrays it was given (``namespace(x, W)``, in the spirit of
Chainer's ``get_array_module``) and writes its math against the array API
standard, so the same lines run on

* ``"cpu"``    -- NumPy (plus the Numba kernels in :mod:`npdl.kernels`),
* ``"strict"`` -- ``array-api-strict`` on the CPU: our stand-in for a foreign device,
  which fails loudly on mixed arrays and numpy-only calls,
* ``"gpu"`` / ``"cuda"`` / ``"cuda:N"`` -- CuPy on an NVIDIA GPU.

Besides namespaces it owns device selection, moving arrays between devices,
``to_numpy``, one seeded random generator per device, and the dtype policy:
float32 by default, float64 on request, and never a silent float32 -> float64.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field

import array_api_compat
import numpy as np

from .errors import DeviceError, DTypeError, GPUOutOfMemoryError

DEFAULT_FLOAT = "float32"
FLOAT_DTYPES = ("float32", "float64")

_CPU_NAMES = ("cpu", "numpy")
_STRICT_NAMES = ("strict", "array-api-strict", "array_api_strict")
_GPU_NAMES = ("gpu", "cuda", "cupy")
VALID_DEVICE_NAMES = ("cpu", "strict", "gpu", "cuda", "cuda:N")

GPU_INSTALL_HINT = (
    'install the GPU extra with  pip install "npdl-backprop[gpu]"  (CuPy for CUDA 12; '
    'use "npdl-backprop[gpu13]" for CUDA 13) on a machine with an NVIDIA GPU and driver'
)


# --------------------------------------------------------------------------- CuPy


def cupy_or_none():
    """CuPy if it imports and sees at least one CUDA device, else None (never raises)."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # ImportError, CUDARuntimeError, missing driver libraries ...
        pass
    return None


def _require_cupy(index: int):
    """Import CuPy and check that device ``index`` exists, with an error that says what to do."""
    try:
        import cupy
    except ImportError as exc:
        raise DeviceError(f"device 'cuda:{index}' needs CuPy, which is not installed: {GPU_INSTALL_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cupy installed but no driver / no device
        raise DeviceError(f"CuPy is installed but no CUDA device is usable ({exc}); {GPU_INSTALL_HINT}") from exc
    if count == 0:
        raise DeviceError(f"CuPy is installed but sees no CUDA device; {GPU_INSTALL_HINT}")
    if not 0 <= index < count:
        raise DeviceError(f"device 'cuda:{index}' is out of range: this machine has {count} CUDA device(s), "
                          f"cuda:0 .. cuda:{count - 1}")
    return cupy


# ---------------------------------------------------------------- matmul precision

#: CuPy's own switch: with ``CUPY_TF32=1`` its float32 matmul/dot/tensordot ask cuBLAS for TF32
#: tensor cores (inputs rounded to a 10-bit mantissa) on Ampere and newer GPUs. CuPy reads it
#: lazily, at its first float32 matrix product, and caches the answer for the process.
TF32_ENV = "CUPY_TF32"


def tf32_allowed() -> bool:
    """Whether float32 matrix products on a GPU may use TF32 tensor cores.

    Off unless asked for: :func:`allow_tf32`, ``npdl train/bench --tf32``, or ``CUPY_TF32=1``
    in the environment. Off means exact float32 products (cuBLAS's default math mode).
    """
    value = os.environ.get(TF32_ENV, "").strip()
    if not value:
        return False
    try:
        return int(value) > 0  # CuPy's own reading of the variable
    except ValueError:
        raise DeviceError(f"{TF32_ENV}={value!r} in the environment is not an integer; CuPy reads it as "
                          f"int(...) > 0: set {TF32_ENV}=0 (exact float32 matmuls, the default) or "
                          f"{TF32_ENV}=1 (TF32 tensor cores)") from None


def _cupy_linalg():
    """CuPy's matmul module if CuPy is already imported and exposes its compute-type switch, else None."""
    if "cupy" not in sys.modules:
        return None
    try:
        from cupy._core import _routines_linalg as linalg
    except ImportError:
        return None
    if not hasattr(linalg, "set_compute_type") or not hasattr(linalg, "COMPUTE_TYPE_TBD"):
        return None
    return linalg


def allow_tf32(flag: bool = True) -> None:
    """Let float32 matrix products on a GPU use TF32 tensor cores (``flag=True``) or not.

    Faster on Ampere and newer GPUs, but each input is rounded to 10 mantissa bits, so results
    differ from exact float32 around 1e-3 relative. The default is off. Works at any time:
    before CuPy is imported it sets ``CUPY_TF32``, which CuPy reads at its first float32 product;
    afterwards it also resets CuPy's cached choice so the next product reads it again. Where
    an installed CuPy has already fixed the choice and offers no way to reset it, asking for a
    different setting raises :class:`DeviceError` (set ``CUPY_TF32`` before starting Python).
    Has no effect on the CPU, on float64, or on older GPUs (CuPy warns there).
    """
    flag = bool(flag)
    try:
        before = tf32_allowed()
    except DeviceError:
        before = None  # an unreadable value: replaced below
    os.environ[TF32_ENV] = "1" if flag else "0"
    if "cupy" not in sys.modules:
        return
    linalg = _cupy_linalg()
    if linalg is not None:
        # back to "to be decided": CuPy's next float32 product reads CUPY_TF32 again
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TBD)
    elif before != flag:
        raise DeviceError(f"cannot {'enable' if flag else 'disable'} TF32 now: CuPy is already imported and this "
                          f"version offers no way to change its float32 matmul mode; set {TF32_ENV}="
                          f"{int(flag)} in the environment before starting Python")


def tf32_status() -> str:
    """One line for ``npdl info``: the float32 matmul precision on a GPU and how to change it."""
    if tf32_allowed():
        return (f"TF32 allowed ({TF32_ENV}=1): float32 matmuls on Ampere+ GPUs round inputs to 10 mantissa bits; "
                f"exact float32 with {TF32_ENV}=0")
    return ("exact float32 (default); TF32 tensor cores only on request: --tf32, "
            f"npdl.backend.allow_tf32() or {TF32_ENV}=1")


# ------------------------------------------------------------------- out of memory

#: extra exception types to treat as "the GPU is out of memory" (besides CuPy's, found by name)
OOM_ERRORS: tuple = ()

OOM_HINT = "try a smaller batch size, or free GPU memory held by other arrays or processes"


def is_out_of_memory(exc: BaseException) -> bool:
    """Is ``exc`` CuPy running out of GPU memory? Recognised without importing CuPy:
    ``cupy.cuda.memory.OutOfMemoryError`` by class name and module, cuBLAS/CUDA allocation
    failures by their status names, and any type listed in :data:`OOM_ERRORS`."""
    if isinstance(exc, GPUOutOfMemoryError) or (OOM_ERRORS and isinstance(exc, OOM_ERRORS)):
        return True
    if any(cls.__name__ == "OutOfMemoryError" and cls.__module__.startswith("cupy")
           for cls in type(exc).__mro__):
        return True
    if type(exc).__module__.startswith(("cupy", "cupy_backends")):
        text = str(exc)
        return "ALLOC_FAILED" in text or "cudaErrorMemoryAllocation" in text
    return False


def describe_allocation(shape, dtype) -> str:
    """``"shape (60000, 784) float32, 179.4 MiB"`` (``dtype``: a dtype, a type or a name)."""
    shape = tuple(int(d) for d in shape)
    size = 1
    for d in shape:
        size *= d
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return f"shape {shape} {str(dtype).rsplit('.', 1)[-1]}"
    return f"shape {shape} {dt.name}, {size * dt.itemsize / 2 ** 20:.1f} MiB"


def out_of_memory(exc: BaseException, what: str, hint: str = OOM_HINT, detail: str | None = None
                  ) -> GPUOutOfMemoryError:
    """The :class:`GPUOutOfMemoryError` to raise (``from exc``) for an out-of-memory ``exc`` while
    doing ``what``. CuPy's own text (bytes asked for, allocated so far) is kept as ``detail``;
    re-raising an npdl one with more context keeps its detail."""
    detail = detail or getattr(exc, "detail", None) or f"CuPy: {exc}"
    err = GPUOutOfMemoryError(f"out of GPU memory {what}: {hint} ({detail})")
    err.detail = detail
    return err


# ------------------------------------------------------------------------- Device


@dataclass(frozen=True)
class Device:
    """Where arrays live and which library computes on them.

    ``kind`` is ``"numpy"``, ``"strict"`` or ``"cupy"``; ``name`` is what a user
    types (``"cpu"``, ``"strict"``, ``"cuda:0"``).
    """

    kind: str
    index: int = 0
    name: str = field(init=False)

    def __post_init__(self):
        name = {"numpy": "cpu", "strict": "strict"}.get(self.kind, f"cuda:{self.index}")
        object.__setattr__(self, "name", name)

    def __str__(self):
        return self.name

    @property
    def xp(self):
        """The array namespace that computes on this device."""
        if self.kind == "numpy":
            return np
        if self.kind == "strict":
            import array_api_strict

            return array_api_strict
        import array_api_compat.cupy as cupy_compat

        return cupy_compat

    @property
    def is_gpu(self) -> bool:
        return self.kind == "cupy"

    def current(self):
        """A context in which this device is CuPy's current one (for launches that go to the current
        device); a no-op off the GPU."""
        if self.kind != "cupy":
            return contextlib.nullcontext()
        import cupy  # an array lives on this device: CuPy and the device are there

        return cupy.cuda.Device(self.index)

    def asarray(self, x, dtype=None):
        """``x`` (a list, a NumPy array or an array of any device) as an array on this device."""
        if dtype is not None:
            dtype = float_dtype(self.xp, dtype) if isinstance(dtype, str) else dtype
        if self.kind == "numpy":
            return np.asarray(to_numpy(x) if not isinstance(x, np.ndarray) else x, dtype=dtype)
        if self.kind == "strict":
            import array_api_strict

            if not _is_strict(x):
                x = np.asarray(to_numpy(x))
            return array_api_strict.asarray(x, dtype=dtype)
        cupy = _require_cupy(self.index)
        with cupy.cuda.Device(self.index):
            if not array_api_compat.is_cupy_array(x):
                x = np.asarray(to_numpy(x))
            try:
                return cupy.asarray(x, dtype=dtype)
            except Exception as exc:
                if is_out_of_memory(exc):
                    what = describe_allocation(x.shape, dtype if dtype is not None else x.dtype)
                    raise out_of_memory(exc, f"on {self.name} while allocating an array of {what}",
                                        detail=f"allocating {what}; CuPy: {exc}") from exc
                raise

    def zeros(self, shape, dtype=DEFAULT_FLOAT):
        return self.xp.zeros(shape, dtype=float_dtype(self.xp, dtype) if isinstance(dtype, str) else dtype)

    def generator(self, seed=None) -> "Generator":
        return Generator(self, seed)

    def synchronize(self):
        """Wait for the device to finish queued work (a no-op on the CPU)."""
        if self.kind == "cupy":
            import cupy

            cupy.cuda.Device(self.index).synchronize()


def get_device(spec="cpu") -> Device:
    """Turn ``"cpu"``, ``"strict"``, ``"gpu"``, ``"cuda"``, ``"cuda:N"`` (or a Device) into a Device.

    Asking for a GPU checks at once that CuPy imports and the device exists, so the
    error comes at selection time, not deep inside the first matrix product.
    """
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return Device("numpy")
    name = str(spec).strip().lower()
    if name in _CPU_NAMES:
        return Device("numpy")
    if name in _STRICT_NAMES:
        try:
            import array_api_strict  # noqa: F401
        except ImportError as exc:
            raise DeviceError("device 'strict' needs array-api-strict: pip install array-api-strict") from exc
        return Device("strict")
    index = None
    if name in _GPU_NAMES:
        index = 0
    elif name.startswith(("cuda:", "gpu:")) and name.split(":", 1)[1].isdigit():
        index = int(name.split(":", 1)[1])
    if index is None:
        raise DeviceError(f"unknown device {spec!r}; valid devices are: " + ", ".join(VALID_DEVICE_NAMES))
    _require_cupy(index)
    tf32_allowed()  # an unreadable CUPY_TF32 fails here, not inside CuPy's first matrix product
    return Device("cupy", index)


def available_devices() -> list[str]:
    """The device names this process can use right now."""
    names = ["cpu"]
    try:
        import array_api_strict  # noqa: F401

        names.append("strict")
    except ImportError:
        pass
    cupy = cupy_or_none()
    if cupy is not None:
        names += [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]
    return names


# ---------------------------------------------------------------- arrays and namespaces


_CPU = Device("numpy")  # Devices are frozen values: one shared instance for the common case


def _is_strict(x) -> bool:
    """Is ``x`` an array-api-strict array? (Checked by module, so the library need not be imported.)"""
    return type(x).__module__.startswith("array_api_strict")


def namespace(*arrays):
    """The array namespace shared by ``arrays`` (``None`` entries and Python scalars are skipped).

    NumPy arrays get NumPy itself (NumPy 2 follows the standard closely, and its own
    functions avoid the compat wrapper's per-call overhead in the hot loop); other
    libraries get their standard-conforming namespace. Arrays from two libraries,
    or from two GPUs, raise :class:`DeviceError` instead of computing garbage.
    """
    # fast path first: this runs several times per layer per step, and NumPy is the common case
    ndarray = np.ndarray
    if all(type(a) is ndarray for a in arrays) and arrays:
        return np
    arrays = [a for a in arrays if a is not None and not isinstance(a, (int, float, bool))]
    if arrays and all(type(a) is ndarray for a in arrays):
        return np
    try:
        xp = array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        not_arrays = [a for a in arrays if not array_api_compat.is_array_api_obj(a)]
        if not_arrays:
            raise DTypeError(f"expected arrays, got {type(not_arrays[0]).__name__}") from exc
        kinds = sorted({f"{type(a).__module__}.{type(a).__name__}" for a in arrays})
        raise DeviceError(f"arrays from different libraries or devices were mixed ({', '.join(kinds)}); "
                          "move them to one device first with npdl.backend.to_device(x, device)") from exc
    if array_api_compat.is_numpy_namespace(xp):
        return np
    if array_api_compat.is_cupy_namespace(xp):
        devices = {a.device.id for a in arrays if hasattr(a, "device") and hasattr(a.device, "id")}
        if len(devices) > 1:
            raise DeviceError(f"arrays on different GPUs were mixed (cuda:{sorted(devices)}); "
                              "move them to one device first with npdl.backend.to_device(x, device)")
    return xp


def device_of(x) -> Device:
    """The :class:`Device` an array lives on."""
    if type(x) is np.ndarray:  # the common case first: checks call this several times per step
        return _CPU
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return _CPU
    if _is_strict(x):
        return Device("strict")
    if array_api_compat.is_cupy_array(x):
        return Device("cupy", int(x.device.id))
    raise DeviceError(f"not an array npdl can use: {type(x).__module__}.{type(x).__name__}")


def row_major(x):
    """``x`` with C-contiguous (row-major) storage: ``x`` itself when it has it, else a copy.

    Array-API code has no notion of memory layout, but NumPy's and CuPy's elementwise
    loops slow down when one operand is row-major and another column-major (a transposed
    matrix product's result): a (20, 784) reconstruction cross-entropy took 0.061 ms on a
    column-major input against 0.035 ms row-major, and the copy 0.006 ms. The GPU kernels
    (``npdl.kernels.cuda``) take their inputs through it too: they index any strides, but
    every distinct layout is one more compilation. Libraries without the notion
    (array-api-strict: no ``flags``) get ``x`` back.
    """
    flags = getattr(x, "flags", None)
    # NumPy's and CuPy's copy() is row-major by default
    return x if flags is None or flags.c_contiguous else x.copy()


def to_numpy(x) -> np.ndarray:
    """A NumPy copy (or view, on the CPU) of any array npdl handles."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if hasattr(x, "__dlpack__") and not isinstance(x, (list, tuple)):
        try:
            return np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError):
            pass
    return np.asarray(x)


def to_device(x, device):
    """``x`` moved (copied if needed) to ``device`` (a name or a :class:`Device`)."""
    return get_device(device).asarray(x)


def to_float(x) -> float:
    """A 0-d array (or scalar) as a Python float. On a GPU this waits for the device."""
    return float(to_numpy(x))


def same_device(a, b) -> bool:
    return device_of(a) == device_of(b)


# --------------------------------------------------------------------------- dtypes


def resolve_float(name) -> str:
    """Check a float dtype name (``None`` means the default, float32)."""
    name = DEFAULT_FLOAT if name is None else str(name).replace("numpy.", "").replace("array_api_strict.", "")
    if name not in FLOAT_DTYPES:
        raise DTypeError(f"unsupported float dtype {name!r}; use one of {', '.join(FLOAT_DTYPES)}")
    return name


def float_dtype(xp, name=None):
    """The dtype object of namespace ``xp`` for ``"float32"`` / ``"float64"``."""
    return getattr(xp, resolve_float(name))


_DTYPE_NAMES: dict = {}


def dtype_name(x) -> str:
    """``"float32"``, ``"int64"``, ... for an array of any library."""
    dtype = x.dtype
    if type(x) is not np.ndarray:
        return str(dtype).rsplit(".", 1)[-1]
    name = _DTYPE_NAMES.get(dtype)  # str(dtype) costs microseconds, and checks call this every step
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


def is_floating(x) -> bool:
    return dtype_name(x) in ("float16", "float32", "float64")


def is_integer(x) -> bool:
    return dtype_name(x) in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


# ----------------------------------------------------------------------- host memory


def retain_freed_memory(mmap_threshold: int = 16 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Let glibc's malloc keep freed NumPy temporaries in the process heap (Linux/glibc only).

    NumPy allocates every temporary with ``malloc``. By default glibc serves blocks over
    ~128 KiB with ``mmap`` and returns a freed heap top to the OS above a trim threshold, so a
    training step whose temporaries are a few hundred KiB (the recurrent steps' (T, N, H)
    buffers) maps, page-faults and unmaps them on every step. ``mallopt`` with a fixed mmap
    threshold (``mmap_threshold`` bytes) and trim threshold (``trim_threshold`` bytes) keeps
    that memory for the next step instead: measured on one core, the ``rnn_b50`` step 0.80 ->
    0.59 ms and ``lstm_b50`` 0.79 -> 0.58 ms, ``mlp_b20``/``da_b20`` unchanged. The cost: up to
    ``trim_threshold`` bytes of freed memory stay with the process. The ``npdl`` command calls
    this at start (``NPDL_MALLOC=default`` skips it). Returns False where it cannot be applied.
    """
    import ctypes
    import os

    if os.environ.get("NPDL_MALLOC", "").strip().lower() == "default":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                 int(trim_threshold)))


# ------------------------------------------------------------------------ randomness


class Generator:
    """A seeded random generator that draws directly on one device.

    CPU and ``strict`` draw with NumPy's PCG64 (``strict`` then wraps the result), so
    a seed gives the same numbers on both; its state can be saved and restored
    exactly (:meth:`get_state` / :meth:`set_state`), which checkpoints rely on for a
    bit-identical resume. On a GPU it draws with CuPy's generator, on the device.
    """

    def __init__(self, device="cpu", seed=None):
        self.device = get_device(device)
        self.seed = seed
        if self.device.kind == "cupy":
            import cupy

            with cupy.cuda.Device(self.device.index):
                self._rng = cupy.random.RandomState(seed)
            self._draws = 0
        else:
            self._rng = np.random.Generator(np.random.PCG64(seed))

    def _wrap(self, a):
        # NumPy returns a scalar for shape (); npdl always works with (0-d) arrays
        return np.asarray(a) if self.device.kind == "numpy" else a if self.device.kind == "cupy" \
            else self.device.asarray(a)

    def _dtype(self, dtype):
        lib = np if self.device.kind != "cupy" else __import__("cupy")
        return getattr(lib, resolve_float(dtype))

    def normal(self, shape, std=1.0, mean=0.0, dtype=DEFAULT_FLOAT):
        """Samples of N(mean, std^2)."""
        z = self._rng.standard_normal(size=tuple(shape), dtype=self._dtype(dtype))
        z = self._wrap(z)
        if std != 1.0:
            z *= std
        if mean != 0.0:
            z += mean
        return z

    def uniform(self, shape, low=0.0, high=1.0, dtype=DEFAULT_FLOAT):
        """Samples of U[low, high)."""
        if self.device.kind == "cupy":
            u = self._rng.random_sample(size=tuple(shape), dtype=self._dtype(dtype))
        else:
            u = self._rng.random(size=tuple(shape), dtype=self._dtype(dtype))
        u = self._wrap(u)
        if (low, high) != (0.0, 1.0):
            u *= high - low
            u += low
        return u

    def bernoulli(self, shape, p, dtype=DEFAULT_FLOAT):
        """A float mask that is 1 with probability ``p`` and 0 otherwise."""
        u = self.uniform(shape, dtype=dtype)
        xp = self.device.xp
        return xp.astype(u < p, u.dtype) if self.device.kind == "strict" else (u < p).astype(u.dtype)

    def integers(self, low, high, shape):
        """int64 samples uniform on [low, high)."""
        if self.device.kind == "cupy":
            return self._rng.randint(low, high, size=tuple(shape), dtype="int64")
        return self._wrap(self._rng.integers(low, high, size=tuple(shape), dtype=np.int64))

    def permutation(self, n: int):
        """A random permutation of 0..n-1 (int64, on the device)."""
        return self._wrap(self._rng.permutation(n).astype(np.int64)) if self.device.kind != "cupy" \
            else self._rng.permutation(n).astype("int64")

    def get_state(self) -> dict:
        """A JSON-serialisable snapshot of the generator state."""
        if self.device.kind == "cupy":
            # CuPy's generator state cannot be read back; record the seed so a resumed
            # GPU run is reproducible in distribution, not bit for bit (documented).
            return {"device": "cupy", "seed": self.seed}
        return {"device": "cpu", "seed": self.seed, "bit_generator": _jsonable(self._rng.bit_generator.state)}

    def set_state(self, state: dict) -> None:
        if state.get("device") == "cupy" or self.device.kind == "cupy":
            self.__init__(self.device, state.get("seed"))
            return
        self._rng.bit_generator.state = state["bit_generator"]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


_DEFAULT_SEED = None


def manual_seed(seed: int | None) -> None:
    """Seed the generators that layers create when they are given no ``rng``."""
    global _DEFAULT_SEED
    _DEFAULT_SEED = seed


def default_generator(device="cpu") -> Generator:
    """A fresh generator on ``device`` seeded from :func:`manual_seed` (or the OS when unset).

    Each call advances the global seed, so layers built one after another get
    different but reproducible weights.
    """
    global _DEFAULT_SEED
    seed = _DEFAULT_SEED
    if seed is not None:
        _DEFAULT_SEED = seed + 1
    return Generator(device, seed)
