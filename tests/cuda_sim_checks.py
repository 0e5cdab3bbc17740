"""Checks of the numba.cuda kernels (``npdl.kernels.cuda``) that need no GPU; run by ``tests/test_cuda_sim.py``.

Two modes, each in a fresh process (Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when
``numba.cuda`` is first imported, so the simulator cannot be switched on inside pytest):

* ``sim``: under Numba's CUDA simulator, every kernel on small NumPy arrays against
  the array-API reference -- random geometries (odd sizes, stride > kernel, padding,
  1x1 windows), float32 and float64, max pooling on small integers so that windows
  hold ties -- plus the dispatch with the simulator as the "GPU". The simulator runs
  each CUDA thread as a Python thread (about 0.2 ms each), so the arrays stay tiny.
* ``ptx``: without the simulator, every kernel compiled to PTX for a real GPU
  (compute capability 8.0), float32 and float64. The simulator executes the kernels
  as Python and so never type-checks them; this catches what Numba's CUDA compiler
  rejects, and checks that the float32 versions do no float64 arithmetic. Needs
  libNVVM (a CUDA toolkit) but no GPU; exits with status 3 ("skip") without it.

Prints what it checked and exits 0, or exits 1 listing every mismatch.

    python tests/cuda_sim_checks.py sim|ptx
"""

from __future__ import annotations

import os
import sys

MODE = sys.argv[1] if len(sys.argv) > 1 else "sim"
if MODE == "sim":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before anything imports numba.cuda
else:
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)

import re  # noqa: E402
import types as pytypes  # noqa: E402

import numpy as np  # noqa: E402

from npdl import kernels  # noqa: E402
from npdl.kernels.cuda import im2col as cuda_im2col, pool as cuda_pool, softmax_xent as cuda_sx  # noqa: E402
from npdl.kernels.cuda import activation_backward as cuda_act, optimizer_update as cuda_opt  # noqa: E402
from npdl.kernels.cuda import bias_activation as cuda_bias_act, lstm_cell as cuda_lstm  # noqa: E402
from npdl.layers import conv as conv_layer, pooling as pool_layer  # noqa: E402  (the definitions)
from npdl.optim import base as ref_opt  # noqa: E402  (update_all.definition and the rules)
from npdl.optim.rmsprop import rmsprop_rule  # noqa: E402
from npdl.layers import lstm as lstm_layer  # noqa: E402  (the definitions)
from npdl.layers import activations as A  # noqa: E402
from npdl.losses import cross_entropy as CE  # noqa: E402

SKIP = 3
failures: list[str] = []
counts = {"im2col": 0, "pool": 0, "softmax_xent": 0, "activation_backward": 0, "optimizer_update": 0, "lstm_cell": 0,
          "bias_activation": 0, "dispatch": 0}


def _tol(dtype):
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def expect(what: str, ok: bool, detail: str = "") -> None:
    if not ok:
        failures.append(f"{what}: {detail}")


