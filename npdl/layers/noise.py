r"""Corruption for denoising autoencoders: masking, additive Gaussian and dropout noise.

A denoising autoencoder reconstructs the clean input ``x`` from a corrupted copy ``x~``.
The corruption is applied to the *encoder's input* and only in training; the loss
compares the reconstruction with the clean ``x`` (``fit(x, x)``), so no gradient needs
to flow through the noise. Each layer still has a backward pass (a mask multiply or the
identity) so that it can sit anywhere in a :class:`npdl.models.Sequential`.

* ``MaskingNoise(p)``: each input is zeroed with probability ``p`` and kept as it is
  otherwise, with no rescaling (the Theano dA's ``get_corrupted_input``);
* ``GaussianNoise(sigma)``: $\tilde{x} = x + \sigma \epsilon$, $\epsilon \sim N(0, 1)$ (additive isotropic noise);
* ``DropoutNoise(keep_prob)``: inverted dropout of the input, kept units scaled by
  ``1 / keep_prob`` (Hands-On ML's dropout-corrupted autoencoder).

Noise is drawn from an :class:`npdl.backend.Generator` on the input's device, so a
seeded run repeats exactly on the CPU (and ``strict``, which shares its generator).
The ``corrupt_*`` functions draw and apply in one call, with the same draws as the layers.
"""

from __future__ import annotations

from .. import backend, checks
from .base import Layer
from .dropout import dropout_backward, dropout_forward


# ----------------------------------------------------------------------------- masking

def masking_noise_forward(x, mask):
    r"""$\tilde{x} = x \odot mask$ with ``mask`` holding 1 (kept) or 0 (zeroed); no rescaling.

    The mask is drawn by the caller (:func:`masking_mask`), so this is deterministic and
    can be gradient-checked. Shapes: ``x``, ``mask``, ``x~`` alike. Cache: ``mask``.
    """
    return x * mask, mask


def masking_noise_backward(dy, cache):
    r"""$\tilde{x} = x \odot mask$ is linear in ``x`` with slope ``mask``: $dx = dy \odot mask$."""
    mask = cache
    return dy * mask


def masking_mask(shape, p, rng, dtype=backend.DEFAULT_FLOAT):
    """A 0/1 mask that keeps each entry with probability ``1 - p`` (Theano: ``binomial(p=1 - p)``)."""
    return rng.bernoulli(tuple(shape), 1.0 - p, dtype=dtype)


def corrupt_masking(x, p, rng):
    """``x`` with each entry zeroed independently with probability ``p`` (a new array)."""
    _check_probability(p, "corrupt_masking", "p", closed_high=False)
    return masking_noise_forward(x, masking_mask(x.shape, p, rng, backend.dtype_name(x)))[0]


# ----------------------------------------------------------------------------- Gaussian

def gaussian_noise_forward(x, noise):
    r"""$\tilde{x} = x + noise$ with ``noise`` drawn by the caller (:func:`gaussian_noise`). Cache: nothing."""
    return x + noise, None


def gaussian_noise_backward(dy, cache):
    """Adding a constant has slope 1: $dx = dy$."""
    return dy


def gaussian_noise(shape, sigma, rng, dtype=backend.DEFAULT_FLOAT):
    """Samples of ``N(0, sigma^2)``."""
    return rng.normal(tuple(shape), std=sigma, dtype=dtype)


def corrupt_gaussian(x, sigma, rng):
    """``x + sigma * eps`` with ``eps ~ N(0, 1)`` elementwise (a new array)."""
    _check_sigma(sigma, "corrupt_gaussian")
    return gaussian_noise_forward(x, gaussian_noise(x.shape, sigma, rng, backend.dtype_name(x)))[0]


# ------------------------------------------------------------------------------ dropout

def dropout_noise_mask(shape, keep_prob, rng, dtype=backend.DEFAULT_FLOAT):
    """A mask holding ``1 / keep_prob`` (kept, probability ``keep_prob``) or 0; ``E[mask] = 1``."""
    mask = rng.bernoulli(tuple(shape), keep_prob, dtype=dtype)
    mask *= 1.0 / keep_prob
    return mask


def corrupt_dropout(x, keep_prob, rng):
    """Inverted dropout of ``x``: kept entries scaled by ``1 / keep_prob``, the others zeroed.
    The forward/backward pair is :func:`npdl.layers.dropout_forward` / ``dropout_backward``."""
    _check_probability(keep_prob, "corrupt_dropout", "keep_prob", closed_low=False, closed_high=True)
    return dropout_forward(x, dropout_noise_mask(x.shape, keep_prob, rng, backend.dtype_name(x)))[0]


# ------------------------------------------------------------------------------ checks

