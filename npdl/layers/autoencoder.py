r"""Autoencoders: tied weights (the Theano dA, Hands-On ML) and untied, for comparison.

A tied autoencoder has one weight matrix ``W`` (n_visible, n_hidden) and two biases:

* encoder $h = f(\tilde{x} W + b)$:      (N, n_visible) @ (n_visible, n_hidden) -> (N, n_hidden),
* decoder $z = g(h W^\top + b')$:    (N, n_hidden) @ (n_hidden, n_visible) -> (N, n_visible),

where $\tilde{x}$ (``x_tilde``) is the (possibly corrupted, see :mod:`npdl.layers.noise`) input and the
reconstruction ``z`` is scored against the *clean* input by a loss from
:mod:`npdl.losses.reconstruction`. ``f`` and ``g`` are any of ``"sigmoid"``, ``"tanh"``,
``"relu"``, ``"leaky_relu"`` (alpha 0.01), ``"elu"`` (alpha 1) and ``"linear"``, and reuse the
forward/backward pairs of :mod:`npdl.layers.activations`. Common choices:

* ``sigmoid`` / ``sigmoid`` with the summed cross-entropy: the Theano denoising autoencoder;
* ``sigmoid`` / ``linear`` with the fused cross-entropy on logits: the same model, stable;
* ``elu`` / ``linear`` with MSE: Hands-On ML's tied autoencoder;
* ``linear`` / ``linear`` with MSE: an undercomplete linear autoencoder (it finds PCA's subspace).

A deep tied autoencoder (Hands-On ML's stacked one, trained end to end) is
:class:`npdl.layers.stacked_autoencoder.StackedTiedAutoencoder`. Stacked denoising
autoencoders (the Theano SdA) instead pretrain each ``TiedAutoencoder`` and then
use *the same arrays* as the hidden layers of an MLP: :func:`share_params` and
:meth:`TiedAutoencoder.encoder_layers` make a :class:`npdl.layers.Dense` hold the
autoencoder's ``W`` and ``b`` objects, so an update through either is seen by both.
"""

from __future__ import annotations

from .. import backend, checks
from ..deferred import ProductGrad
from ..errors import DeviceError, DTypeError, ShapeError
from ..init import get_initializer, initializer_name
from . import activations as A
from .activations import linear_backward, linear_forward  # noqa: F401  (re-exported, as before)
from .base import Layer
from .dense import Dense, dense_backward, dense_forward


# --------------------------------------------------------------------------- activations

#: activation name -> (forward, backward); forward takes ``x`` and optionally a fused ``bias`` (ELU alpha 1,
#: leaky ReLU alpha 0.01). The table of :mod:`npdl.layers.activations`, which Dense uses too.
AUTOENCODER_ACTIVATIONS = A.ELEMENTWISE


def check_activation(name, who="autoencoder") -> str:
    """The canonical name of an autoencoder activation (``"identity"`` and ``None`` mean ``"linear"``)."""
    return A.check_elementwise(name, who)


def _act(name):
    return AUTOENCODER_ACTIVATIONS[check_activation(name)]


# ---------------------------------------------------------------------- tied: functions

