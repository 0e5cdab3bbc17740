"""The toy problems of the classic first examples: the AND gate and the Keras tutorial's noisy line."""

import numpy as np
import pytest

from npdl.datasets import and_gate, linear_regression


def test_and_gate():
    x, y = and_gate()
    assert x.shape == (4, 2) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.logical_and(x[:, 0], x[:, 1]))
    assert and_gate("float64")[0].dtype == np.float64


def test_linear_regression_reproduces_the_keras_tutorial():
    x, y = linear_regression(seed=1337, dtype="float64")
    np.random.seed(1337)  # the tutorial, verbatim (it uses the global generator)
    X = np.linspace(-1, 1, 200)
    np.random.shuffle(X)
    Y = 0.5 * X + 2 + np.random.normal(0, 0.05, (200, ))
    np.testing.assert_array_equal(x[:, 0], X)
    np.testing.assert_array_equal(y[:, 0], Y)


def test_linear_regression_shapes_and_fit():
    x, y = linear_regression()
    assert x.shape == (200, 1) and y.shape == (200, 1) and x.dtype == y.dtype == np.float32
    np.testing.assert_array_equal(np.sort(x[:, 0]), np.linspace(-1, 1, 200).astype(np.float32))
    slope, intercept = np.polyfit(x[:, 0], y[:, 0], 1)
    assert abs(slope - 0.5) < 0.03 and abs(intercept - 2.0) < 0.02
    np.testing.assert_array_equal(linear_regression()[1], y)  # seeded: the same every time
    x2, y2 = linear_regression(n=10, slope=-1.0, intercept=0.0, noise=0.0)
    np.testing.assert_allclose(y2, -x2)
    with pytest.raises(ValueError, match="positive whole number"):
        linear_regression(n=0)
