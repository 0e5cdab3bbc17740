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

from dataclasses import dataclass, field

import array_api_compat
import numpy as np

from .errors import DeviceError, DTypeError

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
            return cupy.asarray(x, dtype=dtype)

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
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return Device("numpy")
    if _is_strict(x):
        return Device("strict")
    if array_api_compat.is_cupy_array(x):
        return Device("cupy", int(x.device.id))
    raise DeviceError(f"not an array npdl can use: {type(x).__module__}.{type(x).__name__}")


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