def tied_autoencoder_forward(x_tilde, W, b, b_prime, encoder_act="sigmoid", decoder_act="sigmoid"):
    r"""Encode and decode a batch with one weight matrix.

    Shapes: ``x_tilde`` (N, n_visible), ``W`` (n_visible, n_hidden), ``b`` (n_hidden,),
    ``b_prime`` (n_visible,).

    * $a_{enc} = \tilde{x} W + b$ (N, n_hidden), $h = f(a_{enc})$;
    * $a_{dec} = h W^\top + b'$ (N, n_visible), $z = g(a_{dec})$.

    Returns ``z`` (N, n_visible) and the cache ``(x_tilde, W, h, enc_cache, dec_cache,
    encoder_act, decoder_act)``: ``x_tilde`` and ``h`` are the inputs of the two uses of
    ``W`` (the backward pass needs both for ``dW``), ``W`` carries the gradient down,
    and the activations' own caches give their slopes.
    """
    f_forward = _act(encoder_act)[0]
    g_forward = _act(decoder_act)[0]
    # the bias goes to the activation with the product (one GPU launch for sigmoid/tanh/ReLU); the product
    # is fresh, so it may be overwritten
    h, enc_cache = f_forward(x_tilde @ W, bias=b, overwrite=True)
    # h W^T computed as (W h^T)^T: the same numbers, but BLAS reads W without transposing it,
    # which some CPU kernels do much faster (OpenBLAS's AVX-512 sgemm: 0.23 ms vs 0.42 ms at N=20).
    # The result is column-major; it is copied to row-major (0.006 ms at N=20) because the loss
    # that compares it with the row-major input runs 1.7x slower on mixed layouts.
    a_dec = backend.row_major((W @ h.T).T)
    z, dec_cache = g_forward(a_dec, bias=b_prime, overwrite=True)
    return z, (x_tilde, W, h, enc_cache, dec_cache, encoder_act, decoder_act)


def tied_autoencoder_encode(x, W, b, encoder_act="sigmoid"):
    """The codes $h = f(x W + b)$ (N, n_hidden) alone, with no cache (inference)."""
    return _act(encoder_act)[0](x @ W, bias=b, overwrite=True)[0]


def tied_autoencoder_backward(dz, cache, need_dx=True):
    r"""Gradients of the tied autoencoder, given $dz = \frac{\partial L}{\partial z}$ of shape (N, n_visible).

    Walk the forward pass backwards, one step per line of it:

    * decoder activation: $dA_{dec} = dz \odot g'(a_{dec})$ (N, n_visible);
    * decoder bias, broadcast over the N rows: $db' = \sum_{n} dA_{dec}[n, :]$ (n_visible,);
    * $a_{dec} = h W^\top$, i.e. $a_{dec}[n, i] = \sum_{j} h[n, j] W[i, j]$, so
      $dh[n, j] = \sum_{i} dA_{dec}[n, i] W[i, j]$: $dh = dA_{dec} W$ (N, n_visible) @ (n_visible, n_hidden)
      -> (N, n_hidden);
    * encoder activation: $dA_{enc} = dh \odot f'(a_{enc})$ (N, n_hidden);
    * encoder bias: $db = \sum_{n} dA_{enc}[n, :]$ (n_hidden,);
    * $a_{enc} = \tilde{x} W$, i.e. $a_{enc}[n, j] = \sum_{i} \tilde{x}[n, i] W[i, j]$, so
      $dx = dA_{enc} W^\top$ (N, n_hidden) @ (n_hidden, n_visible) -> (N, n_visible).

    **Why dW is a sum of two terms.** ``W`` is used twice, so L depends on each
    ``W[i, j]`` along two paths, and the multivariable chain rule adds them:

    $$
    \frac{\partial L}{\partial W[i, j]} = \sum_{n} dA_{enc}[n, j] \frac{\partial a_{enc}[n, j]}{\partial W[i, j]} + \sum_{n} dA_{dec}[n, i] \frac{\partial a_{dec}[n, i]}{\partial W[i, j]}
    $$

    * Encoder path: $\frac{\partial a_{enc}[n, j]}{\partial W[i, j]} = \tilde{x}[n, i]$, giving
      $\sum_{n} \tilde{x}[n, i] dA_{enc}[n, j]$, i.e. $\tilde{x}^\top dA_{enc}$:
      (n_visible, N) @ (N, n_hidden) -> (n_visible, n_hidden), already W's shape.
      (It is exactly Dense's $dW = x^\top dy$.)
    * Decoder path: $a_{dec}[n, i] = \sum_{j} h[n, j] W[i, j]$ gives $\frac{\partial a_{dec}[n, i]}{\partial W[i, j]} = h[n, j]$,
      so $\sum_{n} dA_{dec}[n, i] h[n, j]$, i.e. $dA_{dec}^\top h$:
      (n_visible, N) @ (N, n_hidden) -> (n_visible, n_hidden). Seen as a Dense layer with
      weight $W_{dec} = W^\top$ (n_hidden, n_visible), that layer's gradient is
      $dW_{dec} = h^\top dA_{dec}$ (n_hidden, n_visible); $W_{dec} = W^\top$ maps it back as its
      transpose, $(h^\top dA_{dec})^\top = dA_{dec}^\top h$, which is what is computed (no transpose
      is materialised).

    So $dW = \tilde{x}^\top dA_{enc} + dA_{dec}^\top h$: an untied autoencoder with $W_{dec} = W^\top$
    gives $dW_{enc} + dW_{dec}^\top$ (tested). With ``need_dx=False`` (the first layer of a
    network, or a corrupted input nobody differentiates) ``dx`` is ``None``.

    Returns ``(dx, dW, db, db_prime)``.
    """
    dx, (encoder_term, decoder_term), db, db_prime = tied_autoencoder_backward_products(dz, cache, need_dx)
    x_tilde, dA_enc = encoder_term
    dA_dec, h = decoder_term
    dW = x_tilde.T @ dA_enc  # encoder contribution, (n_visible, n_hidden)
    dW += dA_dec.T @ h       # decoder contribution, transposed to W's shape
    return dx, dW, db, db_prime


