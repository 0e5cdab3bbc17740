"""What every optimizer shares: the step loop, decoupled weight decay, clipping, schedules, state.

An optimizer sees the model as two flat dicts keyed by global names (``"0.W"``,
``"1.b"``): ``params`` and ``grads``. :meth:`Optimizer.step` changes every
``params[k]`` *in place*, so the arrays the layers hold are the ones that move.
A subclass writes :meth:`Optimizer._update`, the rule for one parameter, or, for a
rule of the ``optimizer_update`` kernel (SGD, Momentum, Nesterov, RMSprop, Adam), names it
in :attr:`Optimizer.kernel_rule` and gives its scalars (:meth:`Optimizer._rule_scalars`):
then one call updates every parameter (one launch on a GPU, where a rule written
with array operations costs two to ten launches per parameter).

Weight decay here is *decoupled* (Loshchilov & Hutter, "Decoupled Weight Decay
Regularization", 2019; PyTorch's ``AdamW``): before the update rule runs, every
parameter named in ``decay_names`` shrinks by ``p -= lr_t * weight_decay * p``.
That is not the same as an L2 penalty ``lam * sum(W ** 2)`` added to the loss
(:mod:`npdl.losses.penalties`): the penalty enters through the gradient,
``g + 2 lam W``, and an adaptive rule (RMSprop, Adam) then divides it by
``sqrt(v)``, so weights with large gradient history are barely regularised.
Decoupled decay shrinks every decayed weight by the same factor ``1 - lr_t *
weight_decay`` whatever its gradient history. For plain SGD the two coincide
when ``weight_decay = 2 lam``; for momentum the penalty also accumulates in the
velocity, and for adaptive rules they differ outright.
"""

from __future__ import annotations

import math

from .. import backend, kernels
from ..errors import DTypeError, ShapeError
from .clip import clip_by_global_norm
from .schedules import get_schedule, schedule_config

OPTIMIZERS: dict[str, type] = {}


def check_number(who: str, name: str, value, low: float, high: float = math.inf,
                 low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a float in the interval from ``low`` to ``high``, else a ValueError that names it."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{who}: {name} must be a finite number in {interval}, got {value!r}")
    return float(value)


def zeros_like_on_device(p):
    """Zeros with ``p``'s shape and dtype on ``p``'s device (CuPy would otherwise use the *current* GPU)."""
    xp = backend.namespace(p)
    device = getattr(p, "device", None)  # NumPy < 2 arrays have none
    return xp.zeros_like(p) if device is None else xp.zeros_like(p, device=device)


def copy_array(x):
    """A fresh copy of ``x`` on its own device, so saved state never aliases live state."""
    out = backend.namespace(x).empty_like(x)
    out[...] = x
    return out


