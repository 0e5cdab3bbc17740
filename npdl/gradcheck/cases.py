"""The gradient-check cases: one per (layer or loss, configuration).

A case names the npdl pure functions it checks and builds small random inputs on
a device. Inputs are chosen so that a check never fails by chance:

* ReLU, LeakyReLU, ELU and L1 inputs are pushed at least ``MARGIN`` away from the
  kink at 0 (``away_from_zero``), far more than the finite-difference step, so
  ``v +- eps`` never straddles it;
* probabilities fed to BCE lie in [0.05, 0.95], far inside the clip range
  [1e-7, 1 - 1e-7], where the clip is the identity;
* NLL's probabilities are a softmax of random logits (all > 0);
* Dropout's mask is an input (fixed while differentiating), as in ``dropout_forward``.

Each case's ``forward(**inputs) -> (y, cache)`` and ``backward(dy, cache) -> {name: grad}``
call the same functions the layers call during training. :class:`Case` itself and the input
helpers live in :mod:`.case`; the conv, recurrent and autoencoder families in ``family_*.py``.
"""

from __future__ import annotations

from .. import layers as L, losses as F
from . import family_autoencoder, family_conv, family_rnn
from .case import Case, away_from_zero, named_grads

#: case families kept in their own modules, each with ``cases()`` and its independent
#: references ``jax_table(jnp, opt)`` / ``torch_table(torch, opt)``
FAMILIES = (family_autoencoder, family_conv, family_rnn)


def _elementwise(name, fwd, bwd, kink=False, **kw):
    def make(g, dtype):
        x = g.normal((4, 6), dtype=dtype)
        return {"x": away_from_zero(x) if kink else x}

    return Case(name, make, ("x",), lambda x: fwd(x, **kw), lambda dy, c: {"x": bwd(dy, c)}, options=kw)


def _labels(g, n, k):
    return g.integers(0, k, (n,))