def tied_autoencoder_backward_products(dz, cache, need_dx=True):
    r""":func:`tied_autoencoder_backward` with ``dW`` left unformed, as its two products.

    Returns ``(dx, [(x_tilde, dA_enc), (dA_dec, h)], db, db_prime)``: ``dW`` is
    $\sum_{p} A_p^\top B_p$ over the two pairs, $\tilde{x}^\top dA_{enc} + dA_{dec}^\top h$ (both
    (n_visible, n_hidden), no transpose needed). Plain SGD adds ``-lr`` times that sum
    straight into ``W`` in one GEMM over the stacked factors
    (:func:`npdl.optim.sgd.gemm_update_sum`), with no (n_visible, n_hidden) gradient array.
    """
    x_tilde, W, h, enc_cache, dec_cache, encoder_act, decoder_act = cache
    xp = backend.namespace(dz, W)
    dA_dec = _act(decoder_act)[1](dz, dec_cache)
    db_prime = xp.sum(dA_dec, axis=0)
    dh = dA_dec @ W
    dA_enc = _act(encoder_act)[1](dh, enc_cache)
    db = xp.sum(dA_enc, axis=0)
    dx = dA_enc @ W.T if need_dx else None
    return dx, [(x_tilde, dA_enc), (dA_dec, h)], db, db_prime


# -------------------------------------------------------------------- untied: functions

def autoencoder_forward(x_tilde, W_enc, b, W_dec, b_prime, encoder_act="sigmoid", decoder_act="sigmoid"):
    r"""An untied autoencoder: two Dense maps with their own weights.

    $h = f(\tilde{x} W_{enc} + b)$ with ``W_enc`` (n_visible, n_hidden), then
    $z = g(h W_{dec} + b')$ with ``W_dec`` (n_hidden, n_visible). Each is one
    :func:`npdl.layers.dense_forward` with its activation. Cache: both Dense caches.
    """
    h, enc_dense = dense_forward(x_tilde, W_enc, b, check_activation(encoder_act))
    z, dec_dense = dense_forward(h, W_dec, b_prime, check_activation(decoder_act))
    return z, (enc_dense, dec_dense)


def autoencoder_backward(dz, cache, need_dx=True):
    r"""Two Dense backward passes, each through its activation's slope first:

    $dA_{dec} = dz \odot g'(a_{dec})$; Dense gives $dh = dA_{dec} W_{dec}^\top$, $dW_{dec} = h^\top dA_{dec}$
    (n_hidden, n_visible), $db' = \sum_{n} dA_{dec}$; then $dA_{enc} = dh \odot f'(a_{enc})$ and
    $dx = dA_{enc} W_{enc}^\top$, $dW_{enc} = \tilde{x}^\top dA_{enc}$ (n_visible, n_hidden), $db = \sum_{n} dA_{enc}$.
    Each weight is used once, so each gets one term (compare :func:`tied_autoencoder_backward`).

    Returns ``(dx, dW_enc, db, dW_dec, db_prime)``.
    """
    enc_dense, dec_dense = cache
    dh, dW_dec, db_prime = dense_backward(dz, dec_dense)
    dx, dW_enc, db = dense_backward(dh, enc_dense, need_dx)
    return dx, dW_enc, db, dW_dec, db_prime


