"""Accelerations of named operations, and the one dispatch that chooses them.

The math of every layer, loss and optimizer is the array-API code in its own file
(:mod:`npdl.layers`, :mod:`npdl.losses`, :mod:`npdl.optim`). Some of those functions
are marked as a named operation::

    @kernels.accelerated("softmax_xent.forward")
    def softmax_cross_entropy_forward(logits, labels):
        ...the readable code, which is the definition...

A **kernel** is a faster version of such an operation for one kind of array: a
function with the same signature and the same result, in a module
``npdl.kernels.<implementation>.<module>`` (here ``npdl/kernels/numba/softmax_xent.py``,
function ``forward``). The tests prove each kernel equal to the definition it
accelerates. A kernel may decline a call it cannot do well (an odd layout, a dtype
it was not compiled for) by returning ``NotImplemented``; the definition then runs.

The implementations:

* **numba** -- NumPy arrays on the CPU (Numba loops, direct BLAS calls);
* **cuda** -- CuPy arrays, ``numba.cuda`` kernels (tested in CI under Numba's CUDA
  simulator), used when ``numba.cuda`` can compile for this machine's GPU;
* **cupy** -- CuPy arrays, CuPy's own kernels and library calls (cuBLAS, ElementwiseKernels).
  Where an operation has both, CuPy's serves: a CuPy launch costs ~14 us of host time, a
  ``numba.cuda`` one 70-180 us, and a small step is bound by host time (on an H200,
  ``npdl bench --device gpu``: sda_b1 1.67 ms with CuPy's first, 4.67 ms with numba.cuda's
  first, mlp_b20 1.31 against 2.81 ms, lenet_b500 4.88 against 7.53 ms).
  ``NPDL_KERNELS=cuda`` (``use("cuda")``) puts the ``numba.cuda`` ones first, to compare;
* anything else (``array-api-strict``, a device without kernels) runs the definition.

``NPDL_KERNELS=off`` (or ``use("off")``) switches every kernel off: every operation then
runs exactly the code in the layer, loss and optimizer files (``reference`` is accepted as
another name for ``off``). That is the way to train with the code you read, to compare
speeds, or to rule a kernel out when debugging.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import inspect
import os

import array_api_compat
import numpy as np

from .. import backend  # the backend imports nothing from here

#: the modules of operations that have kernels; each implementation package has some of them
OPS = ("softmax_xent", "im2col", "conv2d", "pool", "gemm_update", "lstm_cell", "simple_rnn",
       "activation_backward", "bias_activation", "optimizer_update", "bce_logits", "dense_products")

#: what :func:`implementation` answers where no kernel serves: the layer file's code runs
DEFINITION = "definition"

_MODES = (None, "auto", "off", "reference", "cupy", "cuda")
_OFF = ("off", "reference")


def _mode_from_env() -> str | None:
    mode = os.environ.get("NPDL_KERNELS", "").strip().lower() or None
    if mode not in _MODES:
        raise ValueError(f"NPDL_KERNELS must be 'off', 'cuda' or 'auto', got {mode!r}")
    return _normal(mode)


def _normal(mode: str | None) -> str | None:
    """None (automatic), "off" or "cuda": "reference" is another name for "off", and "cupy" for the
    automatic choice (which has put CuPy's kernels first since they were measured faster)."""
    return None if mode in (None, "auto", "cupy") else ("off" if mode in _OFF else mode)


_forced = _mode_from_env()
_cache: dict = {}  # (module, namespace) -> kernel module or None
_calls: dict = {}  # (operation, array type) -> kernel function or None
_call_caches: list = []  # each accelerated operation's own array type -> kernel cache
_UNKNOWN = object()  # not looked up yet

#: operation name -> its definition (the undecorated function in the layer, loss or optimizer file)
DEFINITIONS: dict = {}


def use(mode: str | None) -> None:
    """``"off"`` runs every operation's definition (the layer files' code), ``"cuda"`` puts the
    numba.cuda GPU kernels before CuPy's, ``None``/``"auto"`` the automatic choice."""
    global _forced
    if mode not in _MODES:
        raise ValueError(f"kernel mode must be 'off', 'cuda' or None, got {mode!r}")
    _forced = _normal(mode)
    _cache.clear()
    _calls.clear()
    for cache in _call_caches:
        cache.clear()


def mode() -> str:
    """``"off"``, ``"cuda"`` or ``"auto"``."""
    return _forced or "auto"


def enabled() -> bool:
    """False when every kernel is switched off (``NPDL_KERNELS=off``, ``use("off")``)."""
    return _forced != "off"


def prefers_numba_cuda() -> bool:
    """Whether the numba.cuda kernels come before CuPy's own (``NPDL_KERNELS=cuda``, ``use("cuda")``)."""
    return _forced == "cuda"


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


#: why numba.cuda cannot serve the kernels here, once :func:`cuda_available` has said False ("" before, or when it can)
cuda_unusable_reason = ""


def _probe_kernel(out):  # the smallest kernel that indexes an array: compiled once to see that compiling works
    out[0] = 1.0


@functools.lru_cache(maxsize=None)
def cuda_available() -> bool:
    """True when ``numba.cuda`` imports, sees a GPU, finds libNVVM and compiles a kernel.

    Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) it is always true. The
    NVVM check matters: CuPy does not need libNVVM (a CUDA toolkit's, or the
    ``nvidia-cuda-nvcc`` wheel's), so a machine where CuPy runs may lack it, and there
    the first launch would fail instead of falling back to the CuPy kernels or the definition.
    So does the compile of a one-line kernel to PTX (a fraction of a second): a
    ``numba-cuda`` release that does not know the installed NumPy imports and finds the GPU,
    then fails at every compile (numba-cuda 0.30 with NumPy 2.5, which removed
    ``np.row_stack``). Where any step fails, :data:`cuda_unusable_reason` says which, and
    CuPy's kernels or the definitions serve instead. Asked once per process (it
    initialises the CUDA driver).
    """
    global cuda_unusable_reason
    try:
        from numba import cuda
        from numba.core import config

        if not cuda.is_available():
            cuda_unusable_reason = "numba.cuda finds no GPU or CUDA driver"
            return False
        if config.ENABLE_CUDASIM:
            return True
        from numba.cuda.cudadrv import nvvm

        if not nvvm.is_available():
            cuda_unusable_reason = "numba.cuda finds no libNVVM (a CUDA toolkit or the nvidia-cuda-nvcc wheel)"
            return False
        from numba import types

        cuda.compile_ptx_for_current_device(_probe_kernel, (types.float32[::1],))
        return True
    except Exception as exc:  # no numba, a broken CUDA install, a driver that fails to initialise ...
        cuda_unusable_reason = f"numba.cuda cannot compile here: {type(exc).__name__}: {exc}"
        return False


def has_module(package: str, op: str) -> bool:
    """Whether ``npdl.kernels.<package>`` has a module for ``op`` (found without importing it)."""
    return importlib.util.find_spec(f"{__name__}.{package}.{op}") is not None


def choose(op: str, *, numpy: bool, cupy: bool, have_numba: bool, have_cuda: bool,
           prefer_numba_cuda: bool = False) -> str:
    """The implementation for module ``op`` given what is true of the namespace and the machine.

    The whole selection rule, with the facts about the namespace and the machine as
    arguments (:func:`implementation` supplies the real ones), so that tests can try
    every case on a machine without CuPy or a GPU. :data:`DEFINITION` means no kernel.
    """
    if numpy and have_numba and has_module("numba", op):
        return "numba"
    if cupy:
        if not prefer_numba_cuda and has_module("cupy", op):
            return "cupy"
        if have_cuda and has_module("cuda", op):
            return "cuda"
        if has_module("cupy", op):
            return "cupy"
    return DEFINITION


def implementation(xp, op: str = OPS[0]) -> str:
    """Which implementation (``"numba"``, ``"cuda"``, ``"cupy"`` or :data:`DEFINITION`) serves
    module ``op`` for namespace ``xp``."""
    if _forced == "off":
        return DEFINITION
    numpy = array_api_compat.is_numpy_namespace(xp)
    cupy = not numpy and array_api_compat.is_cupy_namespace(xp)
    return choose(op, numpy=numpy, cupy=cupy, have_numba=numpy and numba_available(),
                  have_cuda=cupy and cuda_available(), prefer_numba_cuda=prefers_numba_cuda())


def get(op: str, xp):
    """The kernel module serving ``op`` for namespace ``xp``, or None where the definition runs."""
    key = (op, xp, _forced)  # namespaces are modules: hashable, and cheaper to key on than their names
    try:
        return _cache[key]
    except KeyError:
        pass
    if op not in OPS:
        raise ValueError(f"unknown kernel module {op!r}; known: {', '.join(OPS)}")
    impl = implementation(xp, op)
    mod = None if impl == DEFINITION else importlib.import_module(f"{__name__}.{impl}.{op}")
    _cache[key] = mod
    return mod


def _array_of(value):
    """The array that decides the device: ``value``, or the first of a list or tuple of arrays."""
    return value[0] if isinstance(value, (list, tuple)) and value else value


def kernel_for(operation: str, x):
    """The kernel function for ``operation`` (``"module.function"``) on arrays like ``x``, or None."""
    array = _array_of(x)
    key = (operation, type(array))
    try:
        return _calls[key]
    except KeyError:
        pass
    module, function = operation.split(".")
    mod = get(module, backend.namespace(array))
    fn = None if mod is None else getattr(mod, function, None)
    _calls[key] = fn
    return fn


def accelerated(operation: str, on: int = 0):
    """Mark a function as the definition of ``operation`` (``"module.function"``).

    Calls go to the kernel registered for the arrays' device, found from the argument
    ``on`` (its position; an array, or a list of arrays), when there is one and kernels are
    on; otherwise, or when the kernel returns ``NotImplemented``, to the function itself.
    ``f.definition`` is the undecorated function and ``f.operation`` its name.
    """
    module, _, function = operation.partition(".")
    if module not in OPS or not function:
        raise ValueError(f"accelerated: {operation!r} is not 'module.function' with a module in OPS")

    def decorate(fn):
        name = list(inspect.signature(fn).parameters)[on]  # the argument ``on``, when passed by keyword
        by_type: dict = {}  # array type -> this operation's kernel or None (cleared by :func:`use`)
        _call_caches.append(by_type)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            array = args[on] if len(args) > on else kwargs[name]
            kind = type(array)
            if kind is list or kind is tuple:
                array = _array_of(array)
                kind = type(array)
            kernel = by_type.get(kind, _UNKNOWN)
            if kernel is _UNKNOWN:
                kernel = by_type[kind] = kernel_for(operation, array)
            if kernel is not None:
                out = kernel(*args, **kwargs)
                if out is not NotImplemented:
                    return out
            return fn(*args, **kwargs)

        run.definition = fn
        run.operation = operation
        DEFINITIONS[operation] = fn
        return run

    return decorate


def step_threads(key, array):
    """A context manager around one training step on arrays like ``array``, for step site ``key``.

    On NumPy arrays, with kernels on and Numba installed, it sets Numba's thread count for the
    step (and BLAS's with ``NPDL_ADAPTIVE_THREADS=1``), chosen from the step times of site ``key``
    (:mod:`npdl.kernels.numba.threads`); with ``NPDL_ADAPTIVE_THREADS=0``, and everywhere else,
    it does nothing. Every training step passes here, so doing nothing costs a dictionary lookup,
    not a new object.
    """
    global _threads
    if _forced == "off" or type(array) is not np.ndarray:
        return _NO_STEP_CONTROL
    if _threads is None:
        if not numba_available():
            return _NO_STEP_CONTROL
        from .numba import threads  # imports nothing heavy: Numba only when a count is set

        _threads = threads
    return _threads.controller(key) or _NO_STEP_CONTROL


_threads = None  # npdl.kernels.numba.threads, once a training step has asked for it


#: what :func:`step_threads` returns where it does nothing (a ``nullcontext`` can be entered again and again)
_NO_STEP_CONTROL = contextlib.nullcontext()
