"""Convolutional reproductions: Theano's LeNet, Nielsen's network3 nets and the Keras MNIST CNN.

All three read MNIST as NCHW images, (N, 1, 28, 28) in [0, 1]. Settings are the
originals' (see each ``published``); the conv-pool order of LeNet and network3
(convolve, max-pool, then add the bias and apply the activation) is
``Conv2D(bias=False) -> MaxPool2D -> ChannelBias -> activation``.
"""

from __future__ import annotations

import math

from ..datasets import load_mnist
from ..init import normal
from ..layers import ChannelBias, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Tanh
from ..models import Sequential
from ..optim import SGD, Adam
from .base import Recipe, register


def mnist_dlt_images(options) -> dict:
    """50,000 / 10,000 / 10,000 images (N, 1, 28, 28), the Theano tutorials' and Nielsen's split."""
    return load_mnist("dlt", data_dir=options.get("data_dir"), dtype=options.get("dtype", "float32"), flatten=False)


def mnist_keras_images(options) -> dict:
    """60,000 / 10,000 images (N, 1, 28, 28), as ``keras.datasets.mnist``."""
    return load_mnist("keras", data_dir=options.get("data_dir"), dtype=options.get("dtype", "float32"),
                      flatten=False)


def _conv_pool(c_in, c_out, options, device, rng, activation, init="glorot_uniform", bias_init=None):
    """convolve (no bias) -> 2x2 max-pool -> + per-channel bias -> activation, as LeNet and network3 order it."""
    dtype = options.get("dtype")
    bias = ChannelBias(c_out, dtype=dtype, device=device)
    if bias_init is not None:
        bias.params["b"][...] = bias_init(rng, (c_out,), dtype)
    return [Conv2D(c_in, c_out, 5, bias=False, init=init, dtype=dtype, device=device, rng=rng), MaxPool2D(2),
            bias, activation()]


# ---------------------------------------------------------------- Theano DeepLearningTutorials


def build_lenet(options, device, rng):
    """``convolutional_mlp.py``: nkerns (20, 50), 5x5 filters, 2x2 max-pooling, tanh; a 500-unit tanh
    layer (Glorot uniform); a zero-initialised logistic regression layer; NLL, plain SGD, no penalty."""
    dtype = options.get("dtype")
    layers = (_conv_pool(1, 20, options, device, rng, Tanh, init="lenet_conv")
              + _conv_pool(20, 50, options, device, rng, Tanh, init="lenet_conv")
              + [Flatten(), Dense(50 * 4 * 4, 500, dtype=dtype, device=device, rng=rng, activation="tanh"),
                 Dense(500, 10, init="zeros", dtype=dtype, device=device, rng=rng)])
    model = Sequential(layers, name="lenet")
    return model.compile("softmax_cross_entropy", SGD(lr=options["lr"]), metrics=["error"])


register(Recipe(
    "lenet", "Theano tutorial LeNet: conv 20 5x5-pool-tanh, conv 50 5x5-pool-tanh, 500 tanh, softmax",
    "DeepLearningTutorials convolutional_mlp.py: lr 0.1, batch 500, up to 200 epochs, patience 10000; "
    "best validation 0.91%, test 0.92% (380 min on a CPU, 32.5 min on a GTX 480)",
    mnist_dlt_images, build_lenet, epochs=200, batch_size=500, lr=0.1, shuffle=False, patience=10000,
    drop_last=True))


# ---------------------------------------------------------------- Nielsen, network3.py

#: Nielsen trains on 50,000 images in minibatches of 10
N3_TRAIN, N3_BATCH = 50000, 10


def _n3_l2(lmbda: float, batch_size: int = N3_BATCH) -> float:
    """network3.py adds ``0.5 * lmbda * sum(w**2) / num_training_batches`` to the minibatch's mean cost
    (``num_training_batches = 50000 / mini_batch_size``): npdl's ``l2`` coefficient on ``sum(w**2)``."""
    return 0.5 * lmbda / (N3_TRAIN / batch_size)


def _n3_bias(rng, shape, dtype):
    """network3.py's biases: N(0, 1)."""
    return rng.normal(shape, std=1.0, dtype=dtype)


def _n3_dense(n_in, n_out, options, device, rng, zero=False):
    """``FullyConnectedLayer``: w ~ N(0, 1/n_out), b ~ N(0, 1), ReLU here; ``SoftmaxLayer``: w = b = 0, linear."""
    dense = Dense(n_in, n_out, init="zeros" if zero else normal(math.sqrt(1.0 / n_out)),
                  dtype=options.get("dtype"), device=device, rng=rng, activation=None if zero else "relu")
    if not zero:
        dense.params["b"][...] = _n3_bias(rng, (n_out,), options.get("dtype"))
    return dense


def _n3_conv_pool(c_in, c_out, options, device, rng):
    """``ConvPoolLayer``: w ~ N(0, 1/n_out) with ``n_out = c_out * 5 * 5 / 4``, b ~ N(0, 1); ReLU here."""
    return _conv_pool(c_in, c_out, options, device, rng, ReLU, init=normal(math.sqrt(4.0 / (c_out * 25))),
                      bias_init=_n3_bias)


