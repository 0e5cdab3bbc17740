"""Seeded random generators that draw directly on one device, and the default seed for layers."""

from __future__ import annotations

import numpy as np

from .devices import get_device
from .dtypes import DEFAULT_FLOAT, resolve_float


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
