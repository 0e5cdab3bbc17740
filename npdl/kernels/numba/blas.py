"""The BLAS the CPU kernels call directly (ctypes): NumPy's own, or oneMKL where it is chosen.

NumPy's ``matmul`` always overwrites its output (``beta = 0``), so an update
``C <- alpha A^T B + beta C`` costs a temporary and a second pass. The same BLAS
library NumPy uses (found through ``threadpoolctl``, no second BLAS and no second
thread pool) exposes ``cblas_?gemm``, which does it in one call. (At batch 1 the update is a
rank-1 one, ``C <- beta C + alpha x y^T``, which a Numba loop over the rows of ``C`` does:
:mod:`.rows`.)

``gemm_at_b`` returns False when no usable CBLAS was found or the arrays do not fit (dtype,
layout); the kernel then declines and the definition runs.

Which library (``NPDL_BLAS``, read once, on the first product): ``numpy``, the BLAS NumPy
loaded (OpenBLAS in NumPy's wheels); ``mkl``, Intel's oneMKL (``libmkl_rt``, from the ``mkl``
package: ``pip install npdl-backprop[mkl]``), an error if it is not installed; ``auto`` (the
default), oneMKL on an Intel CPU where it is installed, else NumPy's. With oneMKL the kernels'
products -- the dense layers' from batch 2 and 2^21 multiply-adds (:mod:`.dense_products`), the
updates here and the convolution's chunks -- are oneMKL's, and differ from NumPy's ``@`` in the
last bits, as two BLAS libraries' results do; the layer files' own ``@`` and the recurrent cells'
small per-step products (:func:`numpy_sgemm`) stay NumPy's. oneMKL runs on Intel's OpenMP
threads, which wait ``KMP_BLOCKTIME`` (200 us unless set) for the next product before they sleep,
in its strict CNR mode (``MKL_CBWR=AUTO,STRICT`` unless set: the same bits at any thread count,
so the training step may choose the count: :mod:`.threads`); its thread count is per calling
thread (:func:`one_thread_here`). Measured on a 2-core Intel Xeon (AVX-512; oneMKL 2026.2
against OpenBLAS 0.3.31, two threads): (20, 784) @ (784, 500) 0.068 against 0.171 ms; (64, 3136)
@ (3136, 1024) 1.61 against 2.12 ms; (128, 1000) @ (1000, 1000) 0.90 against 1.09 ms; on one
thread, the Keras CNN's convolution chunk (64, 800) @ (800, 196) 0.145 against 0.168 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import re
import sys

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

#: symbol names tried in order (``{}`` is the routine: sgemm, dger, ...), with the integer type
#: of their dimensions
_CANDIDATES = (("scipy_cblas_{}64_", ctypes.c_int64), ("cblas_{}64_", ctypes.c_int64),
               ("scipy_cblas_{}", ctypes.c_int), ("cblas_{}", ctypes.c_int))

#: {"float32": sgemm, "float64": dgemm, "library": name}; {} when no CBLAS is usable; None until first looked up
_loaded = None


#: the environment variable that picks the library, and the values it takes
ENV = "NPDL_BLAS"
CHOICES = ("auto", "numpy", "mkl")

#: ``MKL_Set_Threading_Layer``'s code for Intel's OpenMP runtime (``libiomp5``, which the ``mkl``
#: package installs beside it)
_MKL_INTEL_THREADS = 0


#: how long oneMKL's idle threads wait for the next product before they sleep (``KMP_BLOCKTIME``,
#: unless set already; see :func:`_find_mkl`)
MKL_BLOCKTIME = "200us"


#: ``MKL_CBWR_Get``'s argument for every setting, and the bit of the strict mode in its answer
_MKL_CBWR_ALL, _MKL_CBWR_STRICT = -1, 0x10000


def requested() -> str:
    """``NPDL_BLAS`` as one of :data:`CHOICES` (unset or empty: ``auto``); ValueError for another value."""
    raw = os.environ.get(ENV, "")
    value = raw.strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={raw!r}: expected one of {', '.join(CHOICES)}")
    return value


def intel_cpu() -> bool:
    """Whether this is an Intel CPU (``GenuineIntel`` in ``/proc/cpuinfo``; False where that cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "GenuineIntel" in line
    except OSError:
        pass
    return False


def _mkl_paths() -> list:
    """Candidate files of oneMKL's single dynamic library: the ``mkl`` package's, then the system's."""
    paths = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")), reverse=True)
    found = ctypes.util.find_library("mkl_rt")
    return paths + ([found] if found else [])


def _gemm_functions(lib, pattern, int_t) -> dict:
    """``{"float32": sgemm, "float64": dgemm}`` of ``lib`` under the symbol ``pattern``, or ``{}``."""
    fns = {}
    for dtype, letter, real_t in (("float32", "s", ctypes.c_float), ("float64", "d", ctypes.c_double)):
        fn = getattr(lib, pattern.format(letter + "gemm"), None)
        if fn is None:
            return {}
        fn.restype = None
        # order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, real_t,
                       ctypes.c_void_p, int_t, ctypes.c_void_p, int_t, real_t, ctypes.c_void_p, int_t]
        fns[dtype] = fn
    return fns


