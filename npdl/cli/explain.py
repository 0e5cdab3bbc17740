"""``npdl explain LAYER``: a layer's derivation, where its code is, and the shape of every array.

::

    npdl explain dense
    npdl explain Conv2D --input 2,1,28,28 --args in_channels=1,out_channels=20,kernel_size=5
    npdl explain mse --input 4,3

Prints, for a layer (or a loss):

1. where the code is: ``file:line`` of the class, its ``forward`` and ``backward`` methods and
   the pure ``*_forward`` / ``*_backward`` functions they call;
2. the derivation: the class's and those functions' docstrings, their math written in plain
   Unicode (:func:`npdl.docmath.to_terminal`);
3. the shapes: the layer is built from its own constructor arguments (``--args``; a small
   default without them), run forward (``training=True``) on random float64 data of shape
   ``--input`` (seeded) and backward on a random ``dy``, and the shape of every array is listed:
   the input, the output, each cache entry, ``dy``, ``dx`` and each parameter gradient.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import sys
import textwrap

#: class name -> (default constructor arguments, input shape for a layer built with them)
LAYER_DEFAULTS = {
    "Dense": ({"n_in": 5, "n_out": 3}, lambda l: (4, l.n_in)),
    "Conv2D": ({"in_channels": 1, "out_channels": 2, "kernel_size": 3},
               lambda l: (2, l.in_channels, max(6, l.kernel_size[0] + 2), max(6, l.kernel_size[1] + 2))),
    "ChannelBias": ({"channels": 2}, lambda l: (2, l.channels, 4, 4)),
    "Flatten": ({}, lambda l: (2, 3, 4, 4)),
    "MaxPool2D": ({}, lambda l: (2, 2, 6, 6)),
    "AvgPool2D": ({}, lambda l: (2, 2, 6, 6)),
    "TiedAutoencoder": ({"n_visible": 6, "n_hidden": 4}, lambda l: (4, l.n_visible)),
    "Autoencoder": ({"n_visible": 6, "n_hidden": 4}, lambda l: (4, l.n_visible)),
    "StackedTiedAutoencoder": ({"sizes": (6, 4, 3)}, lambda l: (4, l.sizes[0])),
    "SimpleRNN": ({"n_in": 3, "units": 4}, lambda l: (2, 5, l.n_in)),
    "LSTM": ({"n_in": 3, "units": 4}, lambda l: (2, 5, l.n_in)),
    "TimeDistributed": ({"n_in": 3, "n_out": 2}, lambda l: (2, 5, l.layer.n_in)),
}
#: input shape of a layer not listed above (activations, dropout, noise) and of a loss's prediction
DEFAULT_SHAPE = (4, 5)
PURE = re.compile(r"_(forward|backward)(_|$)")


# ------------------------------------------------------------------------------ finding things

def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def find(name: str):
    """``("layer" | "loss", class)`` for a layer or loss name, any case, with or without underscores."""
    from ..layers import LAYERS
    from ..losses import LOSSES

    layers = {_key(n): cls for n, cls in LAYERS.items()}
    losses = {**{_key(cls.__name__): cls for cls in LOSSES.values()}, **{_key(n): cls for n, cls in LOSSES.items()}}
    if _key(name) in layers:
        return "layer", layers[_key(name)]
    if _key(name) in losses:
        return "loss", losses[_key(name)]
    raise LookupError(f"no layer or loss named {name!r}; layers: {', '.join(sorted(LAYERS))}; "
                      f"losses: {', '.join(sorted(LOSSES))}")


def _source_tree(fn):
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return None


def _calls(cls, fn, depth=2):
    """The pure ``*_forward``/``*_backward`` functions ``fn`` calls, in source order (and those of the
    ``self.<method>`` it calls, ``depth`` levels down)."""
    tree = _source_tree(fn)
    if tree is None:
        return []
    found = []
    nodes = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
    for node in nodes:
        f = node.func
        target = None
        if isinstance(f, ast.Name) and PURE.search(f.id):
            target = inspect.unwrap(fn).__globals__.get(f.id)
        elif isinstance(f, ast.Attribute) and f.attr in ("forward_fn", "backward_fn"):
            target = getattr(cls, f.attr, None)
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            owner = f.value.id
            if owner == "self" and depth > 0 and inspect.isfunction(getattr(cls, f.attr, None)):
                found += _calls(cls, getattr(cls, f.attr), depth - 1)
            elif PURE.search(f.attr):
                target = getattr(inspect.unwrap(fn).__globals__.get(owner), f.attr, None)
        if inspect.isfunction(target):
            found.append(target)
    return found


def _partner(fn):
    """``X_backward`` for ``X_forward`` (and the reverse) from ``fn``'s module, or None."""
    for end, other in (("_forward", "_backward"), ("_backward", "_forward")):
        if fn.__name__.endswith(end):
            partner = vars(sys.modules[fn.__module__]).get(fn.__name__[: -len(end)] + other)
            return partner if inspect.isfunction(partner) else None
    return None


