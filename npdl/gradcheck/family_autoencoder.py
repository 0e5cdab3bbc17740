"""Gradient-check cases for autoencoders, their corruption layers and reconstruction losses.

Tied cases cover the activation pairs the models use: sigmoid/sigmoid (the Theano dA),
tanh/tanh, elu/linear and elu/elu (Hands-On ML), relu/linear (a ReLU code, linear
output), linear/linear (PCA-like) and linear/sigmoid (a linear code). The tied ``dW``
is the sum of an encoder and a decoder term, so each case checks ``x``, ``W``, ``b``
and ``b_prime``.

ReLU and ELU have a kink at 0, and here the inputs to them are *pre-activations*
``x W + b`` and ``h W^T + b'``, which cannot be pushed away from 0 elementwise like an
activation's input. Instead ``make`` redraws (from the same seeded generator, so it is
still deterministic) until every kinked pre-activation is at least ``MARGIN`` (0.1) from
0: 10^5 times the finite-difference step, and far more than ``eps`` moves any of them.
"""

from __future__ import annotations

from .. import backend, layers as L, losses as F
from ..layers import autoencoder as AE
from .case import MARGIN, Case, named_grads

#: (encoder, decoder) pairs checked for the tied autoencoder; the first is the plain name
TIED_PAIRS = (("sigmoid", "sigmoid"), ("tanh", "tanh"), ("elu", "linear"), ("elu", "elu"),
              ("relu", "linear"), ("linear", "linear"), ("linear", "sigmoid"))
UNTIED_PAIRS = (("sigmoid", "sigmoid"), ("relu", "linear"))
KINKED = ("relu", "leaky_relu", "elu")
#: shapes: N examples, n_visible, n_hidden (not square, so a transposed dW cannot slip through)
N, V, H = 3, 5, 4
MAX_DRAWS = 200


def _suffix(encoder, decoder):
    return "" if (encoder, decoder) == TIED_PAIRS[0] else f"[{encoder}/{decoder}]"


def _clear_of_kinks(pre_activations, margin) -> bool:
    for a in pre_activations:
        xp = backend.namespace(a)
        if backend.to_float(xp.min(xp.abs(a))) < margin:
            return False
    return True


def _draw_clear(g, dtype, draw, pre_activations, kinked):
    """``draw(g, dtype)`` again and again until no kinked pre-activation is within MARGIN of 0."""
    for _ in range(MAX_DRAWS):
        inputs = draw(g, dtype)
        if not kinked or _clear_of_kinks(pre_activations(inputs, kinked), MARGIN):
            return inputs
    raise RuntimeError(f"no draw in {MAX_DRAWS} kept every pre-activation {MARGIN} away from the kink")


def _tied_make(encoder, decoder):
    def draw(g, d):
        return {"x": g.normal((N, V), dtype=d), "W": g.normal((V, H), std=0.5, dtype=d),
                "b": g.normal((H,), std=0.5, dtype=d), "b_prime": g.normal((V,), std=0.5, dtype=d)}

    def pre(inputs, kinked):
        a_enc = inputs["x"] @ inputs["W"] + inputs["b"]
        h = AE.AUTOENCODER_ACTIVATIONS[encoder][0](a_enc)[0]
        a_dec = h @ inputs["W"].T + inputs["b_prime"]
        return [a for a, act in ((a_enc, encoder), (a_dec, decoder)) if act in kinked]

    kinked = tuple(a for a in (encoder, decoder) if a in KINKED)
    return lambda g, d: _draw_clear(g, d, draw, pre, kinked)


