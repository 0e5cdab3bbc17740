"""Layers: each file holds a layer's pure forward/backward functions next to its class."""

from .activations import (ACTIVATIONS, ELU, Activation, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, elu_backward,
                          elu_forward, get_activation, leaky_relu_backward, leaky_relu_forward, relu_backward,
                          relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward,
                          tanh_backward, tanh_forward)
from .base import LAYERS, Layer, layer_from_config
from .dense import Dense, dense_backward, dense_forward
from .dropout import Dropout, dropout_backward, dropout_forward
from .reshape import Flatten, flatten_backward, flatten_forward
