"""The Keras-like summary table of a :class:`Sequential` model.

Example for a 784-500-10 MLP::

    Model: "mlp"
    ___________________________________________________________________________
     #  Layer (type)              Output Shape          Param #   Trainable
    ===========================================================================
     0  dense (Dense)             (None, 500)           392,500   yes
     1  tanh (Tanh)               (None, 500)           0         -
     2  dense (Dense)             (None, 10)            5,010     yes
    ===========================================================================
    Total params: 397,510
    Trainable params: 397,510
    Non-trainable params: 0

``None`` is the batch axis. Output shapes come from each layer's
``output_shape`` applied in turn to the per-example input shape; without one
(no ``input_shape`` given and a first layer that does not know its input size)
they are shown as ``?``.
"""

from __future__ import annotations

_WIDTHS = (4, 26, 22, 10, 9)
_RULE = sum(_WIDTHS) + 4


def _first_input_shape(model):
    """The model's input shape if known: given explicitly, or the first Dense layer's ``n_in``."""
    if model.input_shape is not None:
        return tuple(model.input_shape)
    for layer in model.layers:
        if hasattr(layer, "n_in"):
            return (int(layer.n_in),)
        if layer.params:  # a parameterised layer that does not say its input size
            return None
    return None


def _row(cells) -> str:
    # a cell longer than its column pushes the rest right, always after one space
    return " " + "".join(f"{c} ".ljust(w) for c, w in zip(cells, _WIDTHS)).rstrip()


def _kind(layer) -> str:
    """``Dense``; ``Dense, tanh`` for a dense layer with its activation inside; ``TimeDistributed(Dense)``."""
    kind = type(layer).__name__
    inner = getattr(layer, "layer", None)
    if inner is not None:
        return f"{kind}({_kind(inner)})"
    if kind == "Dense" and layer.activation != "linear":
        kind += f", {layer.activation}"
    return kind


def parameter_counts(model) -> tuple[int, int]:
    """``(trainable, non_trainable)`` parameter counts."""
    trainable = sum(layer.parameter_count() for layer in model.layers if layer.trainable)
    total = sum(layer.parameter_count() for layer in model.layers)
    return trainable, total - trainable


def summary_table(model, input_shape=None) -> str:
    """The table as a string (see the module docstring)."""
    shape = tuple(int(d) for d in input_shape) if input_shape is not None else _first_input_shape(model)
    lines = [f'Model: "{model.name}"', "_" * _RULE,
             _row(("#", "Layer (type)", "Output Shape", "Param #", "Trainable")), "=" * _RULE]
    for index, layer in enumerate(model.layers):
        if shape is not None:
            try:
                shape = tuple(layer.output_shape(shape))
                shown = "(None, " + ", ".join(str(d) for d in shape) + ")"
            except Exception:  # a layer that cannot infer from this shape: stop guessing, do not fail
                shape, shown = None, "?"
        else:
            shown = "?"
        count = layer.parameter_count()
        flag = ("yes" if layer.trainable else "frozen") if count else "-"
        lines.append(_row((index, f"{layer.name} ({_kind(layer)})", shown, f"{count:,}", flag)))
    trainable, frozen = parameter_counts(model)
    lines += ["=" * _RULE, f"Total params: {trainable + frozen:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {frozen:,}"]
    return "\n".join(lines)
