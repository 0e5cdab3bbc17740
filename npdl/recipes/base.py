"""What a recipe is: a named, published training setting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

RECIPES: dict[str, "Recipe"] = {}


@dataclass(frozen=True)
class Recipe:
    """One reproducible training setting.

    ``data(options) -> {"train": (x, y), "valid": (x, y) or absent, "test": (x, y)}``
    (NumPy arrays, float32 inputs); ``build(options, device, rng) -> compiled
    Sequential``. ``options`` is a dict with at least ``lr``, ``batch_size``,
    ``epochs``, ``data_dir``, ``dtype`` and anything a recipe's own flags add.
    ``patience`` (minibatches), when set, trains with the Theano tutorials' rule
    (:class:`npdl.training.PatienceEarlyStopping`) on the validation set.
    ``drop_last`` trains and scores on whole minibatches only, as the Theano
    tutorials do (``n_batches = n // batch_size``).

    Recipes that are not one ``fit`` of one Sequential (greedy pretraining, then
    finetuning) set ``run(recipe, options, device, data, out, resume, verbose) ->
    RunResult``; :func:`npdl.recipes.train` then hands everything to it.
    """

    name: str
    summary: str
    published: str
    data: Callable
    build: Callable
    epochs: int
    batch_size: int
    lr: float
    classifier: bool = True
    shuffle: bool = True
    patience: int | None = None
    drop_last: bool = False
    run: Callable | None = None
    extra: dict = field(default_factory=dict)


def register(recipe: Recipe) -> Recipe:
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(sorted(RECIPES))}") from None