def _cases():
    cases = [
        Case("Dense", lambda g, d: {"x": g.normal((4, 5), dtype=d), "W": g.normal((5, 3), dtype=d),
                                    "b": g.normal((3,), dtype=d)},
             ("x", "W", "b"), L.dense_forward, lambda dy, c: named_grads(("x", "W", "b"), L.dense_backward(dy, c))),
        Case("Dense[no_bias]", lambda g, d: {"x": g.normal((3, 4), dtype=d), "W": g.normal((4, 2), dtype=d)},
             ("x", "W"), lambda x, W: L.dense_forward(x, W, None),
             lambda dy, c: named_grads(("x", "W"), L.dense_backward(dy, c))),
        # the activation applied inside the layer, the bias fused into it (bias_activation)
        *[Case(f"Dense[{act}]",
               lambda g, d: {"x": g.normal((4, 5), dtype=d), "W": g.normal((5, 3), dtype=d),
                             "b": g.normal((3,), dtype=d)},
               ("x", "W", "b"), lambda x, W, b, act=act: L.dense_forward(x, W, b, act),
               lambda dy, c: named_grads(("x", "W", "b"), L.dense_backward(dy, c)), options={"activation": act})
          for act in ("sigmoid", "tanh")],
        _elementwise("Sigmoid", L.sigmoid_forward, L.sigmoid_backward),
        _elementwise("Tanh", L.tanh_forward, L.tanh_backward),
        _elementwise("ReLU", L.relu_forward, L.relu_backward, kink=True),
        _elementwise("LeakyReLU", L.leaky_relu_forward, L.leaky_relu_backward, kink=True, alpha=0.1),
        _elementwise("ELU", L.elu_forward, L.elu_backward, kink=True, alpha=1.0),
        _elementwise("Softmax", L.softmax_forward, L.softmax_backward),
        Case("Dropout", lambda g, d: {"x": g.normal((4, 6), dtype=d),
                                      "mask": g.bernoulli((4, 6), 0.5, dtype=d) * 2.0},
             ("x",), L.dropout_forward, lambda dy, c: {"x": L.dropout_backward(dy, c)}),
        Case("Flatten", lambda g, d: {"x": g.normal((2, 3, 2, 2), dtype=d)},
             ("x",), L.flatten_forward, lambda dy, c: {"x": L.flatten_backward(dy, c)}),
        # ------------------------------------------------------------------ losses
        Case("SoftmaxCrossEntropy", lambda g, d: {"logits": g.normal((5, 4), dtype=d), "labels": _labels(g, 5, 4)},
             ("logits",), F.softmax_cross_entropy_forward,
             lambda dy, c: {"logits": F.softmax_cross_entropy_backward(dy, c)}, group="loss"),
        Case("NegativeLogLikelihood",
             lambda g, d: {"probs": L.softmax_forward(g.normal((5, 4), dtype=d))[0], "labels": _labels(g, 5, 4)},
             ("probs",), F.nll_forward, lambda dy, c: {"probs": F.nll_backward(dy, c)}, group="loss"),
    ]
    for reduction in ("mean", "batch_mean"):
        suffix = "" if reduction == "mean" else f"[{reduction}]"
        cases += [
            Case("MeanSquaredError" + suffix,
                 lambda g, d: {"pred": g.normal((4, 3), dtype=d), "target": g.normal((4, 3), dtype=d)},
                 ("pred",), lambda pred, target, r=reduction: F.mse_forward(pred, target, r),
                 lambda dy, c: {"pred": F.mse_backward(dy, c)}, group="loss", options={"reduction": reduction}),
            Case("BinaryCrossEntropyWithLogits" + suffix,
                 lambda g, d: {"z": g.normal((4, 3), std=2.0, dtype=d), "t": g.uniform((4, 3), dtype=d)},
                 ("z",), lambda z, t, r=reduction: F.bce_logits_forward(z, t, r),
                 lambda dy, c: {"z": F.bce_logits_backward(dy, c)}, group="loss", options={"reduction": reduction}),
            Case("BinaryCrossEntropy" + suffix,
                 lambda g, d: {"p": g.uniform((4, 3), 0.05, 0.95, dtype=d), "t": g.uniform((4, 3), dtype=d)},
                 ("p",), lambda p, t, r=reduction: F.bce_forward(p, t, r),
                 lambda dy, c: {"p": F.bce_backward(dy, c)}, group="loss", options={"reduction": reduction}),
        ]
    cases += [
        Case("L2Penalty", lambda g, d: {"W1": g.normal((3, 4), dtype=d), "W2": g.normal((4, 2), dtype=d)},
             ("W1", "W2"), lambda W1, W2: F.l2_penalty_forward([W1, W2], 0.3),
             lambda dy, c: named_grads(("W1", "W2"), F.l2_penalty_backward(dy, c)),
             group="penalty", options={"lam": 0.3}),
        Case("L1Penalty", lambda g, d: {"W1": away_from_zero(g.normal((3, 4), dtype=d)),
                                        "W2": away_from_zero(g.normal((4, 2), dtype=d))},
             ("W1", "W2"), lambda W1, W2: F.l1_penalty_forward([W1, W2], 0.3),
             lambda dy, c: named_grads(("W1", "W2"), F.l1_penalty_backward(dy, c)),
             group="penalty", options={"lam": 0.3}),
    ]
    for family in FAMILIES:
        cases += family.cases()
    return {c.name: c for c in cases}


CASES: dict[str, Case] = _cases()


def select(names=None) -> list[Case]:
    """The cases for ``names`` (case-insensitive; a bare name like ``mse`` or ``MeanSquaredError``
    selects all its variants). ``None`` selects every case."""
    if not names:
        return list(CASES.values())
    aliases = {"mse": "MeanSquaredError", "bce": "BinaryCrossEntropy", "nll": "NegativeLogLikelihood",
               "bce_logits": "BinaryCrossEntropyWithLogits", "softmax_cross_entropy": "SoftmaxCrossEntropy",
               "l1": "L1Penalty", "l2": "L2Penalty"}
    chosen = []
    for name in names:
        want = aliases.get(name.lower(), name).lower()
        found = [c for c in CASES.values() if c.name.lower() == want or c.name.lower().split("[")[0] == want]
        if not found:
            raise KeyError(f"no gradient check named {name!r}; known: {', '.join(CASES)}")
        chosen += [c for c in found if c not in chosen]
    return chosen
