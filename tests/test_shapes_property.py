"""Hypothesis-generated shapes: dense and loss gradients agree with JAX for any batch and width."""

from conftest import reference
from hypothesis import given, settings, strategies as st

from npdl import backend
from npdl.gradcheck import AUTODIFF_TOL, CASES, Case, jax_ref, relative_error

reference("jax")

dims = st.integers(1, 9)


def _agree_with_jax(case, inputs, seed):
    g = backend.Generator("cpu", seed)
    y, cache = case.forward(**inputs)
    dy = g.normal(tuple(y.shape), dtype="float64")
    ours = case.backward(dy, cache)
    theirs = jax_ref.vjp(case, inputs, dy)
    for wrt in case.wrt:
        assert tuple(ours[wrt].shape) == tuple(inputs[wrt].shape)
        assert relative_error(ours[wrt], backend.to_numpy(theirs[wrt])) <= AUTODIFF_TOL, wrt


@settings(max_examples=12, deadline=None)
@given(n=dims, n_in=dims, n_out=dims, seed=st.integers(0, 10 ** 6))
def test_dense_any_shape(n, n_in, n_out, seed):
    g = backend.Generator("cpu", seed)
    inputs = {"x": g.normal((n, n_in), dtype="float64"), "W": g.normal((n_in, n_out), dtype="float64"),
              "b": g.normal((n_out,), dtype="float64")}
    _agree_with_jax(CASES["Dense"], inputs, seed)


@settings(max_examples=12, deadline=None)
@given(n=dims, k=st.integers(2, 9), seed=st.integers(0, 10 ** 6),
       name=st.sampled_from(["SoftmaxCrossEntropy", "NegativeLogLikelihood"]))
def test_classification_losses_any_shape(n, k, seed, name):
    g = backend.Generator("cpu", seed)
    logits = g.normal((n, k), dtype="float64")
    key = "logits" if name == "SoftmaxCrossEntropy" else "probs"
    value = logits if key == "logits" else CASES["Softmax"].forward(x=logits)[0]
    _agree_with_jax(CASES[name], {key: value, "labels": g.integers(0, k, (n,))}, seed)


@settings(max_examples=12, deadline=None)
@given(shape=st.lists(dims, min_size=1, max_size=3), seed=st.integers(0, 10 ** 6),
       name=st.sampled_from(["MeanSquaredError", "MeanSquaredError[batch_mean]", "BinaryCrossEntropyWithLogits",
                             "BinaryCrossEntropy[batch_mean]"]))
def test_elementwise_losses_any_shape(shape, seed, name):
    g = backend.Generator("cpu", seed)
    case: Case = CASES[name]
    first, second = case.make(g, "float64").keys()
    shape = tuple(shape)
    a = g.uniform(shape, 0.05, 0.95, dtype="float64") if name.startswith("BinaryCrossEntropy[") \
        else g.normal(shape, dtype="float64")
    _agree_with_jax(case, {first: a, second: g.uniform(shape, dtype="float64")}, seed)
