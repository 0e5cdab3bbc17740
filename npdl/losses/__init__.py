"""Losses (forward/backward pairs and loss objects), penalties and metrics."""

from .base import Loss
from .binary import (BinaryCrossEntropy, BinaryCrossEntropyWithLogits, bce_backward, bce_forward,
                     bce_logits_backward, bce_logits_forward)
from .cross_entropy import (NegativeLogLikelihood, SoftmaxCrossEntropy, nll_backward, nll_forward,
                            softmax_cross_entropy_backward, softmax_cross_entropy_forward)
from .metrics import accuracy, zero_one_error
from .penalties import (l1_penalty_backward, l1_penalty_forward, l2_penalty_backward, l2_penalty_forward,
                        regularized_weights)
from .regression import MeanSquaredError, mse_backward, mse_forward

LOSSES = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "nll": NegativeLogLikelihood,
    "mse": MeanSquaredError,
    "bce": BinaryCrossEntropy,
    "bce_logits": BinaryCrossEntropyWithLogits,
}


def get_loss(spec) -> Loss:
    """A loss object from a name in :data:`LOSSES` or a Loss instance."""
    if isinstance(spec, Loss):
        return spec
    try:
        return LOSSES[spec]()
    except KeyError:
        raise ValueError(f"unknown loss {spec!r}; choose one of {', '.join(LOSSES)}") from None
from .reconstruction import (RECONSTRUCTION_LOSSES, ReconstructionCrossEntropy,  # noqa: E402
                             ReconstructionCrossEntropyWithLogits, reconstruction_cross_entropy_backward,
                             reconstruction_cross_entropy_forward, reconstruction_cross_entropy_logits_backward,
                             reconstruction_cross_entropy_logits_forward)
LOSSES.update(RECONSTRUCTION_LOSSES)