def pure_functions(cls) -> list:
    """The pure functions behind ``cls.forward`` and ``cls.backward``, each ``X_forward`` with its
    ``X_backward`` partner from the same module (the derivation of a backward is often there)."""
    out = []
    for fn in _calls(cls, cls.forward) + _calls(cls, cls.backward):
        partner = _partner(fn)
        pair = [fn, partner] if fn.__name__.endswith("_forward") else [partner, fn]
        out += [f for f in pair if f is not None and f not in out]
    return out


def location(obj) -> str:
    """``path:line`` of a class or function; npdl's own as ``npdl/...``."""
    import npdl

    obj = inspect.unwrap(obj)
    path = inspect.getsourcefile(obj)
    line = inspect.getsourcelines(obj)[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(npdl.__file__)))
    rel = os.path.relpath(path, root)
    return f"{path if rel.startswith('..') else rel}:{line}"


# ---------------------------------------------------------------------------------- shapes

def _describe(value) -> str:
    from .. import backend
    from ..deferred import ProductGrad

    if isinstance(value, ProductGrad):
        return (f"{tuple(value.shape)}\t{backend.dtype_name(value)}  kept as its factors "
                f"({len(value.pairs)} product(s) Aᵀ B), formed when read")
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # shape, a tab, dtype: the shape gets a column
        return f"{tuple(int(d) for d in value.shape)}\t{backend.dtype_name(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _has_array(value) -> bool:
    if isinstance(value, (tuple, list)):
        return any(_has_array(v) for v in value)
    if isinstance(value, dict):
        return any(_has_array(v) for v in value.values())
    return hasattr(value, "shape")


def _cache_expressions(fn):
    """The cache expressions in ``fn``'s source: ``c`` of each ``return y, c`` and ``self.cache = c``."""
    tree = _source_tree(fn) if fn is not None else None
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 2:
            yield node.value.elts[1]
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute) \
                and node.targets[0].attr == "cache":
            yield node.value


def _cache_names(sources, cache) -> list | None:
    """The names of a cache's entries, read from the code that built it (``return y, (x, W, ...)``)."""
    for fn in sources:
        for c in _cache_expressions(fn):
            if isinstance(cache, tuple) and isinstance(c, ast.Tuple) and len(c.elts) == len(cache):
                return [ast.unparse(e) for e in c.elts]
            if not isinstance(cache, (tuple, list, dict)) and isinstance(c, ast.Name):
                return [c.id]
    return None


def cache_rows(cache, sources=(), prefix="cache") -> list:
    """``(name, description)`` for every entry of a cache (tuples, lists and dicts opened)."""
    if isinstance(cache, dict):
        items = [(f"{prefix}[{k!r}]", v) for k, v in cache.items()]
    elif isinstance(cache, (tuple, list)):
        names = _cache_names(sources, tuple(cache)) if prefix == "cache" else None
        items = [(f"{prefix}.{n}" if names else f"{prefix}[{i}]", v)
                 for i, (n, v) in enumerate(zip(names or [None] * len(cache), cache))]
    else:
        names = _cache_names(sources, cache) if prefix == "cache" else None
        return [(f"{prefix}.{names[0]}" if names else prefix, _describe(cache))]
    rows = []
    for name, v in items:
        if isinstance(v, (tuple, list, dict)) and _has_array(v):
            rows += cache_rows(v, (), name)
        else:
            rows.append((name, _describe(v)))
    return rows


