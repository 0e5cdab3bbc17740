"""The first reproductions: Theano tutorials' logistic regression and MLP, Keras's
dense classifier and linear regressor, and the AND gate.

Settings are the originals' (see each ``published``); only the data loading and
the layer objects are npdl's.
"""

from __future__ import annotations

from ..datasets import and_gate, linear_regression, load_mnist
from ..layers import Dense
from ..models import Sequential
from ..optim import SGD, RMSprop
from .base import Recipe, register


def mnist_dlt(options) -> dict:
    """50,000 / 10,000 / 10,000, as the Theano tutorials split ``mnist.pkl.gz``."""
    return load_mnist("dlt", data_dir=options.get("data_dir"), dtype=options.get("dtype", "float32"))


def mnist_keras(options) -> dict:
    """60,000 / 10,000, as ``keras.datasets.mnist``."""
    return load_mnist("keras", data_dir=options.get("data_dir"), dtype=options.get("dtype", "float32"))


def _dense(n_in, n_out, options, device, rng, init_name="glorot_uniform", activation=None):
    return Dense(n_in, n_out, init=init_name, dtype=options.get("dtype"), device=device, rng=rng,
                 activation=activation)


# ---------------------------------------------------------------- Theano DeepLearningTutorials


def build_logreg(options, device, rng):
    """``logistic_sgd.py``: W and b start at zero; NLL of the softmax, minibatch SGD."""
    model = Sequential([_dense(784, 10, options, device, rng, "zeros")], name="logreg")
    return model.compile("softmax_cross_entropy", SGD(lr=options["lr"]), metrics=["error"])


def build_mlp(options, device, rng):
    """``mlp.py``: tanh hidden layer with W ~ U(+-sqrt(6 / (n_in + n_out))) (Glorot), a zero-initialised
    logistic-regression layer on top, cost = NLL + 0.0 * L1 + 1e-4 * L2_sqr over both weight matrices."""
    model = Sequential([_dense(784, 500, options, device, rng, activation="tanh"),
                        _dense(500, 10, options, device, rng, "zeros")], name="mlp")
    return model.compile("softmax_cross_entropy", SGD(lr=options["lr"]), metrics=["error"], l2=1e-4)


register(Recipe(
    "logreg", "Theano tutorial logistic regression, 784-10 softmax",
    "DeepLearningTutorials logistic_sgd.py: lr 0.13, batch 600, patience 5000; best validation 7.50%, "
    "test 7.49%", mnist_dlt, build_logreg, epochs=1000, batch_size=600, lr=0.13, shuffle=False, patience=5000,
    drop_last=True))

register(Recipe(
    "mlp", "Theano tutorial MLP, 784-500-10 tanh, L2 1e-4",
    "DeepLearningTutorials mlp.py: lr 0.01, batch 20, L2 1e-4, patience 10000; best validation 1.69%, "
    "test 1.65%", mnist_dlt, build_mlp, epochs=1000, batch_size=20, lr=0.01, shuffle=False, patience=10000,
    drop_last=True))


# ---------------------------------------------------------------- Keras tutorials


def build_keras_mlp(options, device, rng):
    """Keras "getting started" classifier: Dense(32) relu, Dense(10) softmax, RMSprop(0.001),
    categorical cross-entropy (here fused with the softmax on logits: the same function)."""
    model = Sequential([_dense(784, 32, options, device, rng, activation="relu"),
                        _dense(32, 10, options, device, rng)], name="keras-mlp")
    return model.compile("softmax_cross_entropy", RMSprop(lr=options["lr"]), metrics=["accuracy"])


def regression_data(options) -> dict:
    """200 points of y = 0.5 x + 2 + N(0, 0.05^2); the first 160 train, the last 40 test."""
    x, y = linear_regression(dtype=options.get("dtype", "float32"))
    return {"train": (x[:160], y[:160]), "test": (x[160:], y[160:])}


def build_regressor(options, device, rng):
    """Keras regressor tutorial: one Dense(1) unit, MSE, SGD (Keras's default lr 0.01)."""
    model = Sequential([_dense(1, 1, options, device, rng)], name="regressor")
    return model.compile("mse", SGD(lr=options["lr"]))


register(Recipe(
    "keras-mlp", "Keras dense classifier, 784-32 relu-10 softmax",
    "Keras tutorial: RMSprop lr 0.001, batch 32, 2 epochs on 60,000 images; test accuracy about 95%",
    mnist_keras, build_keras_mlp, epochs=2, batch_size=32, lr=0.001))

register(Recipe(
    "regressor", "Keras linear regressor, Dense(1) on y = 0.5 x + 2 + noise",
    "Keras regressor tutorial: 301 full-batch SGD steps on 160 points; W -> 0.5, b -> 2",
    regression_data, build_regressor, epochs=301, batch_size=160, lr=0.01, classifier=False, shuffle=False))


# ---------------------------------------------------------------- Nielsen


def and_data(options) -> dict:
    x, y = and_gate(dtype=options.get("dtype", "float32"))
    return {"train": (x, y), "test": (x, y)}


def build_and_gate(options, device, rng):
    """Two inputs, a softmax over {0, 1}: one linear layer separates AND (it is linearly separable)."""
    model = Sequential([_dense(2, 2, options, device, rng, "normal(1.0)")], name="and-gate")
    return model.compile("softmax_cross_entropy", SGD(lr=options["lr"]), metrics=["error"])


register(Recipe(
    "and-gate", "the AND gate, 2-2 softmax",
    "Nielsen's perceptron example: AND of two bits, learned exactly (error 0)",
    and_data, build_and_gate, epochs=500, batch_size=4, lr=1.0, shuffle=False))
