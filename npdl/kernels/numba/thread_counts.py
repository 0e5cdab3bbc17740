"""The real thread counts the training step's controller (:mod:`.threads`) reads and sets: BLAS's (the
kernels' oneMKL where they call it, else NumPy's OpenBLAS, else whatever threadpoolctl drives) and
Numba's (per calling thread, never touched before Numba's thread pool has started)."""

from __future__ import annotations

from . import blas
from .blas import _numpy_blas_first


class _Functions:
    """A thread count read and set through two functions."""

    def __init__(self, get, set):
        self.get, self.set = get, set


#: symbol prefixes and suffixes of OpenBLAS's ``*_get_num_threads``/``*_set_num_threads``, tried in order
_OPENBLAS_NAMES = (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "64_"), ("openblas_", ""))


def _find_blas():
    """The BLAS thread count as :class:`_Functions`: oneMKL's where the kernels call it (:mod:`.blas`), else
    NumPy's BLAS's: OpenBLAS's own functions, else threadpoolctl's, else None."""
    import ctypes

    mkl = blas.mkl_thread_count()
    if mkl is not None:
        return _Functions(*mkl)

    try:
        from threadpoolctl import ThreadpoolController, threadpool_info
    except ImportError:
        return None
    infos = _numpy_blas_first([i for i in threadpool_info() if i.get("user_api") == "blas"], lambda i: i["filepath"])
    if infos:
        try:
            lib = ctypes.CDLL(infos[0]["filepath"])
        except OSError:
            lib = None
        for prefix, suffix in _OPENBLAS_NAMES if lib is not None else ():
            get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return _Functions(get, set_)
    try:  # MKL, BLIS, ...: threadpoolctl's controller (a Python call more per use)
        libs = ThreadpoolController().select(user_api="blas").lib_controllers
    except Exception:  # noqa: BLE001 -- a library threadpoolctl cannot drive: leave the count alone
        return None
    libs = _numpy_blas_first(libs, lambda lib: lib.filepath)
    if not libs or libs[0].get_num_threads() is None:
        return None
    return _Functions(libs[0].get_num_threads, libs[0].set_num_threads)


class _NumbaThreads:
    """Numba's thread count (per calling thread), left alone until Numba's thread pool has started."""

    _numba = _parallel = None  # the modules, imported on first use (every step asks)

    def get(self):
        if self._parallel is None:
            import numba
            from numba.np.ufunc import parallel

            _NumbaThreads._numba, _NumbaThreads._parallel = numba, parallel
        if not getattr(self._parallel, "_is_initialized", True):
            return None  # asking would start the pool; no parallel kernel has run, none needs a count
        return self._numba.get_num_threads()

    def set(self, n: int) -> None:
        import numba

        numba.set_num_threads(n)


class _NumbaOnly(_NumbaThreads):
    """Numba's thread count as the controller's one count: 1 (nothing to choose) until its pool starts."""

    def get(self):
        n = super().get()
        return 1 if n is None else n