def same(what, got, want, exact=False, dtype=None):
    """``got`` equals ``want`` (in shape and dtype too); exactly, or to the dtype's tolerance."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return expect(what, False, f"shape {got.shape}, expected {want.shape}")
    if dtype is not None and got.dtype != np.dtype(dtype):
        return expect(what, False, f"dtype {got.dtype}, expected {np.dtype(dtype)}")
    nan_ok = want.dtype.kind == "f"  # a nan where the reference has one is a match
    if exact:
        ok = np.array_equal(got, want, equal_nan=nan_ok)
    else:
        tol = _tol(dtype or want.dtype)
        ok = np.allclose(got, want, rtol=tol, atol=tol, equal_nan=nan_ok)
    if not ok:
        diff = (np.argwhere((got != want) & ~(np.isnan(got) & np.isnan(want))) if exact and nan_ok
                else np.argwhere(got != want) if exact
                else np.argwhere(~np.isclose(got, want, rtol=tol, atol=tol, equal_nan=nan_ok)))
        where = tuple(int(v) for v in diff[0]) if diff.size else ()
        expect(what, False, f"{diff.shape[0]} of {got.size} elements differ, first at {where}: "
                            f"got {got[where]!r}, expected {want[where]!r}")


# ------------------------------------------------------------------------ geometries

def _out(size, k, s, before, after):
    return (size + before + after - k) // s + 1


def geometries(rng, count, pool: bool):
    """``count`` random ``(x_shape, kernel, stride, pad)`` with a non-empty, small output.

    For pooling every window must hold a real cell (padding below the window size,
    as 'same' padding makes it), else the reference's average divides by zero.
    Fixed cases first: a 1x1 window, stride > window, 2x2 at stride 2 (LeNet), asymmetric padding.
    """
    fixed = [((2, 3, 5, 4), (1, 1), (1, 1), (0, 0, 0, 0)),
             ((1, 2, 7, 6), (2, 2), (3, 3), (0, 1, 1, 0)),
             ((2, 2, 6, 6), (2, 2), (2, 2), (0, 0, 0, 0)),
             ((1, 3, 5, 7), (3, 2), (2, 1), (1, 1, 0, 1)),
             ((2, 1, 7, 7), (3, 3), (1, 1), (1, 1, 1, 1))]
    out = list(fixed)
    while len(out) < count:
        n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        h, w = int(rng.integers(1, 8)), int(rng.integers(1, 8))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        sh, sw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        pad = tuple(int(rng.integers(0, min(k, 3) if pool else 3)) for k in (kh, kh, kw, kw))
        oh, ow = _out(h, kh, sh, pad[0], pad[1]), _out(w, kw, sw, pad[2], pad[3])
        if oh < 1 or ow < 1 or c * kh * kw * n * oh * ow > 2000:  # empty, or slow in the simulator
            continue
        out.append(((n, c, h, w), (kh, kw), (sh, sw), pad))
    return out


# ----------------------------------------------------------------------------- sim

def check_im2col(rng):
    for i, (x_shape, kernel, stride, pad) in enumerate(geometries(rng, 30, pool=False)):
        dtype = (np.float32, np.float64)[i % 2]
        what = f"im2col {x_shape} kernel {kernel} stride {stride} pad {pad} {np.dtype(dtype).name}"
        x = rng.standard_normal(x_shape).astype(dtype)
        if i == 3:
            x = np.asfortranarray(x)  # a non-contiguous input is copied first
        want = conv_layer.im2col.definition(x, kernel, stride, pad)
        same(what, cuda_im2col.im2col(x, kernel, stride, pad, workspace={}), want, exact=True, dtype=dtype)
        cols = rng.standard_normal(want.shape).astype(dtype)
        same("col2im" + what[6:], cuda_im2col.col2im(cols, x_shape, kernel, stride, pad),
             conv_layer.col2im.definition(cols, x_shape, kernel, stride, pad), dtype=dtype)
        counts["im2col"] += 1
    # an empty batch: empty outputs of the right shapes, and no launch
    x = np.zeros((0, 2, 5, 5), np.float32)
    same("im2col of an empty batch", cuda_im2col.im2col(x, (3, 3), (1, 1), (1, 1, 1, 1)), np.zeros((18, 0), np.float32),
         exact=True, dtype=np.float32)
    same("col2im of an empty batch", cuda_im2col.col2im(np.zeros((18, 0)), x.shape, (3, 3), (1, 1), (1, 1, 1, 1)),
         x.astype(np.float64), exact=True, dtype=np.float64)
    # a dtype the kernels are not written for goes to the definition
    half = np.zeros((1, 1, 4, 4), np.float16)
    expect("im2col declines float16", cuda_im2col.im2col(half, (2, 2), (2, 2), (0, 0, 0, 0)) is NotImplemented)
    expect("col2im declines float16",
           cuda_im2col.col2im(np.zeros((4, 4), np.float16), half.shape, (2, 2), (2, 2), (0, 0, 0, 0)) is NotImplemented)


def check_pool(rng):
    for i, (x_shape, kernel, stride, pad) in enumerate(geometries(rng, 30, pool=True)):
        dtype = (np.float32, np.float64)[i % 2]
        what = f"x {x_shape} window {kernel} stride {stride} pad {pad} {np.dtype(dtype).name}"
        for values in ("ties", "normal"):
            # integers from a small range make windows with several equal maxima: the first must win
            x = (rng.integers(-2, 3, x_shape) if values == "ties" else rng.standard_normal(x_shape)).astype(dtype)
            y, arg = cuda_pool.max_forward(x, kernel, stride, pad)
            y_ref, arg_ref = pool_layer.max_pool_forward.definition(x, kernel, stride, pad)
            same(f"max_forward y, {values}, {what}", y, y_ref, exact=True, dtype=dtype)
            same(f"max_forward arg, {values}, {what}", arg, arg_ref.astype(np.int32), exact=True, dtype=np.int32)
            dy = rng.standard_normal(y_ref.shape).astype(dtype)
            want = pool_layer.max_pool_backward.definition(dy, arg_ref, x_shape, kernel, stride, pad)
            same(f"max_backward, {values}, {what}", cuda_pool.max_backward(dy, arg, x_shape, kernel, stride, pad),
                 want, dtype=dtype)
            # the definition's int64 arg is accepted too (converted to int32)
            same(f"max_backward on int64 arg, {values}, {what}",
                 cuda_pool.max_backward(dy, arg_ref, x_shape, kernel, stride, pad), want, dtype=dtype)
        # the average sums the real cells in the definition's order: exact here (IEEE on the GPU too)
        same(f"avg_forward, {what}", cuda_pool.avg_forward(x, kernel, stride, pad),
             pool_layer.avg_pool_forward.definition(x, kernel, stride, pad), exact=True, dtype=dtype)
        same(f"avg_backward, {what}", cuda_pool.avg_backward(dy, x_shape, kernel, stride, pad),
             pool_layer.avg_pool_backward.definition(dy, x_shape, kernel, stride, pad), dtype=dtype)
        counts["pool"] += 1
    x = np.zeros((0, 3, 4, 4), np.float32)
    y, arg = cuda_pool.max_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    expect("max_forward of an empty batch", y.shape == arg.shape == (0, 3, 2, 2), f"shapes {y.shape}, {arg.shape}")
    same("avg_backward of an empty batch", cuda_pool.avg_backward(y, x.shape, (2, 2), (2, 2), (0, 0, 0, 0)), x,
         exact=True, dtype=np.float32)
    half = np.zeros((1, 1, 4, 4), np.float16)
    expect("max_forward declines float16", cuda_pool.max_forward(half, (2, 2), (2, 2), (0, 0, 0, 0)) is NotImplemented)
    expect("avg_backward declines float16",
           cuda_pool.avg_backward(half[:, :, :2, :2], half.shape, (2, 2), (2, 2), (0, 0, 0, 0)) is NotImplemented)


def check_softmax_xent(rng):
    """Against ``softmax_cross_entropy_forward`` / ``_backward``'s definitions: loss, probabilities, the
    cache (the labels passed through), and the backward for a random ``dloss`` in every form."""
    forward, backward = CE.softmax_cross_entropy_forward.definition, CE.softmax_cross_entropy_backward.definition
    cases = [(1, 1), (1, 7), (5, 3), (4, 10), (3, 2), (6, 5)]
    for i, (n, k) in enumerate(cases * 2):
        dtype = (np.float32, np.float64)[i % 2]
        scale = (0.1, 3.0, 80.0)[i % 3]  # 80: exp of the raw logits would overflow
        label_dtype = (np.int64, np.int32)[(i // 2) % 2]
        what = f"softmax_xent ({n}, {k}) scale {scale} {np.dtype(dtype).name} labels {np.dtype(label_dtype).name}"
        logits = (rng.standard_normal((n, k)) * scale).astype(dtype)
        labels = rng.integers(0, k, n).astype(label_dtype)
        loss, (probs, cached) = cuda_sx.forward(logits, labels)
        want_loss, (want_probs, _) = forward(logits, labels)
        same(what + " probs", probs, want_probs, dtype=dtype)
        same(what + " loss", loss, want_loss, dtype=dtype)
        expect(what + " loss", np.ndim(loss) == 0, f"loss of shape {np.shape(loss)}, expected a 0-d array")
        expect(what + " cache", cached is labels, "the cache does not hold the labels passed in")
        # dloss as the loss layer passes it (a Python float) or as a 0-d array / NumPy scalar
        value = float(rng.uniform(-3.0, 3.0))
        for dloss in (1.0, value, np.asarray(value, dtype), dtype(-value)):
            same(f"{what} backward, dloss {dloss!r}", cuda_sx.backward(dloss, (probs, labels)),
                 backward(dloss, (want_probs, labels)), dtype=dtype)
        counts["softmax_xent"] += 1
    x = np.array([[1000.0, -1000.0, 0.0], [-1e4, -1e4, -1e4]], np.float32)
    loss, (probs, _) = cuda_sx.forward(x, np.array([1, 2]))
    expect("softmax_xent on extreme logits", np.isfinite(loss) and np.isfinite(probs).all(), f"loss {loss}")
    expect("softmax_xent declines integer logits",
           cuda_sx.forward(np.zeros((2, 3), np.int64), np.array([0, 1])) is NotImplemented, "")
    expect("softmax_xent declines an empty batch",
           cuda_sx.backward(1.0, (np.zeros((0, 3), np.float32), np.zeros(0, np.int64))) is NotImplemented, "")


def check_activation_backward(rng):
    """Against ``npdl.layers.activations.<name>_backward``'s definitions, with random upstream gradients.
    One thread per element, the definition's operations in its order: bit-identical (the simulator runs
    them as NumPy scalars; on a GPU the same single-rounded float ops)."""
    for i, shape in enumerate([(1,), (7,), (3, 5), (2, 3, 4), (0, 4)]):
        dtype = (np.float32, np.float64)[i % 2]
        dy = rng.standard_normal(shape).astype(dtype)
        y = rng.uniform(-1.0, 1.0, shape).astype(dtype)
        if y.size:
            y.flat[0] = 0.0  # ReLU's kink: slope 0 there
        for name in ("sigmoid", "tanh", "relu"):
            definition = getattr(A, f"{name}_backward").definition
            same(f"activation_backward.{name} {shape} {np.dtype(dtype).name}", getattr(cuda_act, name)(dy, y),
                 definition(dy, y), exact=True, dtype=dtype)
        # a transposed (F-ordered) input is made contiguous first: same numbers
        if len(shape) == 2:
            same(f"activation_backward.sigmoid of transposed arrays {shape}", cuda_act.sigmoid(dy.T, y.T),
                 A.sigmoid_backward.definition(dy.T, y.T), exact=True, dtype=dtype)
        counts["activation_backward"] += 1
    expect("activation_backward declines mismatched dtypes",
           cuda_act.sigmoid(np.ones(3, np.float32), np.ones(3, np.float64)) is NotImplemented, "")


def check_bias_activation(rng):
    """``f(x + bias)`` in one launch against ``npdl.layers.activations.<name>_forward``'s definitions: with
    and without a bias, in place and not, float32 and float64, rank 1 to 3 (the bias runs along the last
    axis), special values; the cache is ``y``. Without a bias only the sigmoid has a kernel (tanh and
    ReLU are one CuPy launch already, and decline)."""
    for i, shape in enumerate([(1,), (7,), (3, 5), (2, 3, 4), (0, 4)]):
        dtype = (np.float32, np.float64)[i % 2]
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        b = rng.standard_normal(shape[-1:]).astype(dtype)
        for name in ("sigmoid", "tanh", "relu"):
            what = f"bias_activation.{name} {shape} {np.dtype(dtype).name}"
            kernel, definition = getattr(cuda_bias_act, name), getattr(A, f"{name}_forward").definition
            before = x.copy()
            want, _ = definition(x, bias=b)
            y, cache = kernel(x, bias=b)
            same(f"{what} with bias", y, want, dtype=dtype)
            expect(f"{what} cache", cache is y, "the cache is not y")
            no_bias = kernel(x)
            if name == "sigmoid":
                same(f"{what} without bias", no_bias[0], definition(x)[0], dtype=dtype)
            else:
                expect(f"{what} without bias declines", no_bias is NotImplemented, f"{type(no_bias)}")
            same(f"{what} leaves x alone without overwrite", x, before, exact=True, dtype=dtype)
            scratch = x.copy()
            got, _ = kernel(scratch, bias=b, overwrite=True)
            same(f"{what} in place", got, want, dtype=dtype)
            expect(f"{what} in place writes over x", got is scratch, "returned a new array")
        if len(shape) == 2:  # a transposed (F-ordered) product: a row-major copy, same numbers
            xt = np.ascontiguousarray(x.T).T.copy(order="F")
            bt = rng.standard_normal(xt.shape[-1:]).astype(dtype)
            same(f"bias_activation.sigmoid of a transposed product {shape}",
                 cuda_bias_act.sigmoid(xt, bias=bt, overwrite=True)[0],
                 A.sigmoid_forward.definition(xt.copy(), bias=bt)[0], dtype=dtype)
        counts["bias_activation"] += 1
    x = np.array([[np.nan, -0.0, 0.0, 1.0, -1.0, np.inf, -np.inf, 100.0]], np.float32)
    zero = np.full(8, -0.0, np.float32)  # -0.0 + -0.0 stays -0.0: the kernel's v <= 0 branch must make it +0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for name in ("sigmoid", "tanh", "relu"):
            same(f"bias_activation.{name} of nan, -0.0, inf", getattr(cuda_bias_act, name)(x, bias=zero)[0],
                 getattr(A, f"{name}_forward").definition(x, bias=zero)[0], dtype=np.float32)
    relu, _ = cuda_bias_act.relu(x, bias=zero)
    expect("bias_activation.relu keeps nan and gives +0.0 for -0.0",
           np.isnan(relu[0, 0]) and not np.signbit(relu[0, 1]), f"{relu[0, :2]}")
    expect("bias_activation declines a bias of another dtype",
           cuda_bias_act.sigmoid(x, bias=zero.astype(np.float64)) is NotImplemented, "")


def check_optimizer_update(rng):
    """Each rule on a whole model's parameters at once (mixed shapes, float32 and float64 in one call: one
    launch per dtype, an empty parameter) over several steps, the state carrying over, against the
    reference; one parameter alone; a strided parameter (updated by the reference where it lies)."""
    rules = {"sgd": lambda t: (0.05,), "momentum": lambda t: (0.05, 0.9), "nesterov": lambda t: (0.05, 0.9),
             "rmsprop": lambda t: (0.01, 0.9, 1e-7),
             "adam": lambda t: (0.9, 0.999, 1e-7, 0.01 / (1.0 - 0.9 ** t), (1.0 - 0.999 ** t) ** 0.5)}
    models = [[((1,), np.float32)], [((9,), np.float64)],
              [((4, 3), np.float32), ((3,), np.float32), ((2, 3, 5), np.float32), ((7,), np.float64),
               ((0, 2), np.float32), ((1, 1), np.float64)]]
    for rule, scalars in rules.items():
        n_slots = {"sgd": 0, "adam": 2}.get(rule, 1)
        for model in models:
            got = {"p": [], "g": [], "slots": [[] for _ in range(n_slots)]}
            for shape, dtype in model:
                got["p"].append(rng.standard_normal(shape).astype(dtype))
                got["g"].append(rng.standard_normal(shape).astype(dtype))
                for k in range(n_slots):  # v >= 0 for the square-root rules
                    got["slots"][k].append(np.abs(rng.standard_normal(shape)).astype(dtype))
            want = {"p": [a.copy() for a in got["p"]], "slots": [[a.copy() for a in lst] for lst in got["slots"]]}
            for t in (1, 2, 50):
                cuda_opt.update_all(rule, got["p"], got["g"], got["slots"], scalars(t))
                ref_opt.update_all.definition(rule, want["p"], got["g"], want["slots"], scalars(t))
            for i, (shape, dtype) in enumerate(model):
                what = f"optimizer_update.{rule} parameter {i} of {len(model)} {shape} {np.dtype(dtype).name}"
                same(f"{what} p", got["p"][i], want["p"][i], dtype=dtype)
                for k in range(n_slots):
                    same(f"{what} slot {k}", got["slots"][k][i], want["slots"][k][i], dtype=dtype)
            counts["optimizer_update"] += 1
    # one parameter alone
    p, g, v = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3))
    v = np.abs(v)
    p2, v2 = p.copy(), v.copy()
    cuda_opt.update_all("rmsprop", [p], [g], [[v]], (0.01, 0.9, 1e-7))
    rmsprop_rule(p2, g, v2, 0.01, 0.9, 1e-7)
    same("optimizer_update.rmsprop of one parameter", p, p2, dtype=np.float32)
    # more parameters than one launch takes, and one array given twice (two launches, applied in turn)
    many = [rng.standard_normal(3).astype(np.float32) for _ in range(cuda_opt.MAX_PER_LAUNCH + 5)]
    shared = rng.standard_normal(4).astype(np.float32)
    ps = many + [shared, shared]
    gs = [rng.standard_normal(p.shape).astype(np.float32) for p in ps]
    vs = [np.zeros_like(p) for p in ps]
    want_ps = [p.copy() for p in many] + [shared.copy()]
    want_ps.append(want_ps[-1])  # the same array twice, as in the call
    want_vs = [np.zeros_like(p) for p in ps]
    cuda_opt.update_all("momentum", ps, gs, [vs], (0.1, 0.9))
    ref_opt.update_all.definition("momentum", want_ps, gs, [want_vs], (0.1, 0.9))
    for i, (got, want) in enumerate(zip(ps, want_ps)):
        same(f"optimizer_update.momentum of {len(ps)} parameters, parameter {i}", got, want, dtype=np.float32)
    counts["optimizer_update"] += 1
    # a strided parameter cannot be updated in place by the flat kernel: the kernel declines before changing
    # anything, and through the dispatch the definition updates them all
    p = np.zeros((4, 6), np.float32)[:, ::2]
    q = np.zeros(5, np.float32)
    args = ([p, q], [np.ones((4, 3), np.float32), np.ones(5, np.float32)],
            [[np.zeros((4, 3), np.float32), np.zeros(5, np.float32)]], (0.1, 0.9))
    expect("optimizer_update declines a strided parameter", cuda_opt.update_all("momentum", *args) is NotImplemented,
           "it did not decline")
    same("optimizer_update declined: the strided parameter untouched", p, np.zeros((4, 3), np.float32),
         dtype=np.float32)
    same("optimizer_update declined: the other parameter untouched", q, np.zeros(5, np.float32), dtype=np.float32)


def check_lstm_cell(rng):
    """The fused steps against ``npdl.layers.lstm``'s ``lstm_forward_step`` / ``lstm_backward_step``
    definitions, with random upstream gradients and every combination of missing (None) ones; then
    whole sequences forward and backward (per-step outputs or the last one only, truncated BPTT)
    through the definition's loops with their steps sent to these kernels, as the dispatch sends
    them for CuPy arrays (the GPU has no kernel for the loops themselves)."""
    L = lstm_layer
    expect("lstm_cell on a GPU: the loops are the definition's", not any(
        hasattr(cuda_lstm, f) for f in ("forward_sequence", "backward_sequence")), "the cuda module has a loop")
    calls = {"forward_step": 0, "backward_step": 0}

    def counted(fn):
        def run(*args):
            calls[fn.__name__] += 1
            return fn(*args)
        return run

    steps = {"lstm_cell.forward_step": counted(cuda_lstm.forward_step),
             "lstm_cell.backward_step": counted(cuda_lstm.backward_step)}
    for i, (T, N, H) in enumerate([(1, 1, 1), (3, 2, 3), (4, 3, 2)]):
        dtype = (np.float32, np.float64)[i % 2]
        what = f"lstm_cell T={T} N={N} H={H} {np.dtype(dtype).name}"
        z_rec, z_in = ((rng.standard_normal((N, 4 * H)) * 1.5).astype(dtype) for _ in range(2))
        c_prev = rng.standard_normal((N, H)).astype(dtype)
        want = L.lstm_forward_step.definition(z_rec, z_in, c_prev)
        for name, a, b in zip(("G", "c", "tc", "h"), cuda_lstm.forward_step(z_rec, z_in, c_prev), want):
            same(f"{what} forward_step {name}", a, b, dtype=dtype)
        G, _, tc, _ = want
        grads = [rng.standard_normal((N, H)).astype(dtype) for _ in range(3)]  # dh_rec, dy_t, dc_next
        for mask in range(8):
            args = [g if mask >> k & 1 else None for k, g in enumerate(grads)]
            got = cuda_lstm.backward_step(*args, G, tc, c_prev)
            for name, a, b in zip(("dz", "dc_prev"), got, L.lstm_backward_step.definition(*args, G, tc, c_prev)):
                same(f"{what} backward_step (given {mask:03b}) {name}", a, b, dtype=dtype)
        Z_in = (rng.standard_normal((T, N, 4 * H)) * 1.5).astype(dtype)
        Wh = (rng.standard_normal((H, 4 * H)) * 0.5).astype(dtype)
        h0, c0 = (rng.standard_normal((N, H)).astype(dtype) for _ in range(2))
        dy_seq = rng.standard_normal((T, N, H)).astype(dtype)
        cases = (("every step", (dy_seq, None), None), ("last step", (None, dy_seq[-1]), None),
                 ("truncated", (dy_seq, None), 2), ("truncated, last step", (None, dy_seq[-1]), 1))
        want_fwd = L.lstm_forward_sequence.definition(Z_in, Wh, h0, c0)  # NumPy: the definition's steps
        hs, cs, gates, tanh_cs = want_fwd
        want_bwd = [L.lstm_backward_sequence.definition(*args, gates, tanh_cs, cs, Wh, trunc)
                    for _, args, trunc in cases]
        before = dict(calls)
        real_kernel_for = kernels.kernel_for
        kernels.use(None)  # an empty dispatch cache: every step asks kernel_for
        kernels.kernel_for = lambda operation, x: steps.get(operation) or real_kernel_for(operation, x)
        try:
            got_fwd = L.lstm_forward_sequence.definition(Z_in, Wh, h0, c0)
            got_bwd = [L.lstm_backward_sequence.definition(*args, gates, tanh_cs, cs, Wh, trunc)
                       for _, args, trunc in cases]
        finally:
            kernels.kernel_for = real_kernel_for
            kernels.use(None)
        expect(f"{what} the loops called the kernels", calls == {"forward_step": before["forward_step"] + T,
               "backward_step": before["backward_step"] + T * len(cases)}, f"{calls} after {before}")
        for name, a, b in zip(("hs", "cs", "gates", "tanh_cs"), got_fwd, want_fwd):
            same(f"{what} forward {name}", a, b, dtype=dtype)
        for (label, _, _), got, want in zip(cases, got_bwd, want_bwd):
            for name, a, b in zip(("dZ", "dh0", "dc0"), got, want):
                same(f"{what} backward ({label}) {name}", a, b, dtype=dtype)
        counts["lstm_cell"] += 1


def check_dispatch_under_sim():
    """With the simulator as the GPU, a CuPy namespace gets the numba.cuda kernels where they exist.

    A stand-in module named ``cupy`` is enough: the dispatch reads the namespace's name,
    and the wrappers take their namespace from the arrays (NumPy here).
    """
    fake_cupy = pytypes.ModuleType("cupy")
    expect("cuda_available under the simulator", kernels.cuda_available(), "False")
    want = {"im2col": "cuda", "conv2d": "definition", "pool": "cuda", "softmax_xent": "cuda", "gemm_update": "cupy",
            "lstm_cell": "cuda", "simple_rnn": "definition", "activation_backward": "cupy",
            "optimizer_update": "cupy", "bias_activation": "cupy"}
    for op, impl in want.items():
        got = kernels.implementation(fake_cupy, op)
        expect(f"implementation(cupy, {op!r})", got == impl, f"{got!r}, expected {impl!r}")
        counts["dispatch"] += 1
    for op, mod in (("im2col", cuda_im2col), ("pool", cuda_pool), ("softmax_xent", cuda_sx)):
        expect(f"get({op!r}, cupy)", kernels.get(op, fake_cupy) is mod, f"{kernels.get(op, fake_cupy)!r}")
    expect("the convolution on a GPU is its definition (with the cuda im2col)",
           kernels.get("conv2d", fake_cupy) is None, f"{kernels.get('conv2d', fake_cupy)!r}")
    expect("implementation(numpy)", kernels.implementation(np, "pool") == "numba", kernels.implementation(np, "pool"))
    kernels.use("off")
    try:
        expect("kernels off", kernels.implementation(fake_cupy, "pool") == kernels.DEFINITION,
               kernels.implementation(fake_cupy, "pool"))
    finally:
        kernels.use(None)
    kernels.use("cuda")
    try:
        got = {op: kernels.implementation(fake_cupy, op) for op in ("bias_activation", "pool", "optimizer_update",
                                                                    "gemm_update")}
        expect("NPDL_KERNELS=cuda", got == {"bias_activation": "cuda", "pool": "cuda", "optimizer_update": "cuda",
                                            "gemm_update": "cupy"}, f"{got}")
        expect("NPDL_KERNELS=cuda on the CPU", kernels.implementation(np, "activation_backward") == "numba", "")
    finally:
        kernels.use(None)
    # through the kernel a layer would get, on simulator "device" arrays
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    y, _ = kernels.get("pool", fake_cupy).max_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    same("max pooling through the dispatch", y, x[:, :, 1::2, 1::2], exact=True, dtype=np.float32)


# ----------------------------------------------------------------------------- ptx

def check_ptx():
    """Compile every kernel for a real GPU (sm_80), float32 and float64; float32 must stay float32."""
    from numba import cuda, types
    from numba.cuda.cudadrv import nvvm

    if not nvvm.is_available():
        print("libNVVM not found: the PTX check needs a CUDA toolkit (no GPU)")
        sys.exit(SKIP)
    try:  # a Numba that cannot compile the smallest kernel cannot check npdl's (npdl then runs CuPy's or the definitions)
        cuda.compile_ptx(kernels._probe_kernel, (types.float32[::1],), cc=(8, 0))
    except Exception as exc:
        print(f"numba.cuda cannot compile a one-line kernel here ({type(exc).__name__}: {str(exc).splitlines()[0]})")
        sys.exit(SKIP)
    i = types.int64
    for dt in (types.float32, types.float64):
        a4, a2, a1, i4 = dt[:, :, :, ::1], dt[:, ::1], dt[::1], types.int32[:, :, :, ::1]
        # a full launch of parameters and their offsets: what one launch passes at most
        t3, off = types.UniTuple(a1, cuda_opt.MAX_PER_LAUNCH), types.UniTuple(i, cuda_opt.MAX_PER_LAUNCH + 1)
        sigs = {"im2col._im2col": (cuda_im2col._im2col, (a4, a2) + (i,) * 8),
                "im2col._col2im": (cuda_im2col._col2im, (a2, a4) + (i,) * 8),
                "pool._max_forward": (cuda_pool._max_forward, (a4, a4, i4) + (i,) * 6),
                "pool._max_backward": (cuda_pool._max_backward, (a4, i4, a4) + (i,) * 5),
                "pool._avg_forward": (cuda_pool._avg_forward, (a4, a4) + (i,) * 6),
                "pool._avg_backward": (cuda_pool._avg_backward, (a4, a4) + (i,) * 6),
                "softmax_xent._forward": (cuda_sx._forward, (a2, types.int64[::1], a2, a1)),
                "softmax_xent._backward": (cuda_sx._backward, (a2, types.int32[::1], a1, a2)),
                "activation_backward._sigmoid": (cuda_act._sigmoid, (a1, a1, a1)),
                "activation_backward._tanh": (cuda_act._tanh, (a1, a1, a1)),
                "activation_backward._relu": (cuda_act._relu, (a1, a1, a1)),
                "optimizer_update._sgd": (cuda_opt._sgd, (t3,) * 2 + (off,) + (dt,)),
                "optimizer_update._momentum": (cuda_opt._momentum, (t3,) * 3 + (off,) + (dt,) * 2),
                "optimizer_update._nesterov": (cuda_opt._nesterov, (t3,) * 3 + (off,) + (dt,) * 2),
                "optimizer_update._rmsprop": (cuda_opt._rmsprop, (t3,) * 3 + (off,) + (dt,) * 4),
                "optimizer_update._adam": (cuda_opt._adam, (t3,) * 4 + (off,) + (dt,) * 7),
                "bias_activation._sigmoid": (cuda_bias_act._sigmoid, (a1, a1, a1)),
                "bias_activation._sigmoid_no_bias": (cuda_bias_act._sigmoid_no_bias, (a1, a1)),
                "bias_activation._tanh": (cuda_bias_act._tanh, (a1, a1, a1)),
                "bias_activation._relu": (cuda_bias_act._relu, (a1, a1, a1)),
                "lstm_cell._forward": (cuda_lstm._forward, (a2,) * 7),
                "lstm_cell._backward": (cuda_lstm._backward, (a2,) * 7)}
        for name, (kernel, sig) in sigs.items():
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(8, 0))
            except Exception as exc:  # report every kernel, not just the first
                expect(f"PTX of {name} ({dt})", False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            f64 = sorted(set(re.findall(r"\b[a-z]+(?:\.[a-z0-9]+)*\.f64\b", ptx)))
            expect(f"PTX of {name} ({dt})", dt == types.float64 or not f64,
                   f"float64 instructions in the float32 kernel: {f64}")
            counts[name.split(".")[0]] += 1


def main() -> int:
    if MODE == "sim":
        from numba.core import config

        if not config.ENABLE_CUDASIM:
            print("the CUDA simulator is not on (numba.cuda was imported before NUMBA_ENABLE_CUDASIM was set)")
            return 1
        rng = np.random.default_rng(20240611)
        check_im2col(rng)
        check_pool(rng)
        check_softmax_xent(rng)
        check_activation_backward(rng)
        check_optimizer_update(rng)
        check_bias_activation(rng)
        check_lstm_cell(rng)
        check_dispatch_under_sim()
    elif MODE == "ptx":
        check_ptx()
    else:
        print(f"unknown mode {MODE!r}: sim or ptx")
        return 2
    print(f"{MODE}: checked " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    if failures:
        print(f"{len(failures)} mismatch(es):", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
