"""Where a model's numbers live and how they are saved: devices, parameters, generators, config.

A mixin of :class:`npdl.models.Sequential`, kept apart so that the training
logic in ``sequential.py`` stays short. Global parameter names are
``"<layer index>.<param name>"`` (``"0.W"``, ``"0.b"``, ``"2.W"``): the keys of
``state_dict``, of the optimizer's slots and of checkpoints.
"""

from __future__ import annotations

from .. import backend
from ..errors import DTypeError, ShapeError
from ..layers.base import layer_from_config


def _shape(a) -> tuple:
    return tuple(int(d) for d in a.shape)


def _nbytes(a) -> int:
    size = 1
    for d in a.shape:
        size *= int(d)
    try:
        return size * a.dtype.itemsize
    except AttributeError:  # array-api-strict dtypes have no itemsize
        return size * (8 if "64" in str(a.dtype) else 4)


def _generator_on(device, rng):
    """``rng`` continued on ``device``: CPU and strict share NumPy's PCG64, so the state carries over
    exactly; on a GPU CuPy cannot import it and reseeds (see ``Generator.get_state``)."""
    moved = backend.Generator(device, rng.seed)
    moved.set_state(rng.get_state())
    return moved


class ModelState:
    """Device moves, state dicts, generator states and configs for a list of ``self.layers``."""

    # -- devices
    @property
    def device(self):
        """The device of the parameters (the one passed to ``to``, or the CPU, for a model without any)."""
        for layer in self.layers:
            if layer.params:
                return layer.device
        return getattr(self, "_device", None) or backend.get_device("cpu")

    def to(self, device):
        """Move parameters, layer generators and optimizer state to ``device``; returns the model."""
        device = backend.get_device(device)
        try:
            for layer in self.layers:
                layer.to(device)
                rng = getattr(layer, "rng", None)
                if isinstance(rng, backend.Generator) and rng.device != device:
                    layer.rng = _generator_on(device, rng)
            if getattr(self, "optimizer", None) is not None:
                self.optimizer.to(device)
        except Exception as exc:
            if not backend.is_out_of_memory(exc):
                raise
            mib = sum(_nbytes(v) for v in self.parameters().values()) / 2 ** 20
            raise backend.out_of_memory(
                exc, f"moving model '{self.name}' ({mib:.1f} MiB of parameters) to {device}",
                "free GPU memory held by other arrays or processes, or use a smaller model; some layers may "
                "already be on the GPU: model.to('cpu') brings them all back") from exc
        self._device = device
        return self

    # -- parameters
    def parameters(self, trainable_only: bool = False) -> dict:
        """``{"0.W": array, ...}``: the arrays the layers hold (not copies)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                if layer.trainable or not trainable_only for k, v in layer.params.items()}

    def state_dict(self, copy: bool = True) -> dict:
        """``{"0.W": array, "0.b": array, ...}`` for every parameter, frozen ones included.

        ``copy=True`` (default) returns copies on the model's device, so later training
        cannot change a saved state; ``copy=False`` returns the live arrays.
        """
        params = self.parameters()
        if not copy:
            return params
        return {k: backend.namespace(v).asarray(v, copy=True) for k, v in params.items()}

    def load_state_dict(self, state: dict) -> None:
        """Copy ``state`` (arrays of any device, e.g. NumPy from a checkpoint) into the parameters.

        Names, shapes and dtypes must match exactly (npdl never casts silently); every
        check runs before the first copy, so a refused state leaves the model as it was.
        Values are written into the existing arrays, so anything holding them sees the change.
        """
        own = self.parameters()
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if missing or unexpected:
            raise ShapeError(f"{self.name}.load_state_dict: the state does not match the model's layers: "
                             f"missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'} "
                             "(was it saved from a different architecture?)")
        for name, target in own.items():
            value = state[name]
            if _shape(value) != _shape(target):
                raise ShapeError(f"{self.name}.load_state_dict: '{name}' has shape {_shape(value)} in the state "
                                 f"but {_shape(target)} in the model")
            if backend.dtype_name(value) != backend.dtype_name(target):
                raise DTypeError(f"{self.name}.load_state_dict: '{name}' is {backend.dtype_name(value)} in the state "
                                 f"but {backend.dtype_name(target)} in the model; cast the state explicitly "
                                 "(npdl never casts silently)")
        device = self.device
        for name, target in own.items():
            target[...] = device.asarray(state[name])

    def parameters_finite(self) -> bool:
        """True when no parameter holds NaN or inf (one read from the device)."""
        params = list(self.parameters().values())
        if not params:
            return True
        xp = backend.namespace(*params)
        flags = xp.stack([xp.all(xp.isfinite(p)) for p in params])
        return bool(backend.to_numpy(xp.all(flags)))

    # -- random generators of layers (Dropout masks), needed for an exact resume
    def get_rng_state(self) -> dict:
        """``{"<layer index>": Generator state}`` for every layer holding a generator in ``rng``."""
        return {str(i): layer.rng.get_state() for i, layer in enumerate(self.layers)
                if isinstance(getattr(layer, "rng", None), backend.Generator)}

    def set_rng_state(self, states: dict) -> None:
        """Restore :meth:`get_rng_state` output, creating the generators on the model's device if needed."""
        device = self.device
        for index, state in states.items():
            layer = self.layers[int(index)]
            rng = getattr(layer, "rng", None)
            if not isinstance(rng, backend.Generator) or rng.device != device:
                rng = backend.Generator(device, state.get("seed"))
            rng.set_state(state)
            layer.rng = rng

    # -- configuration
    def get_config(self) -> dict:
        """A JSON-able description that rebuilds the architecture (not the parameter values)."""
        return {"name": self.name, "input_shape": None if self.input_shape is None else list(self.input_shape),
                "layers": [{"class": type(layer).__name__, "config": layer.get_config(),
                            "trainable": bool(layer.trainable)} for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict, device=None):
        """A new model from :meth:`get_config` output, with fresh parameters, on ``device`` (CPU by default)."""
        layers = []
        for entry in config["layers"]:
            layer = layer_from_config(entry)
            layer.trainable = bool(entry.get("trainable", True))
            layers.append(layer)
        model = cls(layers, input_shape=config.get("input_shape"), name=config.get("name"))
        return model.to(device) if device is not None else model