# ------------------------------------------------------------------------------ layers

def _default_init(encoder_act):
    """The Theano dA's x4 Glorot range for sigmoid, He for the ReLU family, Glorot otherwise."""
    return {"sigmoid": "glorot_uniform_sigmoid", "relu": "he_normal", "leaky_relu": "he_normal",
            "elu": "he_normal"}.get(encoder_act, "glorot_uniform")


class _AutoencoderBase(Layer):
    """Shapes, activations, input checks and configuration shared by both autoencoders."""

    def __init__(self, n_visible, n_hidden, encoder, decoder, init, dtype, name):
        super().__init__(name)
        who = type(self).__name__
        if int(n_visible) <= 0 or int(n_hidden) <= 0:
            raise ValueError(f"{who}: n_visible and n_hidden must be positive, "
                             f"got n_visible={n_visible}, n_hidden={n_hidden}")
        self.n_visible, self.n_hidden = int(n_visible), int(n_hidden)
        self.encoder = check_activation(encoder, who)
        self.decoder = check_activation(decoder, who)
        self.init = get_initializer(_default_init(self.encoder) if init is None else init)
        self.dtype = backend.resolve_float(dtype)

    @property
    def n_in(self) -> int:
        """The input width (``n_visible``), as Dense names it (used by ``Sequential.summary``)."""
        return self.n_visible

    @property
    def who(self) -> str:
        return f"{type(self).__name__}({self.n_visible}->{self.n_hidden}) '{self.name}'"

    def _check_input(self, x, width=None, what="input"):
        checks.check_float(x, self.who, what, dtype=self.dtype)
        checks.check_rank(x, 2, self.who, what, layout="(batch, features)")
        checks.check_dim(x, 1, self.n_visible if width is None else width, self.who, what)
        checks.check_same_device(x, next(iter(self.params.values())), self.who, what)

    def output_shape(self, input_shape):
        return (self.n_visible,)

    def work(self, input_shape, need_input_grad=True, dtype=None) -> dict:
        """FLOPs of forward and backward on ``input_shape`` (N, n_visible) and what the cache keeps
        (:mod:`npdl.bench.work`); ``P = N n_visible n_hidden``. Forward: two products (2 P each), the
        biases and activations per element. Backward: ``g'``, ``db_prime``, ``dh`` (2 P), ``f'``, ``db``,
        ``dx`` (2 P, not for a first layer) and ``dW`` as two products (2 P each), added together (one
        more pass over ``W``) when tied. The cache keeps ``x~``, ``h`` and the decoder's output as its
        activation needs."""
        N, v, h = int(input_shape[0]), self.n_visible, self.n_hidden
        P = N * v * h
        enc_fwd, enc_bwd, _, enc_mask = A.ELEMENTWISE_WORK[self.encoder]
        dec_fwd, dec_bwd, keeps_z, dec_mask = A.ELEMENTWISE_WORK[self.decoder]
        forward = 2 * P + N * h * (1 + enc_fwd) + 2 * P + N * v * (1 + dec_fwd)
        backward = N * v * (dec_bwd + 1) + 2 * P + N * h * (enc_bwd + 1) + (2 * P if need_input_grad else 0) + 4 * P
        if isinstance(self, TiedAutoencoder):
            backward += v * h
        item = 8 if self.dtype == "float64" else 4
        return {"forward": forward, "backward": backward, "keeps_input": True, "keeps_output": keeps_z,
                "kept_bytes": N * h * (item + enc_mask) + N * v * dec_mask}

    def get_config(self):
        return {"n_visible": self.n_visible, "n_hidden": self.n_hidden, "encoder": self.encoder,
                "decoder": self.decoder, "init": initializer_name(self.init), "dtype": self.dtype,
                "name": self.name}


