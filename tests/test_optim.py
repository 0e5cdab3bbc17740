"""Optimizers, schedules and clipping against independent float64 re-implementations (and torch.optim)."""

import json
import math

import numpy as np
import pytest

from npdl import backend, optim
from npdl.errors import DTypeError
from npdl.losses import l2_penalty_backward, l2_penalty_forward

STEPS = 6

# --------------------------------------------------------------------- a quadratic bowl
# f(p) = 0.5 * sum(A * (p - C) ** 2) per array, so grad = A * (p - C): distinct curvatures per coordinate.
_rng = np.random.default_rng(0)
START = {"0.W": _rng.normal(size=(3, 2)), "0.b": _rng.normal(size=(2,))}
A = {"0.W": _rng.uniform(0.5, 4.0, size=(3, 2)), "0.b": _rng.uniform(0.5, 4.0, size=(2,))}
C = {"0.W": _rng.normal(size=(3, 2)), "0.b": _rng.normal(size=(2,))}


def make_params(device, dtype="float64"):
    # copy: on the CPU asarray would hand back START itself, and the in-place steps would move it
    return {k: device.asarray(v.copy(), dtype=dtype) for k, v in START.items()}


def grads_of(params):
    """The bowl's gradient, on the parameters' device and in their dtype."""
    out = {}
    for k, p in params.items():
        dev = backend.device_of(p)
        out[k] = (p - dev.asarray(C[k], dtype=p.dtype)) * dev.asarray(A[k], dtype=p.dtype)
    return out


def run(opt, params, steps=STEPS, decay_names=None):
    """Take ``steps`` steps, returning the float64 NumPy trajectory of every parameter."""
    path = []
    for _ in range(steps):
        opt.step(params, grads_of(params), decay_names)
        path.append({k: backend.to_numpy(v).astype(np.float64) for k, v in params.items()})
    return path


# ------------------------------------------------------- reference rules, NumPy float64
def reference(rule, steps=STEPS, lrs=None, decay=0.0, decay_names=None, **h):
    """Trajectory of ``rule`` written out directly from its textbook equations."""
    p = {k: v.copy() for k, v in START.items()}
    state = {k: {"m": np.zeros_like(v), "v": np.zeros_like(v), "theta": v.copy()} for k, v in START.items()}
    path = []
    for t in range(1, steps + 1):
        lr = h["lr"] if lrs is None else lrs[t - 1]
        for k in p:
            s = state[k]
            g = A[k] * (p[k] - C[k])  # the gradient the model computed, before any decay
            if decay and (decay_names is None or k in decay_names):
                s["theta"] = s["theta"] - lr * decay * p[k]  # decay moves the stored point p = theta + mu v
                p[k] = p[k] - lr * decay * p[k]
            if rule == "sgd":
                p[k] = p[k] - lr * g
            elif rule == "momentum":
                s["v"] = h["momentum"] * s["v"] - lr * g
                p[k] = p[k] + s["v"]
            elif rule == "nesterov":  # Nesterov's original form: gradient at the look-ahead theta + mu v
                mu = h["momentum"]
                # (with decay, theta has just moved; the model's gradient was taken before, at the old p)
                g_ahead = A[k] * (s["theta"] + mu * s["v"] - C[k]) if not decay else g
                s["v"] = mu * s["v"] - lr * g_ahead
                s["theta"] = s["theta"] + s["v"]
                p[k] = s["theta"] + mu * s["v"]  # what npdl stores: the look-ahead point
            elif rule == "rmsprop":
                s["v"] = h["rho"] * s["v"] + (1 - h["rho"]) * g ** 2
                p[k] = p[k] - lr * g / (np.sqrt(s["v"]) + h["eps"])
            elif rule == "adam":
                s["m"] = h["beta1"] * s["m"] + (1 - h["beta1"]) * g
                s["v"] = h["beta2"] * s["v"] + (1 - h["beta2"]) * g ** 2
                m_hat, v_hat = s["m"] / (1 - h["beta1"] ** t), s["v"] / (1 - h["beta2"] ** t)
                p[k] = p[k] - lr * m_hat / (np.sqrt(v_hat) + h["eps"])
        path.append({k: v.copy() for k, v in p.items()})
    return path