class Optimizer:
    """Base class. ``lr`` is the base learning rate; ``schedule`` (a :mod:`~npdl.optim.schedules`
    object, its config dict, or ``None`` for constant) maps it to ``lr_t`` at each iteration;
    ``clip_norm`` clips all gradients together by global norm before the update;
    ``weight_decay`` is the decoupled decay described in the module docstring."""

    #: names of the per-parameter state arrays the rule keeps, e.g. ("m", "v")
    slot_kinds: tuple = ()
    #: the rule's name in the ``optimizer_update`` kernel ("momentum", "adam", ...), or None: :meth:`_update`
    kernel_rule: str | None = None
    #: True for rules that can take a gradient as an unformed product (see :meth:`step_products`)
    takes_products: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        OPTIMIZERS[cls.__name__.lower()] = cls

    def __init__(self, lr: float, schedule=None, clip_norm: float | None = None, weight_decay: float = 0.0):
        who = type(self).__name__
        self.lr = check_number(who, "lr", lr, 0.0)
        self.schedule = get_schedule(schedule)
        self.clip_norm = None if clip_norm is None else check_number(who, "clip_norm", clip_norm, 0.0, low_open=True)
        self.weight_decay = check_number(who, "weight_decay", weight_decay, 0.0)
        self.iterations = 0
        self.last_grad_norm = None  # global norm before clipping (0-d array), when clip_norm is set
        self._slots: dict = {}
        self._unplaced: set = set()  # loaded slots not yet checked against (and moved to) their parameter

    # -- the rule a subclass writes
    def _update(self, name: str, p, g, lr: float, xp) -> None:
        """Update ``p`` in place from its gradient ``g`` at learning rate ``lr`` (a Python float)."""
        raise NotImplementedError

    def _rule_scalars(self, lr: float) -> tuple:
        """For a :attr:`kernel_rule`: the Python floats its kernel function takes after ``g`` and the state."""
        raise NotImplementedError

    def _update_all(self, todo: list, lr: float) -> None:
        """Apply the rule to every ``(name, p, g, xp)`` of ``todo``: :meth:`_update` one by one, or the
        ``optimizer_update`` kernel's :attr:`kernel_rule` on each device's parameters together. (A
        subclass that writes its own :meth:`_update` gets it called, whatever rule it inherits.)"""
        if self.kernel_rule is None or type(self)._update is not Optimizer._update:
            for name, p, g, xp in todo:
                self._update(name, p, g, lr, xp)
            return
        scalars = self._rule_scalars(lr)
        by_device: dict = {}  # device -> (namespace, names, parameters, gradients)
        for name, p, g, xp in todo:
            group = by_device.setdefault(backend.device_of(p), (xp, [], [], []))
            group[1].append(name)
            group[2].append(p)
            group[3].append(g)
        for device, (xp, names, ps, gs) in by_device.items():
            slots = [[self._slot(kind, name, p) for name, p in zip(names, ps)] for kind in self.slot_kinds]
            update_all = kernels.get("optimizer_update", xp).update_all
            if device.is_gpu:  # the kernels launch on the current device
                with device.current():
                    update_all(self.kernel_rule, ps, gs, slots, scalars)
            else:
                update_all(self.kernel_rule, ps, gs, slots, scalars)

    # -- stepping
    def current_lr(self) -> float:
        """The learning rate the next step will use: ``schedule(lr, iterations)``."""
        return float(self.schedule(self.lr, self.iterations))

    def step(self, params: dict, grads: dict, decay_names: set | None = None, products: dict | None = None,
             product_l2: dict | None = None) -> None:
        """One update of every ``params[k]`` in place from ``grads[k]``.

        Order: clip all gradients by global norm (in place, if ``clip_norm``), then
        for each parameter decay it if its name is in ``decay_names`` (``None``
        decays every parameter, as PyTorch's ``AdamW`` does; pass the weight names
        to spare biases), then apply the rule. ``iterations`` counts up afterwards.

        ``products`` (only when :meth:`fuses_products`) holds parameters whose gradient
        is ``A^T B`` plus an L2 penalty's ``2 l2 p`` (``l2 = product_l2.get(k, 0)``), given
        as ``(A, B)`` instead of in ``grads``; see :meth:`SGD.step_products`.
        """
        if products:
            if not self.fuses_products():
                raise ValueError(f"{type(self).__name__}.step: this optimizer cannot take gradient products")
            lr = self.current_lr()
            decayed = lambda k: self.weight_decay and (decay_names is None or k in decay_names)  # noqa: E731
            l2 = product_l2 or {}
            shrink = {k: 1.0 - lr * (2.0 * l2.get(k, 0.0) + (self.weight_decay if decayed(k) else 0.0))
                      for k in products}
            self.step_products({k: params[k] for k in products}, products, lr, shrink)
            params = {k: v for k, v in params.items() if k not in products}
            grads = {k: v for k, v in grads.items() if k not in products}
        if params.keys() != grads.keys():
            raise ValueError(f"{type(self).__name__}.step: params and grads must have the same names; "
                             f"without a gradient: {sorted(params.keys() - grads.keys())}, "
                             f"without a parameter: {sorted(grads.keys() - params.keys())}")
        lr = self.current_lr()
        if self.clip_norm is not None:
            self.last_grad_norm = clip_by_global_norm(grads, self.clip_norm)
        shrink = 1.0 - lr * self.weight_decay  # p -= lr wd p, done as one in-place multiply
        todo = []
        for name, p in params.items():  # every check before any change: a refused step changes nothing
            g = grads[name]
            xp = backend.namespace(p, g)  # raises DeviceError on mixed devices
            if tuple(g.shape) != tuple(p.shape):
                raise ShapeError(f"{type(self).__name__}.step: gradient of {name!r} has shape {tuple(g.shape)}, "
                                 f"parameter has {tuple(p.shape)}")
            if g.dtype != p.dtype:
                raise DTypeError(f"{type(self).__name__}.step: gradient of {name!r} is "
                                 f"{backend.dtype_name(g)}, parameter is {backend.dtype_name(p)}")
            todo.append((name, p, g, xp))
        if self.weight_decay:
            for name, p, _, _ in todo:
                if decay_names is None or name in decay_names:
                    p *= shrink
        self._update_all(todo, lr)
        self.iterations += 1

    def fuses_products(self) -> bool:
        """Whether :meth:`step` may be given ``products`` this step: the rule must take them, and
        no clipping (which needs every gradient's norm first) may be on."""
        return self.takes_products and self.clip_norm is None

    def step_products(self, params: dict, products: dict, lr: float, shrink: dict) -> None:
        """Apply gradients given as products ``g = A^T B`` (``products[k] = (A, B)``) without forming
        them; ``shrink[k]`` multiplies ``p`` first (decay, L2). Only for ``takes_products`` rules."""
        raise NotImplementedError

    def _slot(self, kind: str, name: str, p):
        """The state array ``kind/name``, created as zeros on first use, moved to ``p``'s device if needed."""
        key = f"{kind}/{name}"
        s = self._slots.get(key)
        if s is None:
            s = self._slots[key] = zeros_like_on_device(p)
        elif key in self._unplaced or type(s) is not type(p):  # loaded, or the model moved device
            if tuple(s.shape) != tuple(p.shape):
                raise ShapeError(f"{type(self).__name__}: saved state {key!r} has shape {tuple(s.shape)}, "
                                 f"parameter {name!r} has {tuple(p.shape)}")
            s = self._slots[key] = backend.device_of(p).asarray(s, dtype=p.dtype)
            self._unplaced.discard(key)
        return s

    # -- configuration and state
    def get_config(self) -> dict:
        """Constructor arguments (JSON-serialisable) that rebuild this optimizer without its state."""
        return {"lr": self.lr, "schedule": schedule_config(self.schedule), "clip_norm": self.clip_norm,
                "weight_decay": self.weight_decay}

    def state_dict(self) -> dict:
        """``{"class", "config", "iterations", "slots"}``; slots are copies on their current device."""
        return {"class": type(self).__name__, "config": self.get_config(), "iterations": self.iterations,
                "slots": {k: copy_array(v) for k, v in self._slots.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore hyperparameters, iteration count and slots exactly (as PyTorch does, hyperparameters
        come from ``state``). Slots are copied now and moved to their parameter's device and dtype on
        the next step, so a checkpoint read as NumPy arrays can resume on any device."""
        if state.get("class") != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state is from {state.get('class')!r}")
        type(self).__init__(self, **state["config"])  # validates the config and clears the old state
        self.iterations = int(state["iterations"])
        self._slots = {k: copy_array(v) for k, v in state["slots"].items()}
        self._unplaced = set(self._slots)

    def to(self, device) -> "Optimizer":
        """Move every slot to ``device`` (a name or :class:`npdl.backend.Device`); returns the optimizer."""
        device = backend.get_device(device)
        self._slots = {k: device.asarray(v) for k, v in self._slots.items()}
        return self

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def optimizer_from_config(class_name: str, config: dict) -> Optimizer:
    """Rebuild an optimizer from its class name (``"Adam"`` or ``"adam"``) and :meth:`~Optimizer.get_config`."""
    cls = OPTIMIZERS.get(str(class_name).lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {class_name!r}; choose one of {', '.join(sorted(OPTIMIZERS))}")
    return cls(**dict(config))


def get_optimizer(name_or_obj, **kw) -> Optimizer:
    """An optimizer from a name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"rmsprop"``, ``"adam"``)
    and constructor keywords, or an :class:`Optimizer` instance returned as it is."""
    if isinstance(name_or_obj, Optimizer):
        if kw:
            raise ValueError(f"get_optimizer: keywords {sorted(kw)} given with an optimizer instance")
        return name_or_obj
    if not isinstance(name_or_obj, str):
        raise ValueError(f"get_optimizer: expected a name or an Optimizer, got {type(name_or_obj).__name__}")
    return optimizer_from_config(name_or_obj, kw)
