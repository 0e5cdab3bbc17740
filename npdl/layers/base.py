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
"""

from __future__ import annotations

from .. import backend
from ..deferred import formed

LAYERS: dict[str, type] = {}


class Layer:
    """Base class: ``params`` and ``grads`` dicts, a ``cache`` between forward and backward."""

    #: names of parameters that are weights: L1/L2 penalties apply to these, never to biases
    weight_names: tuple = ()

    def __init_subclass__(cls, register: bool = True, **kwargs):
        """Every layer class is registered by name for :func:`layer_from_config`; a shared base class
        (``class Activation(Layer, register=False)``, or a name starting with ``_``) is not a layer."""
        super().__init_subclass__(**kwargs)
        if register and not cls.__name__.startswith("_"):
            LAYERS[cls.__name__] = cls

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
        self.cache = None
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
