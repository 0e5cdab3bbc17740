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
products -- the dense layers' from batch 2 and 2^20 multiply-adds (:data:`MIN_WORK`), the
updates here and the convolution's chunks -- are oneMKL's, and differ from NumPy's ``@`` in the
last bits, as two BLAS libraries' results do; the layer files' own ``@`` and the recurrent cells'
small per-step products (:func:`numpy_sgemm`) stay NumPy's. oneMKL runs on Intel's OpenMP
threads, which wait ``KMP_BLOCKTIME`` (200 us unless set) for the next product before they sleep,
in its strict CNR mode (unless ``MKL_CBWR`` is set: the same bits at any thread count,
so the training step may choose the count: :mod:`.threads`); its thread count is per calling
thread (:func:`one_thread_here`). Measured on a 2-core Intel Xeon (AVX-512; oneMKL 2026.2
against OpenBLAS 0.3.31, two threads): (20, 784) @ (784, 500) 0.068 against 0.171 ms; (64, 3136)
@ (3136, 1024) 1.61 against 2.12 ms; (128, 1000) @ (1000, 1000) 0.90 against 1.09 ms; on one
thread, the Keras CNN's convolution chunk (64, 800) @ (800, 196) 0.145 against 0.168 ms.
"""

from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

from .cblas import NO_TRANS, ROW_MAJOR, TRANS, gemm_functions as _gemm_functions
from .mkl import MKLInterferenceWarning  # noqa: F401  (the warning's public name: blas.MKLInterferenceWarning)
from .mkl import _find_mkl, _gnu_openmp_global, _mkl_paths, intel_cpu

#: symbol names tried in order (``{}`` is the routine: sgemm, dger, ...), with the integer type
#: of their dimensions
_CANDIDATES = (("scipy_cblas_{}64_", ctypes.c_int64), ("cblas_{}64_", ctypes.c_int64),
               ("scipy_cblas_{}", ctypes.c_int), ("cblas_{}", ctypes.c_int))

#: {"float32": sgemm, "float64": dgemm, "library": name}; {} when no CBLAS is usable; None until first looked up
_loaded = None


#: the environment variable that picks the library, and the values it takes
ENV = "NPDL_BLAS"
CHOICES = ("auto", "numpy", "mkl")

def requested() -> str:
    """``NPDL_BLAS`` as one of :data:`CHOICES` (unset or empty: ``auto``); ValueError for another value."""
    raw = os.environ.get(ENV, "")
    value = raw.strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={raw!r}: expected one of {', '.join(CHOICES)}")
    return value


#: set once oneMKL has loaded into this process before any other OpenMP runtime's functions were global
_mkl_loaded_first = False


def _find() -> dict:
    global _mkl_loaded_first
    if os.environ.get("NPDL_NO_CBLAS"):
        return {}
    choice = requested()
    if choice == "mkl" or choice == "auto" and intel_cpu():
        foreign = not _mkl_loaded_first and _gnu_openmp_global()
        fns = _find_mkl(_mkl_paths())
        if fns and not foreign and fns["agrees"]:
            _mkl_loaded_first = True
        elif fns:
            why = (f"oneMKL ({fns['library']}) would compute wrong matrix products in this process: a library "
                   "loaded before it made GNU OpenMP's functions global (import torch does); load it first "
                   "(npdl.kernels.numba.blas.functions() before import torch), or set NPDL_BLAS=numpy")
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


def _numpy_blas_first(libraries, path_of):
    """``libraries`` with NumPy's own BLAS (kept beside the package, in numpy.libs or numpy/.dylibs) first."""
    numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
    return sorted(libraries, key=lambda lib: not os.path.abspath(path_of(lib)).startswith(numpy_dir))


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
    blas_libs = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    for info in _numpy_blas_first(blas_libs, lambda info: info["filepath"]):
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


def numpy_own() -> bool:
    """Whether the kernels' products are NumPy's BLAS's (or no CBLAS is called at all): ``@`` gives the same bits."""
    return functions().get("provider", "numpy") == "numpy"


#: from this many multiply-adds a product that would run in NumPy's ``@`` -- a dense layer's ``x W`` or
#: ``da W^T`` from batch 2, the optimizer's ``A^T B`` into a weight too small for :mod:`.gemm_update` on
#: NumPy's BLAS -- goes to the kernels' library where that is not NumPy's own (:func:`serves`). Below,
#: calling oneMKL costs more than it saves: the Keras RNN classifier's (50, 50) @ (50, 10) (25,000) took
#: 55 against 20 us, and ``mlp_b20``'s step with its 500-10 layer's three products (100,000 each) through
#: oneMKL 1.05-1.19x as long. Above, the three products of ``sda_b128``'s 1000-10 layer (1.28 million
#: each) took its step to 0.96-0.97x, and the stacked weight updates of the Keras RNN classifier
#: ((50, 50) and (28, 50) over 1400 rows) and LSTM regressor ((20, 80) over 1000) theirs to 0.89-0.90x
#: and 0.88-0.95x (the two settings in turn in one process, four rounds; 2-core Intel Xeon): NumPy's
#: OpenBLAS runs such products on two threads, whose second has gone to sleep and is woken for each,
#: beside oneMKL's, still waiting for the next product.
MIN_WORK = 1 << 20


def serves(work: int) -> bool:
    """Whether a product of ``work`` multiply-adds that would run in NumPy's ``@`` goes to the kernels'
    library instead: where that is oneMKL, from :data:`MIN_WORK` on."""
    return work >= MIN_WORK and not numpy_own()


def select(choice: str | None) -> dict:
    """Pick the library again as ``NPDL_BLAS=choice`` would (None: as the environment says); returns
    :func:`functions`. For tests and benchmarks that compare the two within one process."""
    global _loaded, _numpy_loaded
    if choice is not None and choice not in CHOICES:
        raise ValueError(f"blas.select: expected one of {', '.join(CHOICES)} or None, got {choice!r}")
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
    CNR mode (``MKL_CBWR_Set``, unless ``MKL_CBWR`` is set); OpenBLAS does not."""
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
