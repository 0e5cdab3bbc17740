r"""What every optimizer shares: the step loop, decoupled weight decay, clipping, schedules, state.

An optimizer sees the model as two flat dicts keyed by global names (``"0.W"``,
``"1.b"``): ``params`` and ``grads``. :meth:`Optimizer.step` changes every
``params[k]`` *in place*, so the arrays the layers hold are the ones that move.
A subclass writes :meth:`Optimizer._update`, the rule for one parameter, or registers its
rule in its own file (:func:`rule`: SGD, Momentum, Nesterov, RMSprop, Adam), names it in
:attr:`Optimizer.kernel_rule` and gives its scalars (:meth:`Optimizer._rule_scalars`): then
one :func:`update_all` updates every parameter (one launch on a GPU, where a rule written
with array operations costs two to ten launches per parameter).

Weight decay here is *decoupled* (Loshchilov & Hutter, "Decoupled Weight Decay
Regularization", 2019; PyTorch's ``AdamW``): before the update rule runs, every
parameter named in ``decay_names`` shrinks by $p \leftarrow p - lr_t \cdot wd \cdot p$ (``wd`` the
``weight_decay``). That is not the same as an L2 penalty $\lambda \sum W^2$ added to the loss
(:mod:`npdl.losses.penalties`): the penalty enters through the gradient,
$g + 2 \lambda W$, and an adaptive rule (RMSprop, Adam) then divides it by
$\sqrt{v}$, so weights with large gradient history are barely regularised.
Decoupled decay shrinks every decayed weight by the same factor $1 - lr_t \cdot wd$
whatever its gradient history. For plain SGD the two coincide
when $wd = 2 \lambda$; for momentum the penalty also accumulates in the
velocity, and for adaptive rules they differ outright.
"""

from __future__ import annotations

import math

from .. import backend, kernels
from ..deferred import ProductGrad, formed
from ..errors import DTypeError, ShapeError
from ..losses import penalties as penalty_fns
from .clip import clip_by_global_norm
from .schedules import get_schedule, schedule_config

OPTIMIZERS: dict[str, type] = {}

#: rule name -> the function updating one parameter and its state in place, ``rule(p, g, *state, *scalars)``;
#: each optimizer's file defines its rule (:func:`rule`) next to its derivation
RULES: dict = {}


def rule(name: str):
    """Register the decorated function as the elementwise update rule ``name`` (see :func:`update_all`)."""
    def register(fn):
        RULES[name] = fn
        return fn
    return register


@kernels.accelerated("optimizer_update.update_all", on=1)
def update_all(rule_name: str, ps, gs, slots, scalars):
    """``RULES[rule_name](p, g, *state, *scalars)`` for every parameter ``p`` of the list ``ps``.

    ``gs`` are the gradients, ``slots`` one list per kind of state aligned with ``ps`` (``[vs]``;
    Adam's ``[ms, vs]``), ``scalars`` the rule's Python floats after ``g`` and the state (Python
    floats, so no float64 reaches a float32 parameter). Here a loop over the parameters; on a GPU
    the kernels update many parameters in one launch.
    """
    update = RULES[rule_name]
    for p, g, *state in zip(ps, gs, *slots):
        update(p, g, *state, *scalars)