def build_network3(options, device, rng):
    """The chapter 6 walkthrough's net: conv-pool 20 5x5 ReLU, FC 100 ReLU, softmax; L2 lmbda 0.1."""
    layers = (_n3_conv_pool(1, 20, options, device, rng)
              + [Flatten(), _n3_dense(20 * 12 * 12, 100, options, device, rng),
                 _n3_dense(100, 10, options, device, rng, zero=True)])
    model = Sequential(layers, name="network3")
    return model.compile("softmax_cross_entropy", SGD(lr=options["lr"]), metrics=["accuracy"],
                         l2=_n3_l2(0.1, options["batch_size"]))


def build_network3_2conv(options, device, rng):
    """The book's best plain net: conv-pool 20 and conv-pool 40 (5x5, ReLU), FC 100 ReLU, softmax; L2 0.1."""
    layers = (_n3_conv_pool(1, 20, options, device, rng) + _n3_conv_pool(20, 40, options, device, rng)
              + [Flatten(), _n3_dense(40 * 4 * 4, 100, options, device, rng),
                 _n3_dense(100, 10, options, device, rng, zero=True)])
    model = Sequential(layers, name="network3-2conv")
    return model.compile("softmax_cross_entropy", SGD(lr=options["lr"]), metrics=["accuracy"],
                         l2=_n3_l2(0.1, options["batch_size"]))


def build_network3_dropout(options, device, rng):
    """The book's dropout net (without the expanded data): two conv-pool layers (20, 40, ReLU), then
    dropout 0.5 on the input of each fully connected layer: FC 1000 ReLU, FC 1000 ReLU, softmax; no L2."""
    def drop():
        return Dropout(0.5, rng=rng)

    layers = (_n3_conv_pool(1, 20, options, device, rng) + _n3_conv_pool(20, 40, options, device, rng)
              + [Flatten(), drop(), _n3_dense(40 * 4 * 4, 1000, options, device, rng),
                 drop(), _n3_dense(1000, 1000, options, device, rng),
                 drop(), _n3_dense(1000, 10, options, device, rng, zero=True)])
    model = Sequential(layers, name="network3-dropout")
    return model.compile("softmax_cross_entropy", SGD(lr=options["lr"]), metrics=["accuracy"])


#: network3 reports the test accuracy of the epoch with the best validation accuracy; the patience
#: rule with a patience it never reaches validates once an epoch and records exactly that
NEVER = 10 ** 12

register(Recipe(
    "network3", "Nielsen network3: conv-pool 20 5x5 ReLU, FC 100 ReLU, softmax, L2 0.1",
    "neuralnetworksanddeeplearning.com ch. 6 (network3.py): 60 epochs, batch 10, lr 0.05, lmbda 0.1; "
    "test accuracy at the best validation epoch 'nearly 99%' (98.78% with sigmoid, 99.06% with ReLU)",
    mnist_dlt_images, build_network3, epochs=60, batch_size=N3_BATCH, lr=0.05, patience=NEVER))

register(Recipe(
    "network3-2conv", "Nielsen network3: conv-pool 20, conv-pool 40 (5x5 ReLU), FC 100 ReLU, softmax, L2 0.1",
    "neuralnetworksanddeeplearning.com ch. 6: 60 epochs, batch 10, lr 0.03, lmbda 0.1, ReLU; "
    "test accuracy 99.23% at the best validation epoch",
    mnist_dlt_images, build_network3_2conv, epochs=60, batch_size=N3_BATCH, lr=0.03, patience=NEVER))

register(Recipe(
    "network3-dropout", "Nielsen network3: 2 conv-pool, dropout 0.5 on FC 1000-1000 ReLU, softmax",
    "neuralnetworksanddeeplearning.com ch. 6: 40 epochs, batch 10, lr 0.03, dropout 0.5 on the fully "
    "connected layers; 99.60% with the expanded (shifted) training data, which this recipe does not use",
    mnist_dlt_images, build_network3_dropout, epochs=40, batch_size=N3_BATCH, lr=0.03, patience=NEVER))


# ---------------------------------------------------------------- Keras / TensorFlow tutorial


def build_keras_cnn(options, device, rng):
    """Conv2D(32, 5, 'same', relu), MaxPooling2D(2, 2, 'same'), Conv2D(64, 5, 'same', relu),
    MaxPooling2D(2, 2, 'same'), Dense(1024, relu), Dense(10, softmax); Glorot-uniform weights, zero biases
    (Keras's defaults); categorical cross-entropy (fused with the softmax here), Adam(1e-4)."""
    dtype = options.get("dtype")
    layers = [Conv2D(1, 32, 5, padding="same", dtype=dtype, device=device, rng=rng, activation="relu"),
              MaxPool2D(2, 2, "same"),
              Conv2D(32, 64, 5, padding="same", dtype=dtype, device=device, rng=rng, activation="relu"),
              MaxPool2D(2, 2, "same"),
              Flatten(), Dense(64 * 7 * 7, 1024, dtype=dtype, device=device, rng=rng, activation="relu"),
              Dense(1024, 10, dtype=dtype, device=device, rng=rng)]
    model = Sequential(layers, name="keras-cnn")
    return model.compile("softmax_cross_entropy", Adam(lr=options["lr"]), metrics=["accuracy"])


register(Recipe(
    "keras-cnn", "Keras CNN: conv 32 5x5 same, pool, conv 64 5x5 same, pool, 1024 relu, softmax",
    "Keras/TensorFlow MNIST CNN tutorial: Adam lr 1e-4, batch 64, 1 epoch on 60,000 images; "
    "test accuracy 96.91% (557 s)", mnist_keras_images, build_keras_cnn, epochs=1, batch_size=64, lr=1e-4))
