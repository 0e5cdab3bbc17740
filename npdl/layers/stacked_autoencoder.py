r"""A deep tied autoencoder trained end to end (Hands-On ML's stacked autoencoder with tied weights).

Widths ``sizes = (n_0, n_1, ..., n_L)``; weights ``W_k`` (n_k, n_{k+1}), encoder biases ``b_k``
(n_{k+1},), decoder biases ``c_k`` (n_k,). The encoder goes up, $h_{k+1} = f(h_k W_k + b_k)$
from $h_0 = x$; the decoder comes back down with the *same* weights transposed,
$r_k = g_k(r_{k+1} W_k^\top + c_k)$ from $r_L = h_L$, and the output is $z = r_0$. Each
``W_k`` is used twice, so its gradient is the sum of the encoder's and the decoder's shares,
as for the one-level :class:`npdl.layers.TiedAutoencoder` (derived in
:mod:`npdl.layers.autoencoder`).
"""

from __future__ import annotations

from .. import backend, checks
from ..init import get_initializer, initializer_name
from .autoencoder import _act, _default_init, check_activation, tied_autoencoder_encode
from .base import Layer
from .dense import Dense


# --------------------------------------------------------------- stacked, tied: functions

def stacked_tied_forward(x, Ws, bs, cs, encoder_act="elu", decoder_act="elu", output_act="linear"):
    r"""A symmetric stacked autoencoder whose decoder reuses the encoder's weights, transposed.

    ``Ws[k]`` (n_k, n_{k+1}), ``bs[k]`` (n_{k+1},) encode, ``cs[k]`` (n_k,) decode:

    * encoder $h_{k+1} = f(h_k W_k + b_k)$ for k = 0 .. L-1, from $h_0 = x$ (N, n_0);
    * decoder $r_k = g_k(r_{k+1} W_k^\top + c_k)$ for k = L-1 .. 0, from $r_L = h_L$, with
      $g_k$ = ``decoder_act`` for k > 0 and ``output_act`` for the output $z = r_0$.

    With L = 1 this is :func:`tied_autoencoder_forward`. Hands-On ML's 784-300-150-300-784 is
    ``Ws = [W1 (784, 300), W2 (300, 150)]``, ELU everywhere but a linear output. Returns ``z``
    and the cache ``(Ws, enc, dec, acts)``: ``enc[k] = (h_k, cache of f)``, ``dec[k] = (r_{k+1},
    cache of g_k)``.
    """
    L = len(Ws)
    enc, dec = [None] * L, [None] * L
    h = x
    for k in range(L):
        h_next, c = _act(encoder_act)[0](h @ Ws[k], bias=bs[k], overwrite=True)
        enc[k] = (h, c)
        h = h_next
    r = h
    for k in range(L - 1, -1, -1):
        a = backend.row_major((Ws[k] @ r.T).T)  # r W_k^T, read as W_k r^T (see tied_autoencoder_forward)
        r_next, c = _act(output_act if k == 0 else decoder_act)[0](a, bias=cs[k], overwrite=True)
        dec[k] = (r, c)
        r = r_next
    return r, (Ws, enc, dec, (encoder_act, decoder_act, output_act))