CASES = [
    ("sgd", optim.SGD, {"lr": 0.1}),
    ("momentum", optim.Momentum, {"lr": 0.05, "momentum": 0.9}),
    ("nesterov", optim.Nesterov, {"lr": 0.05, "momentum": 0.8}),
    ("rmsprop", optim.RMSprop, {"lr": 0.01, "rho": 0.9, "eps": 0.1}),  # a large eps: its placement shows
    ("rmsprop", optim.RMSprop, {"lr": 0.01, "rho": 0.5, "eps": 1e-7}),
    ("adam", optim.Adam, {"lr": 0.02, "beta1": 0.9, "beta2": 0.999, "eps": 0.1}),
    ("adam", optim.Adam, {"lr": 0.02, "beta1": 0.5, "beta2": 0.9, "eps": 1e-7}),
]
IDS = [f"{rule}-{i}" for i, (rule, _, _) in enumerate(CASES)]


def assert_paths_close(got, want, rtol=1e-12):
    for step, (g, w) in enumerate(zip(got, want)):
        for k in w:
            np.testing.assert_allclose(g[k], w[k], rtol=rtol, atol=1e-14, err_msg=f"step {step + 1}, {k}")


@pytest.mark.parametrize("rule, cls, h", CASES, ids=IDS)
def test_trajectory_matches_the_equations(device, rule, cls, h):
    got = run(cls(**h), make_params(device))
    want = reference(rule, **h)
    assert not np.allclose(want[-1]["0.W"], START["0.W"])  # the test moves, so it can fail
    assert_paths_close(got, want)