def _build_layer(cls, kwargs, seed):
    from .. import backend
    from ..layers import Dense

    params = inspect.signature(cls).parameters
    kw = dict(kwargs)
    if cls.__name__ == "TimeDistributed":  # the wrapped Dense is built from the arguments
        return cls(_build_layer(Dense, kw, seed))
    if "dtype" in params:
        kw.setdefault("dtype", "float64")
    if "rng" in params:
        kw.setdefault("rng", backend.Generator("cpu", seed))
    return cls(**kw)


def trace_layer(cls, kwargs=None, input_shape=None, seed=0):
    """``(layer, rows)``: the layer built from ``kwargs`` (its defaults without them) and
    ``(phase, name, description)`` for every array of one forward and backward pass."""
    from .. import backend

    default_args, default_shape = LAYER_DEFAULTS.get(cls.__name__, ({}, lambda l: DEFAULT_SHAPE))
    layer = _build_layer(cls, default_args if kwargs is None else kwargs, seed)
    shape = tuple(input_shape) if input_shape else default_shape(layer)
    g = backend.Generator("cpu", seed)
    dtype = getattr(layer, "dtype", None) or "float64"
    x = g.normal(shape, dtype=dtype)
    y = layer.forward(x, training=True)
    cache = layer.cache
    dy = g.normal(tuple(y.shape), dtype=backend.dtype_name(y))
    layer.need_input_grad = True
    dx = layer.backward(dy)
    fns = pure_functions(cls)
    forward_fn = next((f for f in fns if f.__name__.endswith("_forward")), None)
    rows = [("forward", "x", _describe(x))]
    rows += [("forward", f"params[{k!r}]", _describe(v)) for k, v in layer.params.items()]
    rows += [("forward", "y", _describe(y))]
    rows += [("forward", n, d) for n, d in cache_rows(cache, (forward_fn, cls.forward))]
    rows += [("backward", "dy", _describe(dy)), ("backward", "dx", _describe(dx))]
    rows += [("backward", f"grads[{k!r}]", _describe(layer.grads.get(k))) for k in layer.params]
    return layer, rows


def _loss_inputs(cls, shape, g):
    from ..layers import softmax_forward

    name = cls.__name__
    if name in ("SoftmaxCrossEntropy", "NegativeLogLikelihood"):
        pred = g.normal(shape, dtype="float64")
        pred = softmax_forward(pred)[0] if name == "NegativeLogLikelihood" else pred
        return pred, g.integers(0, int(shape[-1]), (int(shape[0]),))
    if "Logits" in name:
        return g.normal(shape, dtype="float64"), g.uniform(shape, dtype="float64")
    if "Binary" in name or "Reconstruction" in name:
        return g.uniform(shape, 0.05, 0.95, dtype="float64"), g.uniform(shape, dtype="float64")
    return g.normal(shape, dtype="float64"), g.normal(shape, dtype="float64")


def trace_loss(cls, kwargs=None, input_shape=None, seed=0):
    """As :func:`trace_layer`, for a loss: prediction, target, loss, cache, ``dloss``, ``dpred``."""
    from .. import backend

    loss = cls(**(kwargs or {}))
    g = backend.Generator("cpu", seed)
    pred, target = _loss_inputs(cls, tuple(input_shape) if input_shape else (4, 3), g)
    value = loss.forward(pred, target)
    cache = loss.cache
    dloss = g.normal((), dtype="float64")
    dpred = loss.backward(dloss)
    forward_fn = next((f for f in pure_functions(cls) if f.__name__.endswith("_forward")), None)
    rows = [("forward", "prediction", _describe(pred)), ("forward", "target", _describe(target)),
            ("forward", "loss", _describe(value))]
    rows += [("forward", n, d) for n, d in cache_rows(cache, (forward_fn, cls.forward))]
    rows += [("backward", "dloss", _describe(dloss)), ("backward", "dprediction", _describe(dpred))]
    return loss, rows


# --------------------------------------------------------------------------------- the text

