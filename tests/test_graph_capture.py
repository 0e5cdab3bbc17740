"""CUDA-graph capture of a training step (npdl.bench.graph).

Without a GPU: the fallback reasons (CPU device, noisy layers, optimizers and schedules a
graph cannot replay, a CuPy without graphs, a failing capture) and the replay logic with a
stand-in CuPy module whose "graph" re-runs the step on the fixed buffers, so the buffer
copies, the stream ordering and the state restore after warm-up are checked on NumPy.
With CuPy and a GPU (marked ``gpu``): the captured step gives the plain step's parameters.
"""

import numpy as np
import pytest

from npdl import backend
from npdl.bench import parse
from npdl.bench.autoencoder_step import build_autoencoder
from npdl.bench.graph import CAPTURE_SAFE_OPTIMIZERS, GraphStep, PlainStep, capture_problems, capture_step
from npdl.bench.npdl_step import build_model
from npdl.optim import SGD, Adam, Momentum

HAS_GPU = backend.cupy_or_none() is not None


def batches(device, w, n, seed=5):
    rng = backend.Generator(device, seed)
    return [(rng.normal((w.batch_size, w.sizes[0]), dtype="float32"), rng.integers(0, w.sizes[-1], (w.batch_size,)))
            for _ in range(n)]


def params_of(model):
    return {k: backend.to_numpy(v).copy() for k, v in model.parameters().items()}


# ---------------------------------------------------------------------- a stand-in CuPy
class FakeCupy:
    """Just enough of ``cupy`` for capture_step: streams, events, a memory pool, and graphs whose
    launch calls ``self.replay()`` (set by the test: the step on the fixed buffers)."""

    __version__ = "fake"

    def __init__(self, fail_capture=False, graphs=True):
        fake = self
        self.log, self.replay, self.fail_capture = [], None, fail_capture

        class Stream:
            def __init__(self, non_blocking=False, name="capture"):
                self.name, self.capturing, self.non_blocking = name, False, non_blocking

            def __enter__(self):
                fake.log.append(f"enter {self.name}")
                return self

            def __exit__(self, *exc):
                fake.log.append(f"exit {self.name}")

            def synchronize(self):
                fake.log.append(f"synchronize {self.name}")

            def wait_event(self, event):
                fake.log.append(f"{self.name} waits {event.stream}")

            def is_capturing(self):
                return self.capturing

            def end_capture(self):
                self.capturing = False
                fake.log.append("end_capture")
                if fake.fail_capture:
                    raise RuntimeError("cudaErrorStreamCaptureInvalidated")
                return Graph()

        if graphs:
            def begin_capture(self):
                assert self.non_blocking, "capture needs a non-blocking stream"
                self.capturing = True
                fake.log.append("begin_capture")

            Stream.begin_capture = begin_capture

        class Graph:
            def launch(self, stream=None):
                fake.log.append(f"launch on {stream.name}")
                fake.replay()

        class Event:
            def __init__(self):
                self.stream = None

            def record(self, stream=None):
                self.stream = stream.name

        class MemoryPool:
            def malloc(self, size):
                raise AssertionError("not called on NumPy")

        class _Allocator:
            def __init__(self, fn):
                self.fn = fn

            def __enter__(self):
                fake.log.append("private pool")

            def __exit__(self, *exc):
                fake.log.append("default pool")

        caller = Stream(name="caller")
        cuda = type("cuda", (), {})()
        cuda.Stream, cuda.Event, cuda.MemoryPool, cuda.using_allocator = Stream, Event, MemoryPool, _Allocator
        cuda.get_current_stream = lambda: caller
        if graphs:
            cuda.Graph = Graph
        self.cuda = cuda


# ---------------------------------------------------------------------- fallback reasons
def test_on_the_cpu_the_plain_step_is_used_and_says_why():
    w = parse("mlp_b4")
    model, reference = build_model(w, "cpu", seed=4), build_model(w, "cpu", seed=4)
    (x, y), = batches("cpu", w, 1)
    step = capture_step(model, x, y)
    assert isinstance(step, PlainStep) and not step.captured
    assert "not a GPU" in step.reason and "cpu" in step.reason
    assert model.optimizer.iterations == 0  # no warm-up steps on the model
    loss, expected_loss = step(x, y), reference.train_step(x, y)  # the plain step is model.train_step
    assert backend.to_float(loss) == backend.to_float(expected_loss)
    p, r = params_of(model), params_of(reference)
    assert all(np.array_equal(p[k], r[k]) for k in r) and model.optimizer.iterations == 1


def test_noisy_layers_are_refused():
    model = build_autoencoder(parse("da_b4"), "cpu")
    problems = capture_problems(model)
    assert len(problems) == 1 and "MaskingNoise" in problems[0] and "random" in problems[0]
    x = backend.Generator("cpu", 1).uniform((4, 784), dtype="float32")
    step = capture_step(model, x, x, cupy=FakeCupy())
    assert not step.captured and "MaskingNoise" in step.reason