@pytest.mark.parametrize("rule, cls, h", CASES, ids=IDS)
def test_schedule_weight_decay_and_decay_names_follow_the_equations(device, rule, cls, h):
    schedule = optim.StepDecay(step_size=2, gamma=0.5)
    opt = cls(**h, schedule=schedule, weight_decay=0.3)
    got = run(opt, make_params(device), decay_names={"0.W"})
    want = reference(rule, lrs=[h["lr"] * 0.5 ** (i // 2) for i in range(STEPS)], decay=0.3, decay_names={"0.W"},
                     **h)
    assert_paths_close(got, want)
    assert opt.iterations == STEPS and opt.current_lr() == h["lr"] * 0.5 ** 3


@pytest.mark.parametrize("rule, cls, h", CASES, ids=IDS)
def test_step_updates_in_place_and_float32_stays_float32(device, rule, cls, h):
    params = make_params(device, "float32")
    before = dict(params)
    opt = cls(**h, schedule=optim.ExponentialDecay(0.5, 3), clip_norm=0.5, weight_decay=0.01)
    for _ in range(3):
        opt.step(params, grads_of(params))
    for k, p in params.items():
        assert p is before[k] and backend.dtype_name(p) == "float32" and backend.same_device(p, before[k])
    assert not np.allclose(backend.to_numpy(params["0.W"]), START["0.W"].astype(np.float32))
    for key, s in opt.state_dict()["slots"].items():
        assert backend.dtype_name(s) == "float32" and backend.device_of(s) == device, key
    assert sorted(opt.state_dict()["slots"]) == sorted(f"{s}/{k}" for s in opt.slot_kinds for k in params)


def test_schedules_give_their_formulas():
    assert [optim.Constant()(0.1, i) for i in (0, 7)] == [0.1, 0.1]
    assert [optim.StepDecay(2, 0.5)(1.0, i) for i in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    decay = optim.ExponentialDecay(decay_rate=0.5, decay_steps=2)
    assert decay(0.8, 0) == 0.8 and decay(0.8, 2) == 0.4 and math.isclose(decay(0.8, 1), 0.8 * 0.5 ** 0.5)
    for s in (optim.Constant(), optim.StepDecay(3, 0.2), decay):
        again = optim.schedule_from_config(json.loads(json.dumps({"class": type(s).__name__,
                                                                  "config": s.get_config()})))
        assert type(again) is type(s) and [again(0.3, i) for i in range(9)] == [s(0.3, i) for i in range(9)]
    for bad in (lambda: optim.StepDecay(0, 0.5), lambda: optim.StepDecay(1.5, 0.5),
                lambda: optim.ExponentialDecay(-0.5, 10), lambda: optim.ExponentialDecay(0.5, 0)):
        with pytest.raises(ValueError, match="must be a positive"):
            bad()


def test_clipping_scales_to_max_norm_and_leaves_small_gradients_alone(device):
    big = {k: device.asarray(10 * v) for k, v in C.items()}
    norm0 = math.sqrt(sum(float(((10 * v) ** 2).sum()) for v in C.values()))
    returned = optim.clip_by_global_norm(big, 1.5)
    assert math.isclose(backend.to_float(returned), norm0, rel_tol=1e-12)
    after = {k: backend.to_numpy(v) for k, v in big.items()}
    assert math.isclose(math.sqrt(sum(float((v ** 2).sum()) for v in after.values())), 1.5, rel_tol=1e-12)
    for k in C:  # one common scale: the direction is kept
        np.testing.assert_allclose(after[k], 10 * C[k] * (1.5 / norm0), rtol=1e-12)
    small = {k: device.asarray(v * 1e-3, dtype="float32") for k, v in C.items()}
    copies = {k: backend.to_numpy(v).copy() for k, v in small.items()}
    optim.clip_by_global_norm(small, 1.5)
    assert all(np.array_equal(backend.to_numpy(small[k]), copies[k]) for k in C)
    assert all(backend.dtype_name(v) == "float32" for v in small.values())


def test_optimizer_clips_before_the_update(device):
    params = make_params(device)
    grads = grads_of(params)
    raw = {k: backend.to_numpy(v).copy() for k, v in grads.items()}
    norm = math.sqrt(sum(float((v ** 2).sum()) for v in raw.values()))
    opt = optim.SGD(lr=1.0, clip_norm=0.25)
    opt.step(params, grads)
    for k in params:
        np.testing.assert_allclose(backend.to_numpy(params[k]), START[k] - raw[k] * 0.25 / norm, rtol=1e-12)
    assert math.isclose(backend.to_float(opt.last_grad_norm), norm, rel_tol=1e-12)


@pytest.mark.parametrize("rule, cls, h", CASES, ids=IDS)
def test_state_dict_round_trip_continues_bit_identically(device, rule, cls, h):
    kw = dict(h, schedule=optim.StepDecay(2, 0.7), weight_decay=0.05, clip_norm=3.0)
    straight, params_a = cls(**kw), make_params(device)
    run(straight, params_a, 6)
    first, params_b = cls(**kw), make_params(device)
    run(first, params_b, 3)
    state = first.state_dict()
    json.dumps(state["config"])
    run(first, make_params(device), 2)  # the saved state is a snapshot, not a view of live arrays
    resumed = optim.optimizer_from_config(state["class"], state["config"])
    saved = {k: backend.to_numpy(v).copy() for k, v in state["slots"].items()}
    resumed.load_state_dict(state)
    assert resumed.iterations == 3 and resumed.get_config() == straight.get_config()
    run(resumed, params_b, 3)
    assert all(np.array_equal(backend.to_numpy(state["slots"][k]), v) for k, v in saved.items())  # not aliased
    for k in params_a:
        assert np.array_equal(backend.to_numpy(params_a[k]), backend.to_numpy(params_b[k])), k


def test_state_saved_as_numpy_resumes_on_another_device():
    straight, params_cpu = optim.Adam(lr=0.05), make_params(backend.get_device("cpu"))
    run(straight, params_cpu, 4)
    first, params = optim.Adam(lr=0.05), make_params(backend.get_device("cpu"))
    run(first, params, 2)
    state = first.state_dict()
    state["slots"] = {k: backend.to_numpy(v) for k, v in state["slots"].items()}  # as a checkpoint reads them
    strict = backend.get_device("strict")
    params = {k: strict.asarray(v) for k, v in params.items()}
    resumed = optim.Adam()
    resumed.load_state_dict(state)
    run(resumed, params, 2)
    assert all(backend.device_of(s) == strict for s in resumed.state_dict()["slots"].values())
    for k in params:
        assert np.array_equal(backend.to_numpy(params[k]), params_cpu[k])
    resumed.to("cpu")
    assert all(backend.device_of(s).name == "cpu" for s in resumed.state_dict()["slots"].values())


def test_weight_decay_is_not_an_l2_penalty(device):
    """SGD: decoupled decay wd equals an L2 penalty lam = wd / 2. Adam: the penalty is rescaled, decay is not."""
    def with_penalty(cls, lam, **h):
        opt, params = cls(**h), make_params(device)
        for _ in range(STEPS):
            grads = grads_of(params)
            _, cache = l2_penalty_forward([params["0.W"]], lam)
            (dW,) = l2_penalty_backward(1.0, cache)
            grads["0.W"] = grads["0.W"] + dW
            opt.step(params, grads)
        return backend.to_numpy(params["0.W"])

    def with_decay(cls, wd, **h):
        params = make_params(device)
        run(cls(**h, weight_decay=wd), params, decay_names={"0.W"})
        return backend.to_numpy(params["0.W"])

    np.testing.assert_allclose(with_decay(optim.SGD, 0.4, lr=0.1), with_penalty(optim.SGD, 0.2, lr=0.1),
                               rtol=1e-12)
    adam_decay, adam_l2 = with_decay(optim.Adam, 0.4, lr=0.1), with_penalty(optim.Adam, 0.2, lr=0.1)
    assert np.abs(adam_decay - adam_l2).max() > 1e-3


def test_decay_names_spare_biases(device):
    params = make_params(device)
    zero = {k: device.zeros(v.shape, "float64") for k, v in START.items()}
    opt = optim.Adam(lr=0.1, weight_decay=0.5)
    for _ in range(3):
        opt.step(params, zero, decay_names={"0.W"})
    np.testing.assert_allclose(backend.to_numpy(params["0.W"]), START["0.W"] * (1 - 0.1 * 0.5) ** 3, rtol=1e-12)
    assert np.array_equal(backend.to_numpy(params["0.b"]), START["0.b"])
    opt.step(params, zero)  # no names: every parameter decays
    np.testing.assert_allclose(backend.to_numpy(params["0.b"]), START["0.b"] * 0.95, rtol=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda: optim.SGD(lr=-0.1), "SGD: lr must be"),
    (lambda: optim.Adam(lr=float("nan")), "Adam: lr must be"),
    (lambda: optim.Momentum(momentum=1.0), r"momentum must be a finite number in \[0, 1\)"),
    (lambda: optim.Nesterov(momentum=-0.1), "Nesterov: momentum must be"),
    (lambda: optim.RMSprop(rho=1.5), "rho must be"),
    (lambda: optim.Adam(beta1=1.0), "beta1 must be"),
    (lambda: optim.Adam(beta2=-1), "beta2 must be"),
    (lambda: optim.Adam(eps=-1e-8), "eps must be"),
    (lambda: optim.SGD(weight_decay=-1), "weight_decay must be"),
    (lambda: optim.SGD(clip_norm=0), r"clip_norm must be a finite number in \(0"),
    (lambda: optim.SGD(schedule=lambda lr, i: lr), "schedule must be"),
    (lambda: optim.get_optimizer("adamw"), "unknown optimizer 'adamw'; choose one of adam, momentum"),
    (lambda: optim.clip_by_global_norm({}, -1.0), "max_norm must be"),
])
def test_bad_arguments_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_steps_raise(device):
    params, opt = make_params(device), optim.Momentum()
    with pytest.raises(ValueError, match=r"without a gradient: \['0.b'\]"):
        opt.step(params, {"0.W": grads_of(params)["0.W"]})
    grads = grads_of(params)
    grads["0.b"] = device.asarray(START["0.b"], dtype="float32")
    with pytest.raises(DTypeError, match="gradient of '0.b' is float32, parameter is float64"):
        opt.step(params, grads)
    with pytest.raises(ValueError, match="state is from 'Adam'"):
        opt.load_state_dict(optim.Adam().state_dict())


def test_get_optimizer_and_configs():
    for name, cls in [("sgd", optim.SGD), ("Momentum", optim.Momentum), ("nesterov", optim.Nesterov),
                      ("RMSPROP", optim.RMSprop), ("adam", optim.Adam)]:
        opt = optim.get_optimizer(name, lr=0.3, clip_norm=2.0)
        assert type(opt) is cls and opt.lr == 0.3 and opt.clip_norm == 2.0 and opt.current_lr() == 0.3
        again = optim.optimizer_from_config(type(opt).__name__, json.loads(json.dumps(opt.get_config())))
        assert type(again) is cls and again.get_config() == opt.get_config()
    adam = optim.Adam()
    assert optim.get_optimizer(adam) is adam
    assert adam.get_config()["eps"] == 1e-7 and optim.RMSprop().get_config()["rho"] == 0.9


# --------------------------------------------------------------------------- torch.optim
try:
    import torch
except ImportError:  # pragma: no cover - torch is an optional extra
    torch = None


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
@pytest.mark.parametrize("ours, theirs", [
    (lambda: optim.Nesterov(lr=0.05, momentum=0.8), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8,
                                                                               nesterov=True)),
    (lambda: optim.Momentum(lr=0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    (lambda: optim.RMSprop(lr=0.01, rho=0.9, eps=0.1), lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9,
                                                                                       eps=0.1)),
    (lambda: optim.Adam(lr=0.02, eps=0.1), lambda p: torch.optim.Adam(p, lr=0.02, eps=0.1, foreach=False)),
    (lambda: optim.Adam(lr=0.02, beta1=0.5, beta2=0.9, eps=1e-8, weight_decay=0.3),
     lambda p: torch.optim.AdamW(p, lr=0.02, betas=(0.5, 0.9), eps=1e-8, weight_decay=0.3, foreach=False)),
], ids=["nesterov", "momentum", "rmsprop", "adam", "adamw"])
def test_matches_torch_optim(ours, theirs):
    params = make_params(backend.get_device("cpu"))
    got = run(ours(), params)
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in START.items()}
    opt = theirs(list(tensors.values()))
    for step in range(STEPS):
        opt.zero_grad()
        loss = sum(0.5 * (torch.tensor(A[k]) * (t - torch.tensor(C[k])) ** 2).sum() for k, t in tensors.items())
        loss.backward()
        opt.step()
        for k, t in tensors.items():
            np.testing.assert_allclose(got[step][k], t.detach().numpy(), rtol=1e-10, atol=1e-13,
                                       err_msg=f"step {step + 1}, {k}")