def _untied_make(encoder, decoder):
    def draw(g, d):
        return {"x": g.normal((N, V), dtype=d), "W_enc": g.normal((V, H), std=0.5, dtype=d),
                "b": g.normal((H,), std=0.5, dtype=d), "W_dec": g.normal((H, V), std=0.5, dtype=d),
                "b_prime": g.normal((V,), std=0.5, dtype=d)}

    def pre(inputs, kinked):
        a_enc = inputs["x"] @ inputs["W_enc"] + inputs["b"]
        h = AE.AUTOENCODER_ACTIVATIONS[encoder][0](a_enc)[0]
        a_dec = h @ inputs["W_dec"] + inputs["b_prime"]
        return [a for a, act in ((a_enc, encoder), (a_dec, decoder)) if act in kinked]

    kinked = tuple(a for a in (encoder, decoder) if a in KINKED)
    return lambda g, d: _draw_clear(g, d, draw, pre, kinked)


#: (encoder, decoder, output) activations checked for the stacked tied autoencoder (Hands-On ML's is elu/elu/linear)
STACKED_ACTS = (("elu", "elu", "linear"), ("tanh", "tanh", "sigmoid"))
STACKED_SIZES = (5, 4, 3)


def _stacked_make(acts):
    names = ("x", "W0", "W1", "b0", "b1", "c0", "c1")

    def draw(g, d):
        (n0, n1, n2) = STACKED_SIZES
        return {"x": g.normal((N, n0), dtype=d), "W0": g.normal((n0, n1), std=0.5, dtype=d),
                "W1": g.normal((n1, n2), std=0.5, dtype=d), "b0": g.normal((n1,), std=0.5, dtype=d),
                "b1": g.normal((n2,), std=0.5, dtype=d), "c0": g.normal((n0,), std=0.5, dtype=d),
                "c1": g.normal((n1,), std=0.5, dtype=d)}

    def pre(inputs, kinked):
        enc, dec, out = acts
        f = AE.AUTOENCODER_ACTIVATIONS[enc][0]
        a0 = inputs["x"] @ inputs["W0"] + inputs["b0"]
        h1 = f(a0)[0]
        a1 = h1 @ inputs["W1"] + inputs["b1"]
        h2 = f(a1)[0]
        a2 = h2 @ inputs["W1"].T + inputs["c1"]
        r1 = AE.AUTOENCODER_ACTIVATIONS[dec][0](a2)[0]
        a3 = r1 @ inputs["W0"].T + inputs["c0"]
        return [a for a, act in ((a0, enc), (a1, enc), (a2, dec), (a3, out)) if act in kinked]

    kinked = tuple(a for a in acts if a in KINKED)
    return names, (lambda g, d: _draw_clear(g, d, draw, pre, kinked))


def cases():
    out = []
    for enc, dec in TIED_PAIRS:
        out.append(Case(
            "TiedAutoencoder" + _suffix(enc, dec), _tied_make(enc, dec), ("x", "W", "b", "b_prime"),
            lambda x, W, b, b_prime, e=enc, d=dec: L.tied_autoencoder_forward(x, W, b, b_prime, e, d),
            lambda dy, c: named_grads(("x", "W", "b", "b_prime"), L.tied_autoencoder_backward(dy, c)),
            options={"encoder": enc, "decoder": dec}))
    for enc, dec in UNTIED_PAIRS:
        names = ("x", "W_enc", "b", "W_dec", "b_prime")
        out.append(Case(
            "Autoencoder" + _suffix(enc, dec), _untied_make(enc, dec), names,
            lambda x, W_enc, b, W_dec, b_prime, e=enc, d=dec: L.autoencoder_forward(x, W_enc, b, W_dec, b_prime,
                                                                                    e, d),
            lambda dy, c, names=names: named_grads(names, L.autoencoder_backward(dy, c)),
            options={"encoder": enc, "decoder": dec}))
    for acts in STACKED_ACTS:
        names, make = _stacked_make(acts)
        out.append(Case(
            "StackedTiedAutoencoder" + ("" if acts == STACKED_ACTS[0] else f"[{'/'.join(acts)}]"), make, names,
            lambda x, W0, W1, b0, b1, c0, c1, a=acts: L.stacked_tied_forward(x, [W0, W1], [b0, b1], [c0, c1], *a),
            lambda dy, c, names=names: named_grads(names, _flat_stacked(L.stacked_tied_backward(dy, c))),
            options={"encoder": acts[0], "decoder": acts[1], "output": acts[2]}))
    out += [
        Case("MaskingNoise", lambda g, d: {"x": g.normal((4, 6), dtype=d), "mask": g.bernoulli((4, 6), 0.7, dtype=d)},
             ("x",), L.masking_noise_forward, lambda dy, c: {"x": L.masking_noise_backward(dy, c)}),
        Case("GaussianNoise", lambda g, d: {"x": g.normal((4, 6), dtype=d),
                                            "noise": g.normal((4, 6), std=0.3, dtype=d)},
             ("x",), L.gaussian_noise_forward, lambda dy, c: {"x": L.gaussian_noise_backward(dy, c)}),
        # probabilities in [0.05, 0.95], far inside the clip range; clean inputs in [0, 1]
        Case("ReconstructionCrossEntropy",
             lambda g, d: {"z": g.uniform((4, 6), 0.05, 0.95, dtype=d), "x": g.uniform((4, 6), dtype=d)},
             ("z",), lambda z, x: F.reconstruction_cross_entropy_forward(z, x),
             lambda dy, c: {"z": F.reconstruction_cross_entropy_backward(dy, c)}, group="loss"),
        Case("ReconstructionCrossEntropyWithLogits",
             lambda g, d: {"a": g.normal((4, 6), std=2.0, dtype=d), "x": g.uniform((4, 6), dtype=d)},
             ("a",), lambda a, x: F.reconstruction_cross_entropy_logits_forward(a, x),
             lambda dy, c: {"a": F.reconstruction_cross_entropy_logits_backward(dy, c)}, group="loss"),
    ]
    return out