def stacked_tied_backward(dz, cache, need_dx=True):
    r"""Gradients of :func:`stacked_tied_forward`, given ``dz`` (N, n_0).

    The decoder is walked first, from the output up: at level k,
    $dA = dr_k \odot g_k'$ (N, n_k), $dc_k = \sum_{n} dA$, the decoder's share of $dW_k$ is
    $dA^\top r_{k+1}$ (n_k, n_{k+1}) (as in :func:`tied_autoencoder_backward`, already W's
    shape) and $dr_{k+1} = dA W_k$. At the code $r_L = h_L$ the gradient turns into the
    encoder's, walked down: $dA = dh_{k+1} \odot f'$, $db_k = \sum_{n} dA$, the encoder's share
    $h_k^\top dA$ is *added* to $dW_k$ (each $W_k$ is used twice), $dh_k = dA W_k^\top$.

    Returns ``(dx, dWs, dbs, dcs)``; ``dx`` is None with ``need_dx=False``.
    """
    Ws, enc, dec, (encoder_act, decoder_act, output_act) = cache
    xp = backend.namespace(dz, Ws[0])
    L = len(Ws)
    dWs, dbs, dcs = [None] * L, [None] * L, [None] * L
    g = dz
    for k in range(L):
        r_in, c = dec[k]
        dA = _act(output_act if k == 0 else decoder_act)[1](g, c)
        dcs[k] = xp.sum(dA, axis=0)
        dWs[k] = dA.T @ r_in
        g = dA @ Ws[k]
    for k in range(L - 1, -1, -1):
        h_in, c = enc[k]
        dA = _act(encoder_act)[1](g, c)
        dbs[k] = xp.sum(dA, axis=0)
        dWs[k] += h_in.T @ dA
        g = dA @ Ws[k].T if (k > 0 or need_dx) else None
    return g, dWs, dbs, dcs