class TiedAutoencoder(_AutoencoderBase):
    r"""Autoencoder with tied weights: $h = f(x W + b)$, $z = g(h W^\top + b')$.

    Parameters: ``W`` (n_visible, n_hidden) from ``init`` (default: the Theano dA's
    ``glorot_uniform_sigmoid`` for a sigmoid encoder, ``he_normal`` for relu/elu,
    ``glorot_uniform`` otherwise), ``b`` (n_hidden,) and ``b_prime`` (n_visible,) at zero;
    float32 unless ``dtype="float64"``, on ``device``, drawn from ``rng``. ``forward``
    returns the reconstruction ``z``; :meth:`encode` the codes ``h``. Only ``W`` is a
    weight (``weight_names``), so L1/L2 penalties never touch the biases.

    A denoising autoencoder is ``Sequential([MaskingNoise(0.3), TiedAutoencoder(784, 500)])``
    trained with ``fit(x, x)``: the noise corrupts the encoder's input in training only,
    the loss compares ``z`` with the clean ``x``.
    """

    weight_names = ("W",)

    def __init__(self, n_visible: int, n_hidden: int, encoder="sigmoid", decoder="sigmoid", init=None,
                 dtype=None, device="cpu", rng=None, name: str | None = None):
        super().__init__(n_visible, n_hidden, encoder, decoder, init, dtype, name)
        device = backend.get_device(device)
        rng = rng if rng is not None else backend.default_generator(device)
        v, h = self.n_visible, self.n_hidden
        self.params["W"] = device.asarray(self.init(rng, (v, h), v, h, self.dtype))
        self.params["b"] = device.zeros((h,), self.dtype)
        self.params["b_prime"] = device.zeros((v,), self.dtype)

    def forward(self, x, training=False):
        self._check_input(x)
        p = self.params
        z, self.cache = tied_autoencoder_forward(x, p["W"], p["b"], p["b_prime"], self.encoder, self.decoder)
        return z

    def backward(self, dz):
        r""":func:`tied_autoencoder_backward`, with $dW = \tilde{x}^\top dA_{enc} + dA_{dec}^\top h$ kept as its two
        products (a :class:`~npdl.deferred.ProductGrad`): formed when read, or added into ``W`` by
        plain SGD in one GEMM over the stacked factors, with no ``dW`` array."""
        dx, pairs, db, db_prime = tied_autoencoder_backward_products(dz, self.cache, self.need_input_grad)
        self.grads["W"], self.grads["b"], self.grads["b_prime"] = ProductGrad(pairs), db, db_prime
        return dx

    def encode(self, x):
        """The codes $h = f(x W + b)$, shape (N, n_hidden); keeps no cache."""
        self._check_input(x)
        return tied_autoencoder_encode(x, self.params["W"], self.params["b"], self.encoder)

    def decode(self, h):
        r"""The reconstruction $z = g(h W^\top + b')$ of codes ``h`` (N, n_hidden); keeps no cache."""
        self._check_input(h, self.n_hidden, "codes")
        return _act(self.decoder)[0](h @ self.params["W"].T, bias=self.params["b_prime"], overwrite=True)[0]

    def encoder_layers(self, name: str | None = None) -> list:
        """``[Dense(activation=encoder)]`` computing :meth:`encode`, holding *this layer's* ``W`` and ``b``.

        For stacking (the Theano SdA): after pretraining, build the MLP from these
        layers; fine-tuning then updates the very arrays the autoencoder holds, and
        pretraining updates the MLP's. (A list, to be spliced into a layer list.)
        """
        dense = Dense(self.n_visible, self.n_hidden, init="zeros", dtype=self.dtype, device=self.device,
                      rng=backend.Generator(self.device, 0), name=name or f"{self.name}_encoder",
                      activation=self.encoder)
        share_params(self, dense)
        return [dense]