def _flat_stacked(grads):
    dx, dWs, dbs, dcs = grads
    return (dx, *dWs, *dbs, *dcs)


# --------------------------------------------------------------------------- references

def _activations(where, exp, tanh, maximum):
    """Textbook activations in one library (sigmoid through exp, ELU through exp - 1)."""
    return {
        "sigmoid": lambda a: 1.0 / (1.0 + exp(-a)),
        "tanh": tanh,
        "relu": lambda a: maximum(a, 0.0),
        "leaky_relu": lambda a: where(a > 0, a, 0.01 * a),
        "elu": lambda a: where(a > 0, a, exp(a) - 1.0),
        "linear": lambda a: a,
    }


def _table(act, opt, log, sum_rows):
    f = act[opt.get("encoder", "sigmoid")]
    g = act[opt.get("decoder", "sigmoid")]
    sigmoid = act["sigmoid"]

    def xent(z, x):
        # the Theano dA: L = mean over examples of the cross-entropy summed over pixels
        per_example = -sum_rows(x * log(z) + (1.0 - x) * log(1.0 - z))
        return per_example.sum() / per_example.shape[0]

    return {
        "TiedAutoencoder": lambda x, W, b, b_prime: g(f(x @ W + b) @ W.T + b_prime),
        "Autoencoder": lambda x, W_enc, b, W_dec, b_prime: g(f(x @ W_enc + b) @ W_dec + b_prime),
        "StackedTiedAutoencoder": lambda x, W0, W1, b0, b1, c0, c1: act[opt.get("output", "linear")](
            g(f(f(x @ W0 + b0) @ W1 + b1) @ W1.T + c1) @ W0.T + c0),
        "MaskingNoise": lambda x, mask: x * mask,
        "GaussianNoise": lambda x, noise: x + noise,
        "ReconstructionCrossEntropy": xent,
        "ReconstructionCrossEntropyWithLogits": lambda a, x: xent(sigmoid(a), x),
    }


def jax_table(jnp, opt):
    act = _activations(jnp.where, jnp.exp, jnp.tanh, jnp.maximum)
    return _table(act, opt, jnp.log, lambda e: jnp.sum(e, axis=1))


def torch_table(torch, opt):
    act = _activations(torch.where, torch.exp, torch.tanh, lambda a, c: torch.clamp(a, min=c))
    return _table(act, opt, torch.log, lambda e: e.sum(dim=1))