def total_gradient(p, g, l1: float = 0.0, l2: float = 0.0):
    r"""$G = g + l1 \, \text{sign}(p) + 2 \, l2 \, p$: the data gradient ``g`` (formed if it was a product) plus the
    penalties' gradients (:mod:`npdl.losses.penalties`). ``g`` itself when there is no penalty."""
    g = formed(g)
    if l2:
        g = g + penalty_fns.l2_penalty_grad(p, l2)
    if l1:
        g = g + penalty_fns.l1_penalty_grad(p, l1)
    return g


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
    #: the rule's name in :data:`RULES` ("momentum", "adam", ...), or None: the subclass writes :meth:`_update`
    kernel_rule: str | None = None
    #: True for rules that can apply a gradient given as its factors (:class:`npdl.deferred.ProductGrad`)
    #: without forming it (:meth:`_apply_factors`)
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
        #: apply gradients given as factors without forming them, where the rule can
        #: (:attr:`takes_products`): a choice of kernel, never of what is computed
        self.fuse_products = True
        self._slots: dict = {}
        self._unplaced: set = set()  # loaded slots not yet checked against (and moved to) their parameter

    # -- the rule a subclass writes
    def _update(self, name: str, p, g, lr: float, xp) -> None:
        """Update ``p`` in place from its gradient ``g`` at learning rate ``lr`` (a Python float)."""
        raise NotImplementedError

    def _rule_scalars(self, lr: float) -> tuple:
        """For a :attr:`kernel_rule`: the Python floats its rule function takes after ``g`` and the state."""
        raise NotImplementedError

    def _apply_factors(self, p, pairs, lr: float, beta: float) -> None:
        r"""$p \leftarrow \beta p - lr \sum_{k} A_k^\top B_k$ for ``pairs = [(A_k, B_k)]``: the rule applied to a gradient
        given as its factors. Only for :attr:`takes_products` rules."""
        raise NotImplementedError

    def _update_all(self, todo: list, lr: float) -> None:
        """Apply the rule to every ``(name, p, g, xp)`` of ``todo``: :meth:`_update` one by one, or
        :func:`update_all` with the :attr:`kernel_rule` on each device's parameters together (one
        launch on a GPU). (A subclass that writes its own :meth:`_update` gets it called, whatever
        rule it inherits.)"""
        if self.kernel_rule is None or type(self)._update is not Optimizer._update:
            for name, p, g, xp in todo:
                self._update(name, p, g, lr, xp)
            return
        scalars = self._rule_scalars(lr)
        by_device: dict = {}  # device -> (names, parameters, gradients)
        for name, p, g, xp in todo:
            group = by_device.setdefault(backend.device_of(p), ([], [], []))
            group[0].append(name)
            group[1].append(p)
            group[2].append(g)
        for device, (names, ps, gs) in by_device.items():
            slots = [[self._slot(kind, name, p) for name, p in zip(names, ps)] for kind in self.slot_kinds]
            if device.is_gpu:  # the kernels launch on the current device
                with device.current():
                    update_all(self.kernel_rule, ps, gs, slots, scalars)
            else:
                update_all(self.kernel_rule, ps, gs, slots, scalars)

    # -- stepping
    def current_lr(self) -> float:
        """The learning rate the next step will use: ``schedule(lr, iterations)``."""
        return float(self.schedule(self.lr, self.iterations))

    def update_in_backward(self, l1: float = 0.0, l2: float = 0.0, decayed: bool = True):
        r"""``(alpha, beta)`` for a layer to apply this step's update of one weight itself, as
        $p \leftarrow \beta p + \alpha A^\top B$ from its gradient's factors, in its backward pass; or None
        where the step has to see every gradient first, or more than the weight and its factors. For
        a weight with penalties ``l1``, ``l2``, under decoupled decay if ``decayed``. Here None: only
        plain SGD (:class:`npdl.optim.SGD`) says otherwise."""
        return None

    def _factors_beta(self, lr: float, l2: float, decayed: bool) -> float:
        r"""``beta`` of the update from a product's factors: $1 - lr (2 \, l2 + wd)$, ``wd`` only if ``decayed``."""
        return 1.0 - lr * (2.0 * l2 + (self.weight_decay if decayed else 0.0))

    def step(self, params: dict, grads: dict, decay_names: set | None = None, penalties: dict | None = None,
             applied=()) -> None:
        r"""One update of every ``params[k]`` in place, from every term of its gradient.

        ``grads[k]`` is the data gradient $\frac{\partial L}{\partial p}$: an array, or a
        :class:`npdl.deferred.ProductGrad` (a product left unformed). ``penalties[k] = (l1, l2)``
        adds the gradients of the penalties $l1 \sum |p| + l2 \sum p^2$ (:mod:`npdl.losses.penalties`),
        $l1 \, \text{sign}(p) + 2 \, l2 \, p$; a name missing from ``penalties`` has none. So the gradient of
        parameter ``k`` is, all on the parameters before the step,

        $$
        G_k = \frac{\partial L}{\partial p_k} + l1_k \, \text{sign}(p_k) + 2 \, l2_k \, p_k
        $$

        Order: form every $G_k$ from the parameters as they are; clip them all together by
        global norm (``clip_norm``); shrink each parameter named in ``decay_names`` by
        $1 - lr_t \cdot wd$ (``None`` decays every parameter, as PyTorch's ``AdamW``; pass
        the weight names to spare biases); apply the rule. ``iterations`` counts up afterwards.

        A rule that can take a product's factors (plain SGD) applies $G_k$ without forming
        the product, $p \leftarrow (1 - lr (2 \, l2 + wd)) p - lr A^\top B - lr \, l1 \, \text{sign}(p)$: the same terms
        in one GEMM, last parameter first (see the comment in the code). Which way a term is applied
        never changes which terms apply.

        ``applied`` names parameters whose update a layer has made already, in its backward pass,
        with the ``(alpha, beta)`` of :meth:`update_in_backward`: they are checked like the others
        and not updated again.
        """
        if params.keys() != grads.keys():
            raise ValueError(f"{type(self).__name__}.step: params and grads must have the same names; "
                             f"without a gradient: {sorted(params.keys() - grads.keys())}, "
                             f"without a parameter: {sorted(grads.keys() - params.keys())}")
        penalties = penalties or {}
        unknown = penalties.keys() - params.keys()
        if unknown:
            raise ValueError(f"{type(self).__name__}.step: penalties for parameters it was not given: {sorted(unknown)}")
        lr = self.current_lr()
        factors_ok = self.takes_products and self.fuse_products and self.clip_norm is None
        # every check before any change (a refused step changes nothing), and every term from the
        # parameters before the step: a product's factors kept, or the whole gradient formed
        by_factors, todo = [], []
        for name, p in params.items():
            g = grads[name]
            if g is None:
                raise ValueError(f"{type(self).__name__}.step: the gradient of {name!r} is None (no backward pass?)")
            product = isinstance(g, ProductGrad)
            xp = backend.namespace(p, g.pairs[0][0] if product else g)  # DeviceError if mixed
            if tuple(g.shape) != tuple(p.shape):
                raise ShapeError(f"{type(self).__name__}.step: gradient of {name!r} has shape {tuple(g.shape)}, "
                                 f"parameter has {tuple(p.shape)}")
            if g.dtype != p.dtype:
                raise DTypeError(f"{type(self).__name__}.step: gradient of {name!r} is "
                                 f"{backend.dtype_name(g)}, parameter is {backend.dtype_name(p)}")
            if name in applied:
                continue
            l1, l2 = penalties.get(name, (0.0, 0.0))
            if factors_ok and product and not g.is_formed:
                by_factors.append((name, p, g, penalty_fns.l1_penalty_grad(p, l1) if l1 else None, float(l2)))
            else:
                todo.append((name, p, total_gradient(p, g, float(l1), float(l2)), xp))
        if self.clip_norm is not None:
            self.last_grad_norm = clip_by_global_norm({name: g for name, _, g, _ in todo}, self.clip_norm)
        decays = lambda name: self.weight_decay and (decay_names is None or name in decay_names)  # noqa: E731
        # Last parameter first: the parameters come in the model's order, so the first layer's weights
        # are written last and the next forward, which starts with them, finds them still in cache. At
        # batch 1 the weights are most of the step's memory traffic: on a 2-core AMD EPYC (8 MB L3)
        # sda_b1's step took 0.90-0.95 of the time with this order (alternating slices, 3 rounds); the
        # updates are independent of one another, so the order changes no result.
        for name, p, g, l1_term, l2 in reversed(by_factors):
            # G = A^T B + l1 sign(p) + 2 l2 p, and decoupled decay: one GEMM with beta, then the L1 term
            self._apply_factors(p, g.pairs, lr, self._factors_beta(lr, l2, decays(name)))
            if l1_term is not None:
                l1_term *= lr
                p -= l1_term
        shrink = 1.0 - lr * self.weight_decay  # p -= lr wd p, done as one in-place multiply
        for name, p, _, _ in todo:
            if decays(name):
                p *= shrink
        self._update_all(todo, lr)
        self.iterations += 1

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
