"""The check every data dict gets before training: each part holds examples, x and y agree.

A recipe's data is a dict of parts (``"train"``, ``"valid"``, ``"test"``), each an
``(x, y)`` pair (or a lone ``x`` for unsupervised parts). An empty part would
otherwise be noticed only when it is first scored -- after a whole epoch of
training for a validation set, at the very end for a test set -- so
:func:`check_parts` runs before the model is built. It reads shapes only.
"""

from __future__ import annotations

from .errors import DatasetError


def _count(array, where: str) -> int:
    shape = getattr(array, "shape", None)
    if not shape:
        raise DatasetError(f"{where} is not an array with a batch axis (got {type(array).__name__})")
    return int(shape[0])


def check_parts(data: dict, source: str = "the data") -> dict:
    """Raise :class:`DatasetError` naming the part if one is empty, or its x and y differ in length.

    ``data`` maps part names to ``(x, y)`` pairs or lone arrays; ``source`` is what the
    message calls the whole (a recipe's name, a file). Returns ``data``.
    """
    for part, value in data.items():
        arrays = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        arrays = tuple(a for a in arrays if a is not None)  # (x, None): a part without targets
        counts = [_count(a, f"{source}: array {i} of the {part!r} part") for i, a in enumerate(arrays)]
        if counts and counts[0] == 0:
            raise DatasetError(f"{source}: the {part!r} part is empty (x has shape "
                               f"{tuple(int(d) for d in arrays[0].shape)}); every part needs examples, so "
                               "training would fail when it is first scored. Check the data files or the subset taken")
        if len(set(counts)) > 1:
            raise DatasetError(f"{source}: the {part!r} part has {counts[0]} inputs but {counts[1]} targets; "
                               "they must match")
    return data
