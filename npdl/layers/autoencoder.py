"""Autoencoders: tied weights (the Theano dA, Hands-On ML) and untied, for comparison.

A tied autoencoder has one weight matrix ``W`` (n_visible, n_hidden) and two biases:

* encoder ``h = f(x~ W + b)``:      (N, n_visible) @ (n_visible, n_hidden) -> (N, n_hidden),
* decoder ``z = g(h W^T + b')``:    (N, n_hidden) @ (n_hidden, n_visible) -> (N, n_visible),

where ``x~`` is the (possibly corrupted, see :mod:`npdl.layers.noise`) input and the
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
    """Encode and decode a batch with one weight matrix.

    Shapes: ``x_tilde`` (N, n_visible), ``W`` (n_visible, n_hidden), ``b`` (n_hidden,),
    ``b_prime`` (n_visible,).

    * ``a_enc = x_tilde W + b`` (N, n_hidden), ``h = f(a_enc)``;
    * ``a_dec = h W^T + b_prime`` (N, n_visible), ``z = g(a_dec)``.

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
    """The codes ``h = f(x W + b)`` (N, n_hidden) alone, with no cache (inference)."""
    return _act(encoder_act)[0](x @ W, bias=b, overwrite=True)[0]


def tied_autoencoder_backward(dz, cache, need_dx=True):
    """Gradients of the tied autoencoder, given ``dz = dL/dz`` of shape (N, n_visible).

    Walk the forward pass backwards, one step per line of it:

    * decoder activation: ``dA_dec = dz * g'(a_dec)`` (N, n_visible);
    * decoder bias, broadcast over the N rows: ``db_prime = sum_n dA_dec[n, :]`` (n_visible,);
    * ``a_dec = h W^T``, i.e. ``a_dec[n, i] = sum_j h[n, j] W[i, j]``, so
      ``dh[n, j] = sum_i dA_dec[n, i] W[i, j]``: ``dh = dA_dec W`` (N, n_visible) @ (n_visible, n_hidden)
      -> (N, n_hidden);
    * encoder activation: ``dA_enc = dh * f'(a_enc)`` (N, n_hidden);
    * encoder bias: ``db = sum_n dA_enc[n, :]`` (n_hidden,);
    * ``a_enc = x_tilde W``, i.e. ``a_enc[n, j] = sum_i x_tilde[n, i] W[i, j]``, so
      ``dx = dA_enc W^T`` (N, n_hidden) @ (n_hidden, n_visible) -> (N, n_visible).

    **Why dW is a sum of two terms.** ``W`` is used twice, so L depends on each
    ``W[i, j]`` along two paths, and the multivariable chain rule adds them:

    ``dL/dW[i, j] = sum_n dA_enc[n, j] * d a_enc[n, j]/dW[i, j]  +  sum_n dA_dec[n, i] * d a_dec[n, i]/dW[i, j]``

    * Encoder path: ``d a_enc[n, j]/dW[i, j] = x_tilde[n, i]``, giving
      ``sum_n x_tilde[n, i] dA_enc[n, j]``, i.e. ``x_tilde^T dA_enc``:
      (n_visible, N) @ (N, n_hidden) -> (n_visible, n_hidden), already W's shape.
      (It is exactly Dense's ``dW = x^T dy``.)
    * Decoder path: ``a_dec[n, i] = sum_j h[n, j] W[i, j]`` gives ``d a_dec[n, i]/dW[i, j] = h[n, j]``,
      so ``sum_n dA_dec[n, i] h[n, j]``, i.e. ``dA_dec^T h``:
      (n_visible, N) @ (N, n_hidden) -> (n_visible, n_hidden). Seen as a Dense layer with
      weight ``W_dec = W^T`` (n_hidden, n_visible), that layer's gradient is
      ``dW_dec = h^T dA_dec`` (n_hidden, n_visible); ``W_dec = W^T`` maps it back as its
      transpose, ``(h^T dA_dec)^T = dA_dec^T h``, which is what is computed (no transpose
      is materialised).

    So ``dW = x_tilde^T dA_enc + dA_dec^T h``: an untied autoencoder with ``W_dec = W^T``
    gives ``dW_enc + dW_dec^T`` (tested). With ``need_dx=False`` (the first layer of a
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
    """:func:`tied_autoencoder_backward` with ``dW`` left unformed, as its two products.

    Returns ``(dx, [(x_tilde, dA_enc), (dA_dec, h)], db, db_prime)``: ``dW`` is
    ``sum_p A_p^T B_p`` over the two pairs, ``x_tilde^T dA_enc + dA_dec^T h`` (both
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
    """An untied autoencoder: two Dense maps with their own weights.

    ``h = f(x_tilde W_enc + b)`` with ``W_enc`` (n_visible, n_hidden), then
    ``z = g(h W_dec + b_prime)`` with ``W_dec`` (n_hidden, n_visible). Each is one
    :func:`npdl.layers.dense_forward` with its activation. Cache: both Dense caches.
    """
    h, enc_dense = dense_forward(x_tilde, W_enc, b, check_activation(encoder_act))
    z, dec_dense = dense_forward(h, W_dec, b_prime, check_activation(decoder_act))
    return z, (enc_dense, dec_dense)


def autoencoder_backward(dz, cache, need_dx=True):
    """Two Dense backward passes, each through its activation's slope first:

    ``dA_dec = dz * g'(a_dec)``; Dense gives ``dh = dA_dec W_dec^T``, ``dW_dec = h^T dA_dec``
    (n_hidden, n_visible), ``db_prime = sum_n dA_dec``; then ``dA_enc = dh * f'(a_enc)`` and
    ``dx = dA_enc W_enc^T``, ``dW_enc = x_tilde^T dA_enc`` (n_visible, n_hidden), ``db = sum_n dA_enc``.
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

    def get_config(self):
        return {"n_visible": self.n_visible, "n_hidden": self.n_hidden, "encoder": self.encoder,
                "decoder": self.decoder, "init": initializer_name(self.init), "dtype": self.dtype,
                "name": self.name}


class TiedAutoencoder(_AutoencoderBase):
    """Autoencoder with tied weights: ``h = f(x W + b)``, ``z = g(h W^T + b_prime)``.

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
        """:func:`tied_autoencoder_backward`, with ``dW = x~^T dA_enc + dA_dec^T h`` kept as its two
        products (a :class:`~npdl.deferred.ProductGrad`): formed when read, or added into ``W`` by
        plain SGD in one GEMM over the stacked factors, with no ``dW`` array."""
        dx, pairs, db, db_prime = tied_autoencoder_backward_products(dz, self.cache, self.need_input_grad)
        self.grads["W"], self.grads["b"], self.grads["b_prime"] = ProductGrad(pairs), db, db_prime
        return dx

    def encode(self, x):
        """The codes ``h = f(x W + b)``, shape (N, n_hidden); keeps no cache."""
        self._check_input(x)
        return tied_autoencoder_encode(x, self.params["W"], self.params["b"], self.encoder)

    def decode(self, h):
        """The reconstruction ``z = g(h W^T + b_prime)`` of codes ``h`` (N, n_hidden); keeps no cache."""
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
    """Untied autoencoder, for comparison: ``h = f(x W_enc + b)``, ``z = g(h W_dec + b_prime)``.

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
        """The codes ``h = f(x W_enc + b)``, shape (N, n_hidden); keeps no cache."""
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
