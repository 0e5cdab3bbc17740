"""Autoencoder recipes, one module per source: the Theano dA (:mod:`.theano_da`) and SdA
(:mod:`.theano_sda`), Hands-On ML chapter 15 (:mod:`.homl`), the Keras 2-D autoencoder
(:mod:`.keras_2d`); :mod:`.common` holds what they share.

Every recipe here trains on inputs as their own targets (``fit(x, x)``) or in several
phases (pretraining, then a classifier), so each has its own ``run`` (see
:class:`npdl.recipes.Recipe`). Results: the reconstruction cost is ``train_loss`` (and
``extra["reconstruction_cost"]``), the clean test reconstruction cost ``test_loss``; the
SdA and the pretrained classifiers report ``valid_error`` / ``test_error``. With ``out``,
pictures go there as PNG files when matplotlib is installed (skipped otherwise); each
module's docstring lists its own.

Single-phase recipes write ``history.csv``, ``checkpoint.npz`` and ``model.npz`` and resume
like any recipe. The ``sda`` (the long one: over an hour at batch 1) also resumes, from any
epoch of either phase. The short multi-phase ones (``homl-ae-1at1``, ``homl-pretrain``) write
``history.csv`` and ``model.npz`` of their last phase and do not resume.

Importing this package registers ``da``, ``da-0``, ``sda``, ``homl-*`` and ``autoencoder2d``.
"""

# each registers its recipes, in the registry's order: dA, SdA, Hands-On ML, Keras
from . import theano_da, theano_sda, homl, keras_2d  # noqa: F401
from .theano_da import maximize_activation

__all__ = ["maximize_activation"]