class Autoencoder(_AutoencoderBase):
    """Untied autoencoder, for comparison: $h = f(x W_{enc} + b)$, $z = g(h W_{dec} + b')$.

    ``W_enc`` (n_visible, n_hidden) and ``W_dec`` (n_hidden, n_visible) are separate
    weights, drawn independently from ``init`` (twice the tied model's weights).
    """

    weight_names = ("W_enc", "W_dec")

    def __init__(self, n_visible: int, n_hidden: int, encoder="sigmoid", decoder="sigmoid", init=None,
                 dtype=None, device="cpu", rng=None, name: str | None = None):
        super().__init__(n_visible, n_hidden, encoder, decoder, init, dtype, name)
        device = backend.get_device(device)
        rng = rng if rng is not None else backend.default_generator(device)
        v, h = self.n_visible, self.n_hidden
        self.params["W_enc"] = device.asarray(self.init(rng, (v, h), v, h, self.dtype))
        self.params["b"] = device.zeros((h,), self.dtype)
        self.params["W_dec"] = device.asarray(self.init(rng, (h, v), h, v, self.dtype))
        self.params["b_prime"] = device.zeros((v,), self.dtype)

    def forward(self, x, training=False):
        self._check_input(x)
        p = self.params
        z, self.cache = autoencoder_forward(x, p["W_enc"], p["b"], p["W_dec"], p["b_prime"],
                                            self.encoder, self.decoder)
        return z

    def backward(self, dz):
        dx, dW_enc, db, dW_dec, db_prime = autoencoder_backward(dz, self.cache, self.need_input_grad)
        self.grads.update(W_enc=dW_enc, b=db, W_dec=dW_dec, b_prime=db_prime)
        return dx

    def encode(self, x):
        """The codes $h = f(x W_{enc} + b)$, shape (N, n_hidden); keeps no cache."""
        self._check_input(x)
        return tied_autoencoder_encode(x, self.params["W_enc"], self.params["b"], self.encoder)


# ------------------------------------------------------------------------ weight sharing

def share_params(autoencoder: TiedAutoencoder, dense: Dense) -> Dense:
    """Make ``dense`` hold the autoencoder's ``W`` and ``b`` -- the same array objects, not copies.

    This is the Theano SdA's construction (each dA is built on its hidden layer's
    ``W`` and ``b``): the pretrained weights *are* the hidden layer's weights. The
    optimizers update parameters in place (``p -= lr * g``), so a step taken through
    either layer is seen by the other; ``b_prime`` stays the autoencoder's own.

    Sharing lasts as long as nobody rebinds ``params[...]``: ``Layer.to(device)`` gives a
    layer new arrays (move both layers first, then share), whereas ``load_state_dict``
    writes into the existing arrays and keeps it. Do not put both layers in one
    Sequential: its optimizer would then step the shared array twice per batch.
    Returns ``dense``.
    """
    if not isinstance(autoencoder, TiedAutoencoder) or not isinstance(dense, Dense):
        raise TypeError(f"share_params: expected a TiedAutoencoder and a Dense layer, got "
                        f"{type(autoencoder).__name__} and {type(dense).__name__}")
    who = f"share_params({autoencoder.who}, Dense({dense.n_in}->{dense.n_out}) '{dense.name}')"
    if (dense.n_in, dense.n_out) != (autoencoder.n_visible, autoencoder.n_hidden):
        raise ShapeError(f"{who}: the Dense layer must map {autoencoder.n_visible} -> {autoencoder.n_hidden} "
                         f"features, got {dense.n_in} -> {dense.n_out}")
    if not dense.bias:
        raise ValueError(f"{who}: the Dense layer needs a bias to share the autoencoder's hidden bias b")
    if dense.dtype != autoencoder.dtype:
        raise DTypeError(f"{who}: dtypes differ ({dense.dtype} and {autoencoder.dtype}); npdl never casts silently")
    if dense.device != autoencoder.device:
        raise DeviceError(f"{who}: the layers live on different devices ('{dense.device}' and "
                          f"'{autoencoder.device}'); move them with .to(device) before sharing")
    dense.params["W"] = autoencoder.params["W"]
    dense.params["b"] = autoencoder.params["b"]
    dense.grads.clear()
    dense.cache = None
    return dense