def _check_probability(value, who, what, closed_low=True, closed_high=False):
    v = float(value)
    low_ok = v >= 0.0 if closed_low else v > 0.0
    high_ok = v <= 1.0 if closed_high else v < 1.0
    if not (low_ok and high_ok):
        interval = f"{'[' if closed_low else '('}0, 1{']' if closed_high else ')'}"
        raise ValueError(f"{who}: {what} must be in {interval}, got {value}")
    return v


def _check_sigma(sigma, who):
    if not float(sigma) >= 0.0:
        raise ValueError(f"{who}: sigma must be >= 0, got {sigma}")
    return float(sigma)


# ------------------------------------------------------------------------------ layers

class _Noise(Layer):
    """Corruption active only in ``forward(x, training=True)``; the identity at inference."""

    def __init__(self, rng=None, name=None):
        super().__init__(name)
        self.rng = rng

    def _generator(self, x):
        device = backend.device_of(x)
        if self.rng is None or self.rng.device != device:
            self.rng = backend.default_generator(device)
        return self.rng

    def _is_identity(self) -> bool:
        raise NotImplementedError

    def _corrupt(self, x, rng):
        """Draw the noise and apply it: ``(x~, cache)``."""
        raise NotImplementedError

    def forward(self, x, training=False):
        checks.check_float(x, f"{type(self).__name__} '{self.name}'")
        if not training or self._is_identity():
            self.cache = None
            return x
        y, self.cache = self._corrupt(x, self._generator(x))
        return y

    def backward(self, dy):
        return dy if self.cache is None else self._backward(dy, self.cache)

    def _backward(self, dy, cache):
        raise NotImplementedError

    #: FLOPs per element of the corruption's forward and backward, and whether the cache keeps a mask
    work_per_element = (1, 1, True)

    def work(self, input_shape, need_input_grad=True, dtype="float32") -> dict:
        """FLOPs of a training forward and backward on ``input_shape`` and what the cache keeps
        (:mod:`npdl.bench.work`): one multiply (mask) or add (Gaussian) per element forward, the mask
        multiply backward (none for additive noise). Drawing the noise is not counted."""
        if self._is_identity():
            return {"forward": 0, "backward": 0, "view": True}
        M = 1
        for d in input_shape:
            M *= int(d)
        forward, backward, mask = self.work_per_element
        return {"forward": forward * M, "backward": backward * M,
                "kept_bytes": M * (8 if dtype == "float64" else 4) if mask else 0}


class MaskingNoise(_Noise):
    """Zero each input with probability ``p`` in training (the Theano dA's corruption, no rescaling).

    ``p`` is the Theano tutorial's ``corruption_level`` (0.3 in ``dA.py``).
    """

    def __init__(self, p: float = 0.3, rng=None, name=None):
        super().__init__(rng, name)
        self.p = _check_probability(p, "MaskingNoise", "p")

    def _is_identity(self):
        return self.p == 0.0

    def _corrupt(self, x, rng):
        return masking_noise_forward(x, masking_mask(x.shape, self.p, rng, backend.dtype_name(x)))

    def _backward(self, dy, cache):
        return masking_noise_backward(dy, cache)

    def get_config(self):
        return {"p": self.p, "name": self.name}


class GaussianNoise(_Noise):
    """Add ``N(0, sigma^2)`` noise to every input in training."""

    work_per_element = (1, 0, False)  # x + noise; the backward is dy itself, the cache nothing

    def __init__(self, sigma: float = 0.1, rng=None, name=None):
        super().__init__(rng, name)
        self.sigma = _check_sigma(sigma, "GaussianNoise")

    def _is_identity(self):
        return self.sigma == 0.0

    def _corrupt(self, x, rng):
        noise = gaussian_noise(x.shape, self.sigma, rng, backend.dtype_name(x))
        return gaussian_noise_forward(x, noise)

    def _backward(self, dy, cache):
        return gaussian_noise_backward(dy, cache)

    def get_config(self):
        return {"sigma": self.sigma, "name": self.name}


class DropoutNoise(_Noise):
    """Inverted dropout of the input with keep probability ``keep_prob`` in training.

    The same operation as :class:`npdl.layers.Dropout` (``rate = 1 - keep_prob``),
    under TensorFlow 1's parameterisation, as Hands-On ML uses it to corrupt an
    autoencoder's input.
    """

    def __init__(self, keep_prob: float = 0.7, rng=None, name=None):
        super().__init__(rng, name)
        self.keep_prob = _check_probability(keep_prob, "DropoutNoise", "keep_prob", closed_low=False,
                                            closed_high=True)

    def _is_identity(self):
        return self.keep_prob == 1.0

    def _corrupt(self, x, rng):
        return dropout_forward(x, dropout_noise_mask(x.shape, self.keep_prob, rng, backend.dtype_name(x)))

    def _backward(self, dy, cache):
        return dropout_backward(dy, cache)

    def get_config(self):
        return {"keep_prob": self.keep_prob, "name": self.name}
