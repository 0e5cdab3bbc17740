"""Random draws keyed by the example's position in the global batch, so N ranks draw what one process would.

A layer that corrupts its input (:class:`npdl.layers.Dropout`, the denoising noises of
:mod:`npdl.layers.noise`) draws a mask of the batch's shape ``(B, ...)`` from its
generator. Under data parallelism each rank sees only its shard, rows ``offset ..
offset + n - 1`` of the global batch, and a stream generator (PCG64) would give those rows
the numbers the *first* rows of a one-process mask get. :class:`KeyedGenerator` instead
computes every number from its coordinates, with no stream at all::

    key   = mix(mix(mix(seed) ^ step) ^ call)         # a Python int: one per draw
    index = (offset + row) * F + column                # the element's place in the global (B, F) mask
    u     = splitmix64(key + (index + 1) * GAMMA)      # 64 random bits
    uniform = (u >> 11) * 2^-53   (float64)    or    (u >> 40) * 2^-24   (float32)

``step`` counts the global batches (:meth:`KeyedGenerator.begin_step`, called by every rank
before each step, whatever its shard), ``call`` the draws within a step, ``F`` the
features per example (the product of the shape after the batch axis). So element ``(i,
j)`` of the global mask is the same number whichever rank draws it and however the batch
is split (1, 2 or N ranks, even or uneven, a rank with an empty shard), and a resumed run
(``step``/``call`` are saved in checkpoints) continues the same sequence.

``splitmix64`` is the finaliser of Steele, Lea and Flood's SplitMix64 ("Fast splittable
pseudorandom number generators", OOPSLA 2014): ``z ^= z >> 30; z *= 0xbf58476d1ce4e5b9;
z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31``, all modulo 2^64. ``key + k * GAMMA``
for ``k = 1, 2, ...`` is exactly SplitMix64's state sequence, so each draw is a SplitMix64
stream indexed by position (it passes BigCrush). Normal samples use Box-Muller on two
uniforms per element (indices ``2 index`` and ``2 index + 1``).

The arithmetic is unsigned 64-bit array code on the arrays' own namespace (NumPy or CuPy),
wrapping modulo 2^64 as intended; only distributed training installs these generators
(:func:`npdl.distributed.attach`), so a one-process run keeps its PCG64 masks and the
published reproductions' figures.
"""

from __future__ import annotations

import math

from .. import backend
from ..backend.dtypes import DEFAULT_FLOAT, resolve_float

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, SplitMix64's increment
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def mix64(z: int) -> int:
    """SplitMix64's finaliser on a Python int (modulo 2^64): the scalar half of the key."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def draw_key(seed: int, step: int, call: int) -> int:
    """The 64-bit key of draw number ``call`` of global step ``step`` of the generator seeded ``seed``."""
    return mix64(mix64(mix64(seed) ^ (step & MASK64)) ^ (call & MASK64))


def random_bits(xp, key: int, index):
    """``splitmix64(key + (index + 1) GAMMA)`` elementwise for a uint64 array ``index``."""
    u64 = xp.uint64
    z = (index + u64(1)) * u64(GAMMA) + u64(key)
    z = (z ^ (z >> u64(30))) * u64(MIX1)
    z = (z ^ (z >> u64(27))) * u64(MIX2)
    return z ^ (z >> u64(31))


def bits_to_uniform(xp, bits, dtype: str):
    """64 random bits -> U[0, 1) with the dtype's full mantissa: 53 bits for float64, 24 for float32."""
    if dtype == "float64":
        return (bits >> xp.uint64(11)).astype(xp.float64) * (2.0 ** -53)
    return (bits >> xp.uint64(40)).astype(xp.float32) * xp.float32(2.0 ** -24)


class KeyedGenerator(backend.Generator):
    """A :class:`npdl.backend.Generator` whose ``uniform``/``normal``/``bernoulli`` are keyed by position.

    ``begin_step(offset)``: the next draws are for a shard starting at row ``offset`` of
    a new global batch. Draws of shape ``(n, ...)`` then cover rows ``offset .. offset + n - 1``
    (see the module docstring). ``integers`` and ``permutation`` are the base generator's
    (the same seed on every rank gives the same stream). ``seed`` must be an int: every rank
    must pass the same one.
    """

    def __init__(self, device="cpu", seed=0):
        if seed is None or isinstance(seed, bool) or int(seed) != seed:
            raise ValueError(f"KeyedGenerator: seed must be an integer every rank shares, got {seed!r}")
        super().__init__(device, int(seed))
        if self.device.kind == "strict":
            raise ValueError("KeyedGenerator: draws on 'cpu' (NumPy) or a GPU (CuPy), not on 'strict'")
        self.step, self.call, self.offset = 0, 0, 0

    def begin_step(self, offset: int = 0) -> None:
        """A new global batch; this rank's shard starts at its row ``offset``."""
        self.step += 1
        self.call = 0
        self.offset = int(offset)

    def _bits(self, shape, per_element: int = 1):
        """``per_element`` arrays of random bits for a draw of ``shape``, keyed by global position."""
        shape = tuple(int(d) for d in shape)
        xp = self.device.xp
        rows = shape[0] if shape else 1
        features = math.prod(shape[1:]) if len(shape) > 1 else 1
        key = draw_key(self.seed, self.step, self.call)
        self.call += 1
        first = self.offset * features * per_element
        flat = xp.arange(rows * features * per_element, dtype=xp.uint64) + xp.uint64(first)
        bits = random_bits(xp, key, flat)
        if per_element == 1:
            return [xp.reshape(bits, shape)]
        bits = xp.reshape(bits, (rows * features, per_element))
        return [xp.reshape(bits[:, k], shape) for k in range(per_element)]

    def uniform(self, shape, low=0.0, high=1.0, dtype=DEFAULT_FLOAT):
        """Samples of U[low, high), keyed by position."""
        dtype = resolve_float(dtype)
        u = bits_to_uniform(self.device.xp, self._bits(shape)[0], dtype)
        if (low, high) != (0.0, 1.0):
            u *= high - low
            u += low
        return u

    def normal(self, shape, std=1.0, mean=0.0, dtype=DEFAULT_FLOAT):
        """Samples of N(mean, std^2) by Box-Muller, ``sqrt(-2 ln(1 - u1)) cos(2 pi u2)``, computed in
        float64 and cast to ``dtype``."""
        xp = self.device.xp
        b1, b2 = self._bits(shape, per_element=2)
        u1, u2 = bits_to_uniform(xp, b1, "float64"), bits_to_uniform(xp, b2, "float64")
        z = xp.sqrt(-2.0 * xp.log1p(-u1)) * xp.cos((2.0 * math.pi) * u2)
        z = z.astype(backend.float_dtype(xp, resolve_float(dtype)))
        if std != 1.0:
            z *= std
        if mean != 0.0:
            z += mean
        return z

    def bernoulli(self, shape, p, dtype=DEFAULT_FLOAT):
        """A float mask that is 1 with probability ``p`` and 0 otherwise, keyed by position."""
        u = self.uniform(shape, dtype=dtype)
        return (u < p).astype(u.dtype)

    def get_state(self) -> dict:
        """The base generator's state plus ``{"keyed": {"step", "call"}}`` (JSON-serialisable)."""
        state = super().get_state()
        state["keyed"] = {"step": self.step, "call": self.call}
        return state

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state` output; a plain generator's state (no ``"keyed"``) starts at step 0."""
        super().set_state(state)
        keyed = state.get("keyed") or {}
        self.step, self.call, self.offset = int(keyed.get("step", 0)), int(keyed.get("call", 0)), 0
