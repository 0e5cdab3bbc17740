"""Check your own layer, loss or model: ``check_layer``, ``check_loss``, ``check_model``.

Write a :class:`npdl.layers.Layer` subclass (``forward``, ``backward``, ``params``, ``grads``)
and prove its backward pass::

    from npdl.gradcheck import check_layer

    report = check_layer(MyLayer(...), x)     # x: a batch of inputs, any float dtype
    print(report)                             # a table; for a wrong gradient, where it is wrong
    assert report.ok                          # or report.raise_for_failure()

What is checked, in float64 (``dtype``) on a copy of the layer (its parameters cast, the
layer itself untouched): with a random upstream gradient ``dy`` (seeded; never ones, which
would hide a transposed or permuted Jacobian), the layer's own ``dx = backward(dy)`` and
``grads[k]`` for every parameter ``k``, i.e. the gradients of ``L = sum(forward(x) * dy)``,
against

* ``"numeric"``: central differences of ``forward``, element by element (:mod:`.numeric`);
* ``"torch"``: PyTorch autograd of the layer's *own* ``forward`` run on torch tensors, and
* ``"jax"``: ``jax.vjp`` of that ``forward`` run on JAX arrays.

The autodiff references need no hand-written reference: a forward written as array-API code
(namespace from the arrays, :func:`npdl.backend.namespace`, as npdl's own layers are) runs
unchanged on torch tensors and JAX arrays. Where one cannot run (the library is missing; the
forward calls NumPy directly; JAX meets an in-place write, since its arrays are immutable;
autograd finds a value it needs overwritten), ``report.references`` says why, and the other
references still decide. A row passes when ``max|a - r| <= atol + rtol * max(|a| + |r|)``
(the relative error of ``npdl gradcheck``); by default ``rtol`` is 1e-6 against finite
differences and 1e-8 against autodiff in float64 (1e-2 and 1e-5 in float32).

A failing check raises nothing: ``report.ok`` is False and ``str(report)`` names the input or
parameter and lists its largest mismatches with their indices (``record.worst``).
"""

from __future__ import annotations

import copy
import traceback

from .. import backend
from ..deferred import formed
from ..layers.base import Layer
from . import user_engines as engines
from .numeric import relative_error
from .runner import AUTODIFF_TOL, NUMERIC_TOL
from .user_report import CheckRecord, Report, worst_entries

#: default (numeric rtol, autodiff rtol, finite-difference step) per dtype
DEFAULTS = {"float64": (NUMERIC_TOL, AUTODIFF_TOL, 1e-6), "float32": (1e-2, 1e-5, 1e-3)}


def check_layer(layer, x, *, dtype="float64", seed=0, references=engines.ENGINES, rtol=None, atol=0.0,
                training=False, eps=None) -> Report:
    """Check ``layer``'s backward pass at input ``x``; returns a :class:`Report` (never raises on a
    failing gradient: see ``report.ok``, ``str(report)``, ``report.raise_for_failure()``).

    ``layer``: any :class:`~npdl.layers.Layer` whose ``forward(x, training)`` returns ``y`` and
    whose ``backward(dy)`` returns ``dx`` and fills ``grads`` (same keys as ``params``).
    ``x``: an input batch (on the layer's device). ``dtype``: ``"float64"`` (default) or
    ``"float32"``. ``seed``: the upstream gradient ``dy`` (shape of ``y``) is drawn from a
    :class:`npdl.backend.Generator` with this seed. ``references``: any of ``"numeric"``,
    ``"torch"``, ``"jax"``. ``rtol``/``atol``: see the module docstring (``rtol=None``: the
    defaults). ``training``: the mode of the forward; with ``True`` a layer drawing random
    numbers (its ``Generator`` attributes; an ``rng`` of ``None`` gets one seeded ``seed``)
    draws the same ones in every forward of the check, which finite differences then check
    (the autodiff references cannot repeat the draws, and say so). ``eps``: the
    finite-difference step (default 1e-6 in float64, 1e-3 in float32).

    One row per (input ``x`` or parameter, autodiff reference that ran), each carrying the
    finite-difference error as well.
    """
    dtype = backend.resolve_float(dtype)
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer: expected an npdl Layer, got {type(layer).__name__}")
    lay = _prepared(layer, dtype, training, seed)
    device = lay.device if lay.params else backend.device_of(x)
    x = _cast(device.asarray(x), dtype)
    xname = "input" if "x" in lay.params else "x"
    names = [k for k, v in lay.params.items() if backend.is_floating(v)]
    saved = _generator_states([lay]) if training else []

    def run(values):
        for k in names:
            lay.params[k] = values[k]
        _restore(saved)
        return lay.forward(values[xname], training)

    values = {xname: x, **{k: lay.params[k] for k in names}}

    def analytic(dy):
        lay.need_input_grad = True
        dx = lay.backward(dy)
        grads = {xname: dx, **{k: lay.grads.get(k) for k in names}}
        return {k: formed(_required(g, k, "backward(dy) returned None for" if k == xname
                                    else "backward(dy) left no gradient in layer.grads for")) for k, g in grads.items()}

    return _check(type(layer).__name__, run, values, [xname, *names], analytic, device, dtype, seed,
                  references, rtol, atol, eps, random=bool(saved))