def explain(name, input_shape=None, kwargs=None, seed=0) -> str:
    """The whole text ``npdl explain`` prints for layer or loss ``name`` (or a Layer/Loss class)."""
    from ..docmath import to_terminal

    from ..losses import Loss

    if isinstance(name, str):
        kind, cls = find(name)
    else:
        kind, cls = ("loss" if issubclass(name, Loss) else "layer"), name
    obj, rows = (trace_layer if kind == "layer" else trace_loss)(cls, kwargs, input_shape, seed)
    fns = pure_functions(cls)
    title = repr(obj) if kind == "layer" else \
        f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in obj.get_config().items())})"
    out = [f"{title}   ({kind}, {inspect.getmodule(cls).__name__})", "", "Where the code is"]
    places = [(f"class {cls.__name__}", cls), (cls.forward.__qualname__, cls.forward),
              (cls.backward.__qualname__, cls.backward), *((f.__name__, f) for f in fns)]
    width = max(len(label) for label, _ in places)
    out += [f"  {label.ljust(width)}  {location(target)}" for label, target in places]
    out += ["", "Derivation"]
    for label, target in [(cls.__name__, cls), *((f.__name__, f) for f in fns)]:
        doc = inspect.getdoc(target)
        if doc:
            out += ["", f"  -- {label}", textwrap.indent(to_terminal(doc).rstrip(), "  ")]
    shape = next(d for p, n, d in rows if n in ("x", "prediction")).split("\t")[0]
    mode = " (training=True)" if kind == "layer" else ""
    out += ["", f"Shapes: one forward{mode} on random float64 data {shape} (seed {seed}), then backward "
                f"from a random upstream gradient"]
    width = max(len(n) for _, n, _ in rows)
    shape_width = max(len(d.partition("\t")[0]) for _, _, d in rows if "\t" in d)
    phase = None
    for p, n, d in rows:
        if "\t" in d:  # an array: its shape, then its dtype in a column of their own
            shape, _, rest = d.partition("\t")
            d = f"{shape.ljust(shape_width)}  {rest}"
        out.append(f"  {(p if p != phase else '').ljust(8)}  {n.ljust(width)}  {d}".rstrip())
        phase = p
    return "\n".join(out)


def parse_shape(text: str) -> tuple:
    """``"2,1,28,28"`` (or ``2x1x28x28``) -> ``(2, 1, 28, 28)``."""
    parts = [p for p in re.split(r"[,x\s()]+", text.strip()) if p]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--input must be positive integers separated by commas, e.g. 2,1,28,28; got {text!r}")
    return tuple(int(p) for p in parts)


def parse_kwargs(text: str) -> dict:
    """``"in_channels=1,kernel_size=(5, 5),padding=same"`` -> a dict; values are Python literals
    where they parse as one, else strings. Commas inside brackets do not split."""
    out, depth, start, pieces = {}, 0, 0, []
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    for piece in (p.strip() for p in pieces):
        if not piece:
            continue
        if "=" not in piece:
            raise ValueError(f"--args wants name=value pairs separated by commas, got {piece!r}")
        key, value = (s.strip() for s in piece.split("=", 1))
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def run(args) -> int:
    from ..errors import NpdlError

    try:
        shape = parse_shape(args.input) if args.input else None
        kwargs = parse_kwargs(args.args) if args.args is not None else None
        print(explain(args.name, shape, kwargs, args.seed))
    except (LookupError, ValueError, TypeError, NpdlError) as exc:
        print(f"npdl explain: error: {exc}", file=sys.stderr)
        return 2
    return 0


def register(sub) -> None:
    p = sub.add_parser("explain", help="a layer's derivation, where its code is, and every array's shape",
                       description="Print a layer's (or loss's) derivation from its docstrings, the file:line of "
                                   "its forward and backward code, and the shape of every array of one forward "
                                   "and backward pass on random float64 data.")
    p.add_argument("name", metavar="LAYER", help="a layer or loss, e.g. dense, Conv2D, lstm, mse")
    p.add_argument("--input", metavar="SHAPE", help="input shape with the batch axis, e.g. 2,1,28,28 "
                                                     "(default: a small one that fits the layer)")
    p.add_argument("--args", metavar="K=V,...", help="constructor arguments, e.g. "
                                                      "in_channels=1,out_channels=20,kernel_size=5 (default: small "
                                                      "ones; for TimeDistributed, those of the wrapped Dense)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random data (default 0)")
    p.set_defaults(func=run)