def _find_mkl() -> dict:
    """oneMKL's ``cblas_?gemm`` (32-bit integers, its default interface) on Intel's OpenMP threads, or ``{}``."""
    # Between two products of a step its threads wait this long for the next before they sleep
    # (``OMP_WAIT_POLICY=PASSIVE`` alone makes it 0): waking a sleeping thread costs tens of
    # microseconds on a virtual machine, and a 784-500-10 network's step at batch 20 took 0.73 ms
    # with 0, 0.61 ms with 50 us, 0.455 ms with 200 us and 0.45 ms with 200 ms (2-core Intel Xeon).
    # The runtime reads it when it starts, on the first product.
    os.environ.setdefault("KMP_BLOCKTIME", MKL_BLOCKTIME)
    # oneMKL's strict CNR mode: its GEMM gives the same bits whatever its thread count (without it a
    # (128, 1000) @ (1000, 1000) product differed between one thread and two), so the training step may
    # choose the count by timing (:mod:`.threads`) without changing a result.
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
    for path in _mkl_paths():
        try:
            lib = ctypes.CDLL(path)
            set_layer = lib.MKL_Set_Threading_Layer
        except (OSError, AttributeError):
            continue
        set_layer.restype, set_layer.argtypes = ctypes.c_int, [ctypes.c_int]
        set_layer(_MKL_INTEL_THREADS)  # before any other call, or it is too late
        fns = _gemm_functions(lib, "cblas_{}", ctypes.c_int)
        if fns:
            version = ctypes.create_string_buffer(256)
            lib.MKL_Get_Version_String(version, len(version))
            found = re.search(r"Version ([0-9][0-9.]*)", version.value.decode(errors="replace"))
            fns["library"] = f"mkl {found.group(1) if found else '(version unknown)'} (cblas_?gemm)"
            fns["provider"] = "mkl"
            local = lib.MKL_Set_Num_Threads_Local
            local.restype, local.argtypes = ctypes.c_int, [ctypes.c_int]
            fns["threads_here"] = local
            cbwr = lib.MKL_CBWR_Get
            cbwr.restype, cbwr.argtypes = ctypes.c_int, [ctypes.c_int]
            fns["strict"] = bool(cbwr(_MKL_CBWR_ALL) & _MKL_CBWR_STRICT)
            get = lib.MKL_Get_Max_Threads
            get.restype, get.argtypes = ctypes.c_int, []
            fns["threads"] = (get, local)  # the calling thread's count, as threadpoolctl sets it
            return fns
    return {}


class MKLInterferenceWarning(RuntimeWarning):
    """oneMKL was found but computed a wrong product, so the kernels call NumPy's BLAS instead."""


def _agrees(fns) -> bool:
    """Whether oneMKL's products of two fixed probes agree with float64 within float32's rounding bound.

    They do not where a library loaded before it exports the internals of another oneMKL build, as
    PyTorch's wheels do (their static oneMKL, made global when ``import torch`` loads it): oneMKL's
    own modules, which ``libmkl_rt`` loads on its first call, then bind to those, and its products
    come out wrong (a (20, 784) @ (784, 500) product off by 100 and more)."""
    rng = np.random.default_rng(0)
    for m, k, n in ((4, 8, 4), (20, 784, 500)):
        A = rng.standard_normal((m, k)).astype(np.float32)
        B = rng.standard_normal((k, n)).astype(np.float32)
        C = np.empty((m, n), np.float32)
        fns["float32"](ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 1.0, A.ctypes.data, k, B.ctypes.data, n, 0.0,
                       C.ctypes.data, n)
        exact = A.astype(np.float64) @ B.astype(np.float64)
        bound = k * np.finfo(np.float32).eps * (np.abs(A.astype(np.float64)) @ np.abs(B.astype(np.float64)))
        if not np.all(np.abs(C - exact) <= bound):
            return False
    return True


