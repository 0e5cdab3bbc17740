"""Bad input gets a clear error naming the layer, what was expected and what came."""

import pytest

import npdl
from npdl import backend
from npdl.errors import DeviceError, DTypeError, LabelError, ShapeError


@pytest.fixture
def dense(device):
    return npdl.Dense(5, 3, device=device, rng=backend.Generator(device, 0))


def test_wrong_input_width(dense, device):
    x = device.zeros((4, 7))
    with pytest.raises(ShapeError, match=r"Dense\(5->3\).*5 features.*\(4, 7\)"):
        dense(x)


def test_wrong_rank(dense, device):
    with pytest.raises(ShapeError, match=r"Dense.*2-D.*\(5,\)"):
        dense(device.zeros((5,)))


def test_integer_and_bool_data_refused(dense, device):
    xp = device.xp
    with pytest.raises(DTypeError, match="must be a float array, got dtype int64"):
        dense(xp.ones((2, 5), dtype=xp.int64))
    with pytest.raises(DTypeError, match="got dtype bool"):
        dense(xp.ones((2, 5), dtype=xp.bool))
    with pytest.raises(DTypeError, match="must be a float array"):
        npdl.ReLU()(xp.ones((2, 5), dtype=xp.int32))


def test_float64_into_float32_layer_is_refused_not_cast(dense, device):
    x = device.zeros((2, 5), "float64")
    with pytest.raises(DTypeError, match=r"float64 but the layer computes in float32.*astype\('float32'\)"):
        dense(x)


def test_float64_layer_accepts_float64(device):
    layer = npdl.Dense(5, 3, dtype="float64", device=device, rng=backend.Generator(device, 0))
    assert backend.dtype_name(layer(device.zeros((2, 5), "float64"))) == "float64"


def test_not_an_array(dense):
    with pytest.raises(DTypeError, match="must be an array, got list"):
        dense([[1.0] * 5])


def test_mixed_devices_refused():
    layer = npdl.Dense(5, 3, device="cpu", rng=backend.Generator("cpu", 0))
    x = backend.get_device("strict").zeros((2, 5))
    with pytest.raises(DeviceError, match="device 'strict'.*parameters are on 'cpu'"):
        layer(x)


def test_mixed_array_libraries_refused():
    import numpy as np

    strict = backend.get_device("strict")
    with pytest.raises(DeviceError, match="different libraries"):
        backend.namespace(np.zeros(2), strict.zeros((2,)))
    loss = npdl.SoftmaxCrossEntropy()
    with pytest.raises(DeviceError):
        loss(strict.zeros((2, 3)), np.zeros(2, dtype=np.int64))


def test_labels_out_of_range(device):
    loss = npdl.SoftmaxCrossEntropy()
    logits = device.zeros((3, 4))
    with pytest.raises(LabelError, match=r"0\.\.3 for 4 classes, got values in 0\.\.4"):
        loss(logits, device.asarray([0, 1, 4]))
    with pytest.raises(LabelError, match=r"got values in -1\.\.1"):
        npdl.NegativeLogLikelihood()(logits + 0.25, device.asarray([0, 1, -1]))


def test_labels_wrong_shape_or_dtype(device):
    loss = npdl.SoftmaxCrossEntropy()
    logits = device.zeros((3, 4))
    with pytest.raises(LabelError, match=r"shape \(3,\).*got \(2,\)"):
        loss(logits, device.asarray([0, 1]))
    with pytest.raises(LabelError, match=r"shape \(3,\).*got \(3, 1\)"):
        loss(logits, device.asarray([[0], [1], [2]]))
    with pytest.raises(LabelError, match="integer class indices, got dtype float32"):
        loss(logits, device.asarray([0.0, 1.0, 2.0], dtype="float32"))


def test_regression_targets_must_match(device):
    with pytest.raises(ShapeError, match=r"same shape, got \(3, 2\) and \(3, 1\)"):
        npdl.MeanSquaredError()(device.zeros((3, 2)), device.zeros((3, 1)))
    with pytest.raises(DTypeError, match="target has dtype float64"):
        npdl.BinaryCrossEntropy()(device.zeros((3, 2)), device.zeros((3, 2), "float64"))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="n_in and n_out must be positive"):
        npdl.Dense(0, 3)
    with pytest.raises(ValueError, match="unknown initialiser 'glorot'"):
        npdl.Dense(2, 3, init="glorot")
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        npdl.Dropout(1.0)
    with pytest.raises(DTypeError, match="unsupported float dtype 'float16'"):
        npdl.Dense(2, 3, dtype="float16")
    with pytest.raises(ValueError, match="reduction must be one of"):
        npdl.MeanSquaredError(reduction="avg")