@pytest.mark.parametrize("name, kw", [("sgd", {}), ("momentum", {}), ("nesterov", {}), ("rmsprop", {}), ("adam", {})])
def test_kernel_rules_update_every_parameter_in_one_call(monkeypatch, name, kw):
    """SGD, Momentum, Nesterov, RMSprop and Adam hand all of a device's parameters to the optimizer_update
    operation's update_all at once (one GPU launch), with their state slots aligned."""
    from npdl.optim import base

    calls = []
    real = base.update_all

    def spy(rule, ps, gs, slots, scalars):
        calls.append((rule, len(ps), [len(s) for s in slots]))
        return real(rule, ps, gs, slots, scalars)

    monkeypatch.setattr(base, "update_all", spy)
    opt = optim.get_optimizer(name, lr=0.1, **kw)
    params = make_params(backend.get_device("cpu"))
    opt.step(params, grads_of(params))
    n_slots = {"sgd": 0, "adam": 2}.get(name, 1)
    assert calls == [(name, 2, [2] * n_slots)]
    assert len(opt._slots) == 2 * n_slots


def test_a_subclass_with_its_own_update_rule_gets_it_called():
    """A rule written as _update in a subclass of a kernel-rule optimizer is used, not the inherited kernel."""
    calls = []

    class Damped(optim.Momentum):
        def _update(self, name, p, g, lr, xp):
            calls.append(name)
            p -= 0.5 * lr * g

    params = make_params(backend.get_device("cpu"))
    before = {k: v.copy() for k, v in params.items()}
    grads = grads_of(params)
    Damped(lr=0.1).step(params, grads)
    assert sorted(calls) == sorted(params)
    for k in params:
        np.testing.assert_allclose(params[k], before[k] - 0.05 * grads[k])