def check_loss(loss, y_pred, y_true, *, dtype="float64", seed=0, references=engines.ENGINES, rtol=None,
               atol=0.0, eps=None) -> Report:
    """Check a loss's ``backward(dloss)`` against the gradient of ``dloss * forward(y_pred, y_true)``
    with respect to ``y_pred``; ``dloss`` is a random (seeded) number. Float targets are cast to
    ``dtype`` too, integer labels stay as they are. Options and result as :func:`check_layer`.
    ``loss``: an :class:`npdl.losses.Loss` (``forward(pred, target)`` -> 0-d array,
    ``backward(dloss)`` -> dL/d pred) or a loss name (``"mse"``)."""
    from .. import losses

    dtype = backend.resolve_float(dtype)
    lossobj = copy.deepcopy(losses.get_loss(loss))
    device = backend.device_of(y_pred)
    values = {"y_pred": _cast(device.asarray(y_pred), dtype), "y_true": _cast(device.asarray(y_true), dtype)}

    def run(v):
        return lossobj.forward(v["y_pred"], v["y_true"])

    def analytic(dloss):
        return {"y_pred": formed(_required(lossobj.backward(dloss), "y_pred", "backward(dloss) returned None for"))}

    return _check(type(lossobj).__name__, run, values, ["y_pred"], analytic, device, dtype, seed,
                  references, rtol, atol, eps)


def check_model(model, x, y, *, loss=None, dtype="float64", seed=0, references=engines.ENGINES, rtol=None,
                atol=0.0, training=False, eps=None) -> Report:
    """Check a whole model: the gradient of ``dloss * loss(model(x), y)`` with respect to ``x`` and
    every parameter of every layer (named ``"<layer index>.<param>"``, as
    :meth:`npdl.models.Sequential.step_inputs` names them), from ``model.backward``.

    ``model``: a :class:`npdl.models.Sequential` (any object with ``layers``, ``forward(x, training)``
    and ``backward(dloss, input_grad=True)``); ``loss``: a loss or its name, by default the
    compiled one. The L1/L2 penalties are not included (``npdl gradcheck --step`` checks those).
    Options and result as :func:`check_layer`.
    """
    from .. import losses

    dtype = backend.resolve_float(dtype)
    if loss is None and getattr(model, "loss", None) is None:
        raise ValueError("check_model: pass loss=... or compile the model first")
    m = copy.deepcopy(model)
    lossobj = copy.deepcopy(losses.get_loss(loss if loss is not None else model.loss))
    m.layers = [_prepared(layer, dtype, training, seed, copied=True) for layer in m.layers]
    slots = [(f"{i}.{k}", layer, k) for i, layer in enumerate(m.layers)
             for k, v in layer.params.items() if backend.is_floating(v)]
    device = slots[0][1].device if slots else backend.device_of(x)
    values = {"x": _cast(device.asarray(x), dtype), "y": _cast(device.asarray(y), dtype)}
    values.update({name: layer.params[k] for name, layer, k in slots})
    saved = _generator_states(m.layers) if training else []

    def run(v):
        for name, layer, k in slots:
            layer.params[k] = v[name]
        _restore(saved)
        return lossobj.forward(m.forward(v["x"], training), v["y"])

    def analytic(dloss):
        dx = m.backward(lossobj.backward(dloss), input_grad=True)
        grads = {"x": _required(dx, "x", "backward returned None for")}
        for name, layer, k in slots:
            grads[name] = _required(layer.grads.get(k), name, "backward left no gradient in layer.grads for")
        return {k: formed(g) for k, g in grads.items()}

    subject = f"model:{getattr(model, 'name', type(model).__name__)}"
    return _check(subject, run, values, ["x", *(s[0] for s in slots)], analytic, device, dtype, seed,
                  references, rtol, atol, eps, random=bool(saved))


# ---------------------------------------------------------------------------------- the core

