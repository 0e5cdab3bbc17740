"""Layers: each file holds a layer's pure forward/backward functions next to its class."""

from .activations import (ACTIVATIONS, ELU, Activation, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, elu_backward,
                          elu_forward, get_activation, leaky_relu_backward, leaky_relu_forward, relu_backward,
                          relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward,
                          tanh_backward, tanh_forward)
from .base import LAYERS, Layer, layer_from_config
from .dense import Dense, dense_backward, dense_forward
from .dropout import Dropout, dropout_backward, dropout_forward
from .reshape import Flatten, flatten_backward, flatten_forward
from .autoencoder import (AUTOENCODER_ACTIVATIONS, Autoencoder, TiedAutoencoder, autoencoder_backward,
                          autoencoder_forward, linear_backward, linear_forward, share_params,
                          tied_autoencoder_backward, tied_autoencoder_encode, tied_autoencoder_forward)
from .autoencoder import tied_autoencoder_backward_products
from .stacked_autoencoder import StackedTiedAutoencoder, stacked_tied_backward, stacked_tied_forward
from .noise import (DropoutNoise, GaussianNoise, MaskingNoise, corrupt_dropout, corrupt_gaussian, corrupt_masking,
                    gaussian_noise_backward, gaussian_noise_forward, masking_noise_backward, masking_noise_forward)
from .conv import Conv2D, conv2d_backward, conv2d_forward
from .bias import ChannelBias, channel_bias_backward, channel_bias_forward
from .pooling import (AvgPool2D, MaxPool2D, avgpool2d_backward, avgpool2d_forward, maxpool2d_backward,
                      maxpool2d_forward)
from .simple_rnn import RNN_ACTIVATIONS, SimpleRNN, simple_rnn_backward, simple_rnn_forward
from .lstm import LSTM, lstm_backward, lstm_forward
from .wrappers import TimeDistributed, time_distributed_dense_backward, time_distributed_dense_forward
