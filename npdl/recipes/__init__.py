"""Recipes: the classic models ``npdl train MODEL`` reproduces, each with its published setting.

A recipe says what to load, which network to build and how the original trained
it (optimizer, learning rate, batch size, epochs, early stopping). :mod:`.runner`
trains any recipe with checkpoints, resume, history and a final report, so the
command line, tests and examples all go through the same code.
"""

from .base import RECIPES, Recipe, get_recipe, register
from . import classic  # noqa: F401  (registers logreg, mlp, keras-mlp, regressor, and-gate)
from . import autoencoders  # noqa: F401,E402  (registers da, da-0, sda, homl-*, autoencoder2d)
from . import conv  # noqa: F401,E402  (registers lenet, network3, network3-2conv, network3-dropout, keras-cnn)
from . import recurrent  # noqa: F401,E402  (registers rnn-mnist, lstm-regressor)
from .runner import RunResult, train