def test_a_refused_step_changes_nothing():
    """A gradient of the wrong shape is found before any parameter is decayed or updated."""
    params = make_params(backend.get_device("cpu"))
    before = {k: v.copy() for k, v in params.items()}
    grads = grads_of(params)
    grads["0.b"] = grads["0.b"][:1]
    opt = optim.Adam(lr=0.1, weight_decay=0.1)
    with pytest.raises(Exception, match="has shape"):
        opt.step(params, grads)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert opt.iterations == 0


def test_sgd_applies_factor_gradients_last_parameter_first_with_the_same_result(monkeypatch):
    """Plain SGD applies gradients left as factors (ProductGrad) last parameter first, so the first
    layer's weights, which the next forward reads first, are the last written; each update is the
    same as applied alone: W - lr (A^T B + 2 l2 W), against a float64 formula."""
    from npdl.deferred import ProductGrad
    from npdl.optim import sgd

    rng = np.random.default_rng(3)
    names = ["0.W", "1.W", "2.W"]
    params = {k: rng.standard_normal((4 + i, 3 + i)) for i, k in enumerate(names)}
    factors = {k: (rng.standard_normal((5, 4 + i)), rng.standard_normal((5, 3 + i))) for i, k in enumerate(names)}
    want = {k: params[k] - 0.1 * (factors[k][0].T @ factors[k][1] + 2 * 0.01 * params[k]) for k in names}
    order, real = [], sgd.gemm_update_sum
    monkeypatch.setattr(sgd, "gemm_update_sum",
                        lambda C, pairs, alpha, beta=1.0: order.append(C.shape) or real(C, pairs, alpha, beta))
    optim.SGD(lr=0.1).step(params, {k: ProductGrad([factors[k]]) for k in names},
                           penalties={k: (0.0, 0.01) for k in names})
    assert order == [params[k].shape for k in reversed(names)]
    for k in names:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-12, atol=1e-12)