def _find() -> dict:
    if os.environ.get("NPDL_NO_CBLAS"):
        return {}
    choice = requested()
    if choice == "mkl" or choice == "auto" and intel_cpu():
        fns = _find_mkl()
        if fns and not _agrees(fns):
            why = (f"oneMKL ({fns['library']}) computed a wrong matrix product in this process: a library "
                   "loaded before it carries another oneMKL build (import torch does); import npdl before "
                   "torch, or set NPDL_BLAS=numpy")
            if choice == "mkl":
                raise RuntimeError(f"NPDL_BLAS=mkl, but {why}")
            import warnings

            warnings.warn(f"{why}; the kernels call NumPy's BLAS instead", MKLInterferenceWarning, stacklevel=3)
            fns = {}
        if fns:
            return fns
        if choice == "mkl":
            raise RuntimeError(f"{ENV}=mkl, but oneMKL's libmkl_rt was not found "
                               f"(looked for: {', '.join(_mkl_paths()) or 'libmkl_rt.so* in ' + sys.prefix}); "
                               "install it with: pip install npdl-backprop[mkl]")
    return _find_numpy()


def _find_numpy() -> dict:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure NumPy's BLAS is loaded before looking for it
    # Several BLAS libraries may be loaded: importing Numba imports SciPy, whose wheel loads its
    # own OpenBLAS with its own thread pool. Use NumPy's (its wheel keeps it beside the package,
    # in numpy.libs or numpy/.dylibs): two pools taking turns spin against each other, which
    # measured 8 ms instead of 0.3 ms per MLP step on 2 cores.
    numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
    blas_libs = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    blas_libs.sort(key=lambda info: not os.path.abspath(info["filepath"]).startswith(numpy_dir))
    for info in blas_libs:
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:
            continue
        for pattern, int_t in _CANDIDATES:
            fns = _gemm_functions(lib, pattern, int_t)
            if fns:
                fns["library"] = f"{info.get('internal_api')} {info.get('version')} ({pattern.format('?gemm')})"
                fns["provider"] = "numpy"
                return fns
    return {}


#: :func:`_find_numpy`'s answer, kept apart for the kernels that always call NumPy's BLAS
_numpy_loaded = None


def functions() -> dict:
    global _loaded
    if _loaded is None:
        _loaded = _find()
    return _loaded


def numpy_functions() -> dict:
    """NumPy's own BLAS's functions, whichever library :func:`functions` chose ({} if none is usable)."""
    global _numpy_loaded
    if _numpy_loaded is None:
        chosen = functions()
        _numpy_loaded = chosen if chosen.get("provider") == "numpy" else (
            {} if os.environ.get("NPDL_NO_CBLAS") else _find_numpy())
    return _numpy_loaded


def available() -> bool:
    return bool(functions())


def load_early() -> None:
    """Load the kernels' library now where it would be oneMKL (``import npdl`` calls this): oneMKL loaded
    after PyTorch computes wrong products (:func:`_agrees`), loaded before it, both are right. Errors
    (a misspelt ``NPDL_BLAS``, oneMKL asked for and missing) wait for the first product to be raised."""
    try:
        choice = requested()
        if choice != "numpy" and _mkl_paths() and (choice == "mkl" or intel_cpu()):
            functions()
    except (ValueError, RuntimeError, OSError):
        pass


def numpy_own() -> bool:
    """Whether the kernels' products are NumPy's BLAS's (or no CBLAS is called at all): ``@`` gives the same bits."""
    return functions().get("provider", "numpy") == "numpy"


def select(choice: str | None) -> dict:
    """Pick the library again as ``NPDL_BLAS=choice`` would (None: as the environment says); returns
    :func:`functions`. For tests and benchmarks that compare the two within one process."""
    global _loaded
    if choice is not None and choice not in CHOICES:
        raise ValueError(f"blas.select: expected one of {', '.join(CHOICES)} or None, got {choice!r}")
    global _numpy_loaded
    saved = os.environ.get(ENV)
    if choice is not None:
        os.environ[ENV] = choice
    try:
        _loaded = _numpy_loaded = None
        return functions()
    finally:
        if choice is not None:
            if saved is None:
                del os.environ[ENV]
            else:
                os.environ[ENV] = saved


