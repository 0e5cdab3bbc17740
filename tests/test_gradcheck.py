"""Every layer and loss passes the gradient check on every backend, in float64."""

import pytest
from conftest import has_reference, reference

from npdl import gradcheck
from npdl.gradcheck import CASES, check_case, runner

BACKEND_OF = {"cpu": "numpy", "strict": "strict", "cuda:0": "cupy"}
HAS_JAX = has_reference("jax")  # without JAX: finite differences only (in CI: a failure)


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_finite_differences_and_jax(name, device):
    records = check_case(CASES[name], BACKEND_OF[device.name], autodiff="jax" if HAS_JAX else "none")
    assert records, "a case must check at least one input"
    for r in records:
        assert r.error is None, r.error
        assert r.numeric_rel_err <= gradcheck.NUMERIC_TOL, r
        if HAS_JAX:
            assert r.autodiff == "jax" and r.autodiff_rel_err <= gradcheck.AUTODIFF_TOL, r
        assert r.passed and r.dtype == "float64"


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_torch(name):
    reference("torch")
    for r in check_case(CASES[name], "numpy", autodiff="torch", numeric=False):
        assert r.autodiff == "torch" and r.autodiff_rel_err <= gradcheck.AUTODIFF_TOL, r


def _broken(case, factor):
    """The same case with its backward scaled (or its first gradient transposed)."""
    def backward(dy, cache):
        grads = case.backward(dy, cache)
        first = case.wrt[0]
        grads[first] = grads[first] * factor
        return grads

    return gradcheck.Case(case.name, case.make, case.wrt, case.forward, backward, case.group, case.options)


@pytest.mark.parametrize("name", ["Dense", "Sigmoid", "SoftmaxCrossEntropy", "BinaryCrossEntropy"])
def test_a_wrong_gradient_fails_the_check(name):
    """The checker must be able to say no: a 1% error in a gradient fails both comparisons."""
    records = check_case(_broken(CASES[name], 1.01), "numpy", autodiff="jax" if HAS_JAX else "none")
    wrong = records[0]
    assert not wrong.passed
    assert wrong.numeric_rel_err > gradcheck.NUMERIC_TOL
    if HAS_JAX:
        assert wrong.autodiff_rel_err > gradcheck.AUTODIFF_TOL
    assert all(r.passed for r in records[1:])


def test_upstream_gradient_is_random_not_ones():
    """A transposed dW for a square weight passes a check against sum(y) but not against a random dy."""
    case = CASES["Dense"]

    def make(g, d):
        return {"x": g.normal((3, 3), dtype=d), "W": g.normal((3, 3), dtype=d), "b": g.normal((3,), dtype=d)}

    def backward(dy, cache):
        grads = case.backward(dy, cache)
        grads["W"] = grads["W"].T
        return grads

    bad = gradcheck.Case("Dense", make, case.wrt, case.forward, backward)
    w_row = [r for r in check_case(bad, "numpy", autodiff="none") if r.wrt == "W"][0]
    assert not w_row.passed


def test_missing_autodiff_reference_is_reported_not_fatal(monkeypatch):
    monkeypatch.setattr(runner, "_reference", lambda autodiff: (None, "JAX is not installed"))
    records = check_case(CASES["Tanh"], "numpy", autodiff="jax")
    assert records[0].autodiff is None and records[0].autodiff_rel_err is None and records[0].passed


def test_select_by_name_is_case_insensitive_and_covers_variants():
    names = [c.name for c in gradcheck.select(["mse", "dense"])]
    assert names == ["MeanSquaredError", "MeanSquaredError[batch_mean]", "Dense", "Dense[no_bias]", "Dense[sigmoid]",
                     "Dense[tanh]"]
    with pytest.raises(KeyError, match="no gradient check named"):
        gradcheck.select(["conv9d"])
