"""What every layer shares.

A layer is a thin object around a pair of pure functions written in the cs231n
style, ``*_forward(...) -> (y, cache)`` and ``*_backward(dy, cache) -> grads``:

* ``forward(x, training)`` calls the pure forward function, keeps its ``cache``
  (exactly what the backward pass needs, nothing more) and returns ``y``;
* ``backward(dy)`` calls the pure backward function with that cache, stores the
  parameter gradients in ``self.grads`` (same keys as ``self.params``) and returns
  ``dx`` for the layer below. A weight gradient that is a matrix product may be
  stored as a :class:`npdl.deferred.ProductGrad`, formed when it is read.

The gradient checker and the autodiff comparison call the same pure functions,
so what is proven is exactly what trains.

Every layer's ``backward`` is checked the same way, by :class:`Layer` itself: each
subclass's ``forward`` is wrapped to remember the shape of the ``y`` it returned, and
its ``backward`` to compare ``dy.shape`` with it first. ``backward`` before any
``forward`` (or after the caches were cleared) raises :class:`BackwardBeforeForwardError`,
and a ``dy`` of another shape a :class:`npdl.errors.ShapeError` naming the layer and
both shapes -- never NumPy's matmul error, nor a silent broadcast. The checks read
shapes only (host metadata, no device synchronisation): one tuple comparison and one
attribute store per layer and step.
"""

from __future__ import annotations

import functools

from .. import backend
from ..deferred import formed
from ..errors import NpdlError, ShapeError

LAYERS: dict[str, type] = {}


class BackwardBeforeForwardError(NpdlError, RuntimeError):
    """``layer.backward`` was called with no forward pass to differentiate (none yet, or its cache was cleared)."""


def _who(layer) -> str:
    return f"{type(layer).__name__} '{layer.name}'"


def _shape_of(a) -> tuple | None:
    shape = getattr(a, "shape", None)
    return None if shape is None else tuple(int(d) for d in shape)


def _recording_forward(fn):
    """``fn`` (a layer class's ``forward``), remembering the shape of the output for :func:`_checked_backward`."""

    @functools.wraps(fn)
    def forward(self, *args, **kwargs):
        y = fn(self, *args, **kwargs)
        self._y_shape = y.shape
        return y

    return forward


def _checked_backward(fn):
    """``fn`` (a layer class's ``backward``), refusing a ``dy`` that does not fit the last forward pass."""

    @functools.wraps(fn)
    def backward(self, dy):
        if self._y_shape is None or getattr(dy, "shape", None) != self._y_shape:
            _refuse(self, dy)
        try:
            return fn(self, dy)
        except Exception as exc:
            if self.cache is None and not backend.is_out_of_memory(exc):  # cleared by clear_caches() or to()
                raise BackwardBeforeForwardError(
                    f"{_who(self)}: backward called after its cache was cleared (model.clear_caches(), "
                    f"predict/evaluate or .to(device) drop it); run forward(x, training=True) again first") from exc
            raise

    return backward


def _refuse(layer, dy) -> None:
    """Raise the error for a ``backward(dy)`` that :func:`_checked_backward` cannot run (a cold path)."""
    if layer._y_shape is None:
        raise BackwardBeforeForwardError(
            f"{_who(layer)}: backward called before forward; run forward(x, training=True) first, then "
            "backward(dy) with dy = dL/dy of the same shape as its output")
    got = _shape_of(dy)
    if got is None:
        raise ShapeError(f"{_who(layer)}: backward needs dy = dL/dy as an array of shape "
                         f"{tuple(int(d) for d in layer._y_shape)} (the output's), got {type(dy).__name__}")
    raise ShapeError(f"{_who(layer)}: dy must have the shape of the last forward pass's output, "
                     f"{tuple(int(d) for d in layer._y_shape)}, got {got}")


class Layer:
    """Base class: ``params`` and ``grads`` dicts, a ``cache`` between forward and backward."""

    #: names of parameters that are weights: L1/L2 penalties apply to these, never to biases
    weight_names: tuple = ()
    #: the shape of the last forward's output, None before one (see the module docstring)
    _y_shape = None

    def __init_subclass__(cls, register: bool = True, **kwargs):
        """Every layer class is registered by name for :func:`layer_from_config`; a shared base class
        (``class Activation(Layer, register=False)``, or a name starting with ``_``) is not a layer."""
        super().__init_subclass__(**kwargs)
        if register and not cls.__name__.startswith("_"):
            LAYERS[cls.__name__] = cls
        # each class's own forward/backward, once: the checks of the module docstring
        if "forward" in cls.__dict__:
            cls.forward = _recording_forward(cls.__dict__["forward"])
        if "backward" in cls.__dict__:
            cls.backward = _checked_backward(cls.__dict__["backward"])

    def __init__(self, name: str | None = None):
        self.name = name or type(self).__name__.lower()
        self.params: dict = {}
        self.grads: dict = {}
        self.cache = None
        self.trainable = True
        #: False for a network's first layer: backward may then skip dx and return None
        self.need_input_grad = True

    # -- the pair every layer implements
    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x, training: bool = False):
        return self.forward(x, training)

    # -- shapes and configuration
    def output_shape(self, input_shape: tuple) -> tuple:
        """Shape of one example's output given one example's input shape (no batch axis)."""
        return tuple(input_shape)

    def get_config(self) -> dict:
        """Constructor arguments that rebuild this layer (without its parameter values)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        return cls(**config)

    # -- parameters
    @property
    def device(self):
        """The device of the parameters (CPU for a layer without parameters)."""
        for p in self.params.values():
            return backend.device_of(p)
        return getattr(self, "_device", backend.get_device("cpu"))

    def to(self, device) -> "Layer":
        """Move parameters (and any gradients) to ``device``; returns the layer."""
        device = backend.get_device(device)
        self.params = {k: device.asarray(v) for k, v in self.params.items()}
        self.grads = {k: device.asarray(formed(v)) for k, v in self.grads.items() if v is not None}
        self._device = device
        self.cache = self._y_shape = None
        return self

    def parameter_count(self) -> int:
        n = 0
        for p in self.params.values():
            size = 1
            for d in p.shape:
                size *= int(d)
            n += size
        return n

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def layer_from_config(config: dict) -> Layer:
    """Rebuild a layer from ``{"class": name, "config": {...}}``."""
    cls = LAYERS.get(config["class"])
    if cls is None:
        raise ValueError(f"unknown layer class {config['class']!r}; known: {', '.join(sorted(LAYERS))}")
    return cls.from_config(dict(config["config"]))