def test_only_capture_safe_optimizers_and_constant_rates():
    w = parse("mlp_b4")
    assert capture_problems(build_model(w, "cpu")) == []  # SGD, constant rate
    assert "SGD" in CAPTURE_SAFE_OPTIMIZERS and "Adam" not in CAPTURE_SAFE_OPTIMIZERS
    model = build_model(w, "cpu")
    model.compile("softmax_cross_entropy", Adam(), metrics=())
    (problem,) = capture_problems(model)
    assert "Adam is not capture-safe" in problem and "step count" in problem
    model.compile("softmax_cross_entropy", Momentum(0.01, clip_norm=1.0), metrics=())
    assert capture_problems(model) == []  # clipping scales on the device: fine
    model.compile("softmax_cross_entropy", SGD(0.1, schedule={"class": "StepDecay", "config": {"step_size": 10}}),
                  metrics=())
    (problem,) = capture_problems(model)
    assert "StepDecay" in problem
    (x, y), = batches("cpu", w, 1)
    step = capture_step(model, x, y, cupy=FakeCupy())
    assert not step.captured and "StepDecay" in step.reason


def test_a_cupy_without_graphs_is_too_old():
    w = parse("mlp_b4")
    (x, y), = batches("cpu", w, 1)
    step = capture_step(build_model(w, "cpu"), x, y, cupy=FakeCupy(graphs=False))
    assert not step.captured and "too old" in step.reason


def test_a_failing_capture_falls_back_and_leaves_the_model_as_it_was():
    w = parse("mlp_b4")
    model = build_model(w, "cpu")
    before = params_of(model)
    (x, y), = batches("cpu", w, 1)
    step = capture_step(model, x, y, cupy=FakeCupy(fail_capture=True))
    assert not step.captured and "capture failed" in step.reason and "Invalidated" in step.reason
    # the warm-up steps (and, on NumPy, the "captured" one) trained the model; all undone
    after = params_of(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert model.optimizer.iterations == 0


# ---------------------------------------------------------------------- replay logic on NumPy
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_replays_give_the_plain_steps_parameters(optimizer):
    """n replays == n plain steps, bit for bit: warm-up undone (momentum's velocity too), each batch
    copied into the fixed buffers before the launch, the iteration count kept."""
    w = parse("mlp_b4")
    plain, graphed = build_model(w, "cpu", seed=3), build_model(w, "cpu", seed=3)
    if optimizer == "momentum":
        for m in (plain, graphed):
            m.compile("softmax_cross_entropy", Momentum(0.05), metrics=())
    data = batches("cpu", w, 4)
    fake = FakeCupy()
    step = capture_step(graphed, *data[0], cupy=fake)
    assert isinstance(step, GraphStep) and step.captured and step.reason is None
    assert graphed.optimizer.iterations == 0 and all(
        np.array_equal(a, b) for a, b in zip(params_of(plain).values(), params_of(graphed).values()))
    seen = []

    def replay():  # what the graph holds: the step's array work on the buffers, no Python state
        seen.append(step.x_buf.copy())
        iterations = graphed.optimizer.iterations
        graphed.train_step(step.x_buf, step.y_buf)
        graphed.optimizer.iterations = iterations

    fake.replay = replay
    x_buf = step.x_buf
    for xb, yb in data:
        plain.train_step(xb, yb)
        step(xb, yb)
    assert step.x_buf is x_buf and all(np.array_equal(s, xb) for s, (xb, _) in zip(seen, data))
    assert graphed.optimizer.iterations == plain.optimizer.iterations == 4
    p, g = params_of(plain), params_of(graphed)
    assert all(np.array_equal(p[k], g[k]) for k in p)


def test_capture_and_replay_order_streams_and_pools():
    w = parse("mlp_b2")
    model = build_model(w, "cpu")
    (x, y), = batches("cpu", w, 1)
    fake = FakeCupy()
    step = capture_step(model, x, y, warmup=2, cupy=fake)
    log = fake.log
    # warm-up on the capture stream, then capture from the private pool, and end the capture
    assert log.index("enter capture") < log.index("private pool") < log.index("begin_capture") \
        < log.index("end_capture") < log.index("default pool")
    fake.log.clear()
    fake.replay = lambda: None
    step(x, y)
    assert fake.log == ["capture waits caller", "enter capture", "launch on capture", "exit capture",
                        "caller waits capture"]
    with pytest.raises(ValueError, match="partial last batch"):
        step(x[:1], y[:1])


# ---------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("name", ["mlp_b16", "sda_b8"])
def test_captured_step_matches_the_plain_step_on_the_gpu(name):
    w = parse(name)
    plain, graphed = build_model(w, "cuda:0", seed=2), build_model(w, "cuda:0", seed=2)
    data = batches("cuda:0", w, 5)
    step = capture_step(graphed, *data[0])
    for xb, yb in data:
        plain.train_step(xb, yb)
        loss = step(xb, yb)
    backend.get_device("cuda:0").synchronize()
    p, g = params_of(plain), params_of(graphed)
    for k in p:
        np.testing.assert_allclose(g[k], p[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert np.isfinite(backend.to_float(loss))
    if not step.captured:
        pytest.skip(f"capture fell back, only the fallback was checked: {step.reason}")