def _check(subject, run, values, wrt, analytic, device, dtype, seed, references, rtol, atol, eps,
           random=False) -> Report:
    """Run the forward, draw ``dy``, take the analytic gradients, compare with each reference.
    ``random``: the forward draws random numbers (training mode), which only ``run`` repeats."""
    references = tuple(references)
    unknown = [r for r in references if r not in engines.ENGINES]
    if unknown:
        raise ValueError(f"unknown reference(s) {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(engines.ENGINES)}")
    num_rtol, ad_rtol, default_eps = DEFAULTS[dtype]
    if rtol is not None:
        num_rtol = ad_rtol = float(rtol)
    tolerances = {"numeric": num_rtol, "autodiff": ad_rtol}
    kind = device.kind
    try:
        y = run(dict(values))
        dy = backend.Generator(device, seed).normal(tuple(y.shape), dtype=dtype)
        grads = analytic(dy)
    except Exception as exc:  # a crash is a failed check, reported in its rows
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
        records = [CheckRecord(subject, w, kind, dtype, None, None, None, False, error) for w in wrt]
        why = "not run: the forward or backward pass itself failed (see the rows)"
        return Report(subject, records, dict.fromkeys(references, why), tolerances)
    expected, status = {}, {}
    for ref in references:
        ok, what = engines.available(ref)
        if random and ref != "numeric":
            ok, what = False, engines.RANDOM_FORWARD
        if not ok:
            status[ref] = f"not run: {what}"
            continue
        try:
            if ref == "numeric":
                expected[ref] = engines.numeric(run, values, wrt, dy, default_eps if eps is None else eps)
            else:
                vjp = engines.torch_vjp if ref == "torch" else engines.jax_vjp
                expected[ref] = {k: device.asarray(backend.to_numpy(v)) for k, v in vjp(run, values, wrt, dy).items()}
            status[ref] = f"ran ({what})"
        except Exception as exc:
            status[ref] = f"not run: {engines.why_failed(ref, exc)}"
    autodiff = [r for r in ("torch", "jax") if r in expected] or [None]
    records = []
    for w in wrt:
        for ref in autodiff:
            records.append(_row(subject, w, kind, dtype, grads[w], expected.get("numeric", {}).get(w),
                                ref, expected[ref][w] if ref else None, num_rtol, ad_rtol, atol))
    return Report(subject, records, status, tolerances)


def _row(subject, wrt, kind, dtype, a, num, ref, auto, num_rtol, ad_rtol, atol) -> CheckRecord:
    try:
        checks = [(name, r, tol) for name, r, tol in (("numeric", num, num_rtol), (ref, auto, ad_rtol))
                  if r is not None]
        errs = {name: (relative_error(a, r), _passes(a, r, tol, atol)) for name, r, tol in checks}
    except Exception as exc:  # e.g. a gradient of the wrong shape
        return CheckRecord(subject, wrt, kind, dtype, None, ref, None, False, f"{type(exc).__name__}: {exc}")
    passed = all(ok for _, ok in errs.values())
    worst = []
    if not passed:  # show the mismatch against the reference that failed, an exact one first
        name, r, _ = next(c for c in reversed(checks) if not errs[c[0]][1])
        worst = worst_entries(a, r, name)
    num_err = errs["numeric"][0] if "numeric" in errs else None
    ad_err = errs[ref][0] if ref in errs else None
    return CheckRecord(subject, wrt, kind, dtype, num_err, ref, ad_err, passed, worst=worst)


def _passes(a, r, rtol, atol) -> bool:
    """``max|a - r| <= atol + rtol * max(1e-8, max(|a| + |r|))``."""
    xp = backend.namespace(a, r)
    if any(int(d) == 0 for d in a.shape):
        return True
    diff = backend.to_float(xp.max(xp.abs(a - r)))
    scale = max(1e-8, backend.to_float(xp.max(xp.abs(a) + xp.abs(r))))
    return diff <= atol + rtol * scale


# ------------------------------------------------------------------------- preparing a copy

def _cast(x, dtype):
    """A float array as ``dtype`` (a copy); integer labels as they are."""
    if not backend.is_floating(x):
        return x
    xp = backend.namespace(x)
    return xp.astype(x, backend.float_dtype(xp, dtype))


def _required(g, name, what):
    if g is None:
        raise ValueError(f"{what} {name!r}")
    return g


def _layers_in(obj, seen=None):
    """``obj`` and every layer it holds (as an attribute, or in a list or tuple attribute)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    for v in vars(obj).values():
        for item in (v if isinstance(v, (list, tuple)) else (v,)):
            if isinstance(item, Layer):
                yield from _layers_in(item, seen)


def _prepared(layer, dtype, training, seed, copied=False):
    """A copy of ``layer`` computing in ``dtype``: parameters cast, ``dtype`` attributes set, and
    in training mode a seeded generator where ``rng`` is ``None``."""
    lay = layer if copied else copy.deepcopy(layer)
    for obj in _layers_in(lay):
        for k, p in list(obj.params.items()):
            if backend.is_floating(p):
                obj.params[k] = _cast(p, dtype)
        if isinstance(vars(obj).get("dtype"), str) and vars(obj)["dtype"] in backend.FLOAT_DTYPES:
            obj.dtype = dtype
        obj.cache = None
        if training and "rng" in vars(obj) and obj.rng is None:
            obj.rng = backend.Generator(obj.device, seed)
    return lay


def _generator_states(layers) -> list:
    """``[(generator, its state now)]`` for every :class:`npdl.backend.Generator` the layers hold."""
    return [(g, g.get_state()) for layer in layers for obj in _layers_in(layer) for g in vars(obj).values()
            if isinstance(g, backend.Generator)]


def _restore(saved) -> None:
    """Put each generator back in its saved state, so every forward draws the same numbers."""
    for g, state in saved:
        g.set_state(state)