class StackedTiedAutoencoder(Layer):
    """A stacked autoencoder with tied weights, e.g. Hands-On ML's 784-300-150-300-784.

    ``sizes = (n_0, n_1, ..., n_L)`` are the encoder's widths (784, 300, 150); the decoder
    mirrors them with the transposed weights. Parameters ``W0 .. W{L-1}`` (weights, for
    L1/L2), encoder biases ``b0 ..`` and decoder biases ``c0 ..`` (``c0`` is the output's).
    ``encoder`` and ``decoder`` activations (default ELU, He init) and a ``"linear"``
    ``output``. :meth:`encode` gives the codes ``h_L``; :meth:`encoder_layers` gives
    ``Dense(activation=encoder)`` layers holding copies of the encoder's weights (for a classifier on top).
    """

    def __init__(self, sizes, encoder="elu", decoder=None, output="linear", init=None, dtype=None,
                 device="cpu", rng=None, name: str | None = None):
        super().__init__(name)
        self.sizes = tuple(int(s) for s in sizes)
        if len(self.sizes) < 2 or min(self.sizes) <= 0:
            raise ValueError(f"StackedTiedAutoencoder: sizes must be >= 2 positive widths, got {sizes}")
        self.encoder = check_activation(encoder, "StackedTiedAutoencoder")
        self.decoder = check_activation(self.encoder if decoder is None else decoder, "StackedTiedAutoencoder")
        self.output = check_activation(output, "StackedTiedAutoencoder")
        self.init = get_initializer(_default_init(self.encoder) if init is None else init)
        self.dtype = backend.resolve_float(dtype)
        device = backend.get_device(device)
        rng = rng if rng is not None else backend.default_generator(device)
        L = len(self.sizes) - 1
        for k in range(L):
            n_in, n_out = self.sizes[k], self.sizes[k + 1]
            self.params[f"W{k}"] = device.asarray(self.init(rng, (n_in, n_out), n_in, n_out, self.dtype))
        for k in range(L):
            self.params[f"b{k}"] = device.zeros((self.sizes[k + 1],), self.dtype)
        for k in range(L):
            self.params[f"c{k}"] = device.zeros((self.sizes[k],), self.dtype)
        self.weight_names = tuple(f"W{k}" for k in range(L))

    @property
    def depth(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    def _lists(self):
        p, L = self.params, self.depth
        return [p[f"W{k}"] for k in range(L)], [p[f"b{k}"] for k in range(L)], [p[f"c{k}"] for k in range(L)]

    def _check_input(self, x, width=None, what="input"):
        who = f"StackedTiedAutoencoder({'-'.join(map(str, self.sizes))}) '{self.name}'"
        checks.check_float(x, who, what, dtype=self.dtype)
        checks.check_rank(x, 2, who, what, layout="(batch, features)")
        checks.check_dim(x, 1, self.sizes[0] if width is None else width, who, what)
        checks.check_same_device(x, self.params["W0"], who, what)

    def forward(self, x, training=False):
        self._check_input(x)
        Ws, bs, cs = self._lists()
        z, self.cache = stacked_tied_forward(x, Ws, bs, cs, self.encoder, self.decoder, self.output)
        return z

    def backward(self, dz):
        dx, dWs, dbs, dcs = stacked_tied_backward(dz, self.cache, self.need_input_grad)
        for k in range(self.depth):
            self.grads[f"W{k}"], self.grads[f"b{k}"], self.grads[f"c{k}"] = dWs[k], dbs[k], dcs[k]
        return dx

    def encode(self, x):
        """The codes ``h_L`` (N, sizes[-1]); keeps no cache."""
        self._check_input(x)
        h = x
        for k in range(self.depth):
            h = tied_autoencoder_encode(h, self.params[f"W{k}"], self.params[f"b{k}"], self.encoder)
        return h

    def encoder_layers(self, levels=None, rng=None) -> list:
        """``levels`` layers ``Dense(activation=encoder)`` computing the first ``levels`` encoder maps, with
        *copies* of this layer's weights (every classifier starts from the same pretrained values)."""
        levels = self.depth if levels is None else int(levels)
        out = []
        for k in range(levels):
            dense = Dense(self.sizes[k], self.sizes[k + 1], init="zeros", dtype=self.dtype, device=self.device,
                          rng=rng or backend.Generator(self.device, 0), name=f"{self.name}_dense{k}",
                          activation=self.encoder)
            dense.params["W"][...] = self.params[f"W{k}"]
            dense.params["b"][...] = self.params[f"b{k}"]
            out.append(dense)
        return out

    def output_shape(self, input_shape):
        return (self.sizes[0],)

    def work(self, input_shape, need_input_grad=True, dtype=None) -> dict:
        """FLOPs of :func:`stacked_tied_forward` and :func:`stacked_tied_backward` on ``input_shape`` (N, n_0)
        and what the cache keeps (:mod:`npdl.bench.work`); ``P_k = N n_k n_{k+1}``. Forward, per level:
        the encoder's and the decoder's products (2 P_k each), biases and activations per element.
        Backward, per level: the decoder's slope, ``dc_k``, its share of ``dW_k`` and ``dr`` (2 P_k each);
        the encoder's slope, ``db_k``, its share of ``dW_k`` (2 P_k) added in (n_k n_{k+1}) and ``dh``
        (2 P_k, not below the first level of a first layer). The cache keeps ``x``, every ``h_k`` and
        ``r_k`` above the output, the output as its activation needs, and the masks of leaky ReLU and ELU."""
        from .activations import ELEMENTWISE_WORK

        N, n, L = int(input_shape[0]), self.sizes, len(self.sizes) - 1
        enc_fwd, enc_bwd, _, enc_mask = ELEMENTWISE_WORK[self.encoder]
        forward = backward = kept = 0
        for k in range(L):
            P = N * n[k] * n[k + 1]
            dec_fwd, dec_bwd, _, dec_mask = ELEMENTWISE_WORK[self.output if k == 0 else self.decoder]
            forward += 4 * P + N * n[k + 1] * (1 + enc_fwd) + N * n[k] * (1 + dec_fwd)
            backward += N * n[k] * (dec_bwd + 1) + 4 * P + N * n[k + 1] * (enc_bwd + 1) + 2 * P + n[k] * n[k + 1]
            backward += 2 * P if (k > 0 or need_input_grad) else 0
            kept += N * n[k + 1] * enc_mask + N * n[k] * dec_mask
        item = 8 if self.dtype == "float64" else 4
        kept += item * N * (sum(n[1:]) + sum(n[1:-1]))
        return {"forward": forward, "backward": backward, "keeps_input": True,
                "keeps_output": ELEMENTWISE_WORK[self.output][2], "kept_bytes": kept}

    def get_config(self):
        return {"sizes": list(self.sizes), "encoder": self.encoder, "decoder": self.decoder, "output": self.output,
                "init": initializer_name(self.init), "dtype": self.dtype, "name": self.name}
