"""Tiny data sets from the classic first examples, made in memory.

* :func:`and_gate` -- the four rows of the logical AND truth table, the
  smallest linearly separable problem a single perceptron learns (Michael
  Nielsen, *Neural Networks and Deep Learning*, ch. 1: "we can use perceptrons
  to compute simple logical functions, such as AND, OR, and NAND").
* :func:`linear_regression` -- the noisy line of the Keras regressor tutorial
  (Morvan Zhou, ``kerasTUT/4-regressor_example.py``)::

      np.random.seed(1337)
      X = np.linspace(-1, 1, 200)
      np.random.shuffle(X)
      Y = 0.5 * X + 2 + np.random.normal(0, 0.05, (200, ))

  With ``seed=1337`` and the defaults it reproduces the tutorial's numbers exactly;
  the tutorial then trains on the first 160 points and tests on the last 40.
"""

from __future__ import annotations

import numpy as np

from ..backend import resolve_float


def and_gate(dtype="float32"):
    """``x`` (4, 2) of 0/1 inputs in ``dtype``, ``y`` (4,) int64: 1 only where both inputs are 1."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=resolve_float(dtype))
    y = np.array([0, 0, 0, 1], dtype=np.int64)
    return x, y


def linear_regression(n=200, slope=0.5, intercept=2.0, noise=0.05, seed=0, dtype="float32"):
    """``x`` (n, 1) evenly spaced on [-1, 1] then shuffled, ``y = slope * x + intercept + N(0, noise^2)``, (n, 1).

    Drawn with NumPy's legacy ``RandomState(seed)`` (shuffle, then normal) in
    float64 and cast to ``dtype`` at the end, the same draws as the tutorial's
    global ``np.random`` calls.
    """
    dtype = resolve_float(dtype)
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive whole number of points, got {n!r}")
    if noise < 0:
        raise ValueError(f"noise is a standard deviation and cannot be negative, got {noise!r}")
    rng = np.random.RandomState(seed)
    x = np.linspace(-1, 1, int(n))
    rng.shuffle(x)
    y = slope * x + intercept + rng.normal(0, noise, (int(n),))
    return x.reshape(-1, 1).astype(dtype), y.reshape(-1, 1).astype(dtype)