def sgemm():
    """The ``cblas_sgemm`` of the library (NumPy's BLAS, or oneMKL: see above) as a ctypes function (Numba's compiled loops can call it:
    :mod:`.simple_rnn`, :mod:`.lstm_cell`), or None where no usable CBLAS was found."""
    return functions().get("float32")


def numpy_sgemm():
    """NumPy's BLAS's ``cblas_sgemm`` whatever :func:`sgemm` is: the recurrent cells' per-step products
    (:mod:`.simple_rnn`, :mod:`.lstm_cell`), (50, 50) @ (50, 50) and smaller, where one call into
    oneMKL's threads costs more than OpenBLAS's whole product (the Keras LSTM regressor's step 1.03
    against 0.83 ms, the RNN classifier's 1.04 against 0.97 ms, on a 2-core Intel Xeon)."""
    return numpy_functions().get("float32")


def _as_op(X):
    """``(trans, ld)`` so that BLAS reads ``X`` (row-major) as given, or None if its layout does not fit."""
    item = X.itemsize
    rows, cols = X.shape
    if X.strides[1] == item and X.strides[0] >= max(cols, 1) * item and X.strides[0] % item == 0:
        return NO_TRANS, X.strides[0] // item  # rows are contiguous: row-major X
    if X.strides[0] == item and X.strides[1] >= max(rows, 1) * item and X.strides[1] % item == 0:
        return TRANS, X.strides[1] // item  # columns are contiguous: X.T is row-major
    return None


#: dtype.char -> the dtype's name (``str(dtype)`` is a slow Python-level call in NumPy, a few microseconds)
_FLOAT_CHARS = {"f": "float32", "d": "float64"}


def gemm_at_b(C, A, B, alpha: float, beta: float) -> bool:
    """``C <- alpha A^T B + beta C`` in place through CBLAS; False if it could not be done here."""
    fns = functions()
    fn = fns.get(_FLOAT_CHARS.get(C.dtype.char))
    if fn is None or A.dtype != C.dtype or B.dtype != C.dtype or A.ndim != 2 or B.ndim != 2 or C.ndim != 2:
        return False
    if not C.flags.c_contiguous or not C.flags.writeable:
        return False
    m, n = C.shape
    k = A.shape[0]
    if A.shape[1] != m or B.shape != (k, n) or m == 0 or n == 0:
        return False
    # op(A) must be A^T (M, K'): A is read transposed if it is row-major, as-is if A.T is row-major
    a = _as_op(A)
    b = _as_op(B)
    if a is None or b is None:
        return False
    trans_a = TRANS if a[0] == NO_TRANS else NO_TRANS
    fn(ROW_MAJOR, trans_a, b[0], m, n, k, alpha, A.ctypes.data, a[1], B.ctypes.data, b[1], beta,
       C.ctypes.data, n)
    return True


def same_bits_any_thread_count() -> bool:
    """Whether the kernels' library gives the same bits whatever its thread count: oneMKL in its strict
    CNR mode (``MKL_CBWR=AUTO,STRICT``, set unless ``MKL_CBWR`` was); OpenBLAS does not."""
    return bool(functions().get("strict"))


def mkl_thread_count():
    """``(get, set)`` of oneMKL's thread count for the calling thread where it is the kernels' library,
    else None."""
    return functions().get("threads")


def one_thread_here() -> None:
    """Make the library's products on the calling thread single-threaded (the chunked kernels' worker
    threads, :mod:`.chunking`). oneMKL takes a per-thread count (``MKL_Set_Num_Threads_Local``);
    NumPy's OpenBLAS has only its global one, which :func:`.chunking.run_chunks` sets around the work."""
    local = functions().get("threads_here")
    if local is not None:
        local(1)


def matmul(A, B):
    """``A @ B`` (2-D, one float dtype) as a fresh C-ordered array through the library's GEMM, or None
    where it cannot be called (no CBLAS, another dtype, a layout BLAS cannot read, an empty product)."""
    fn = functions().get(_FLOAT_CHARS.get(A.dtype.char))
    if fn is None or B.dtype != A.dtype or A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        return None
    m, k = A.shape
    n = B.shape[1]
    a, b = _as_op(A), _as_op(B)
    if a is None or b is None or m == 0 or n == 0 or k == 0:
        return None
    C = np.empty((m, n), A.dtype)
    fn(ROW_MAJOR, a[0], b[0], m, n, k, 1.0, A.ctypes.data, a[1], B.ctypes.data, b[1], 0.0, C.ctypes.data, n)
    return C
