"""One whole training step (forward, backward, update) captured as a CUDA graph and replayed per batch.

On a GPU a small batch's step is bound by launch and Python overhead: a few dozen kernels
of microseconds each, each launched from Python. :func:`capture_step` records one
``model.train_step`` on fixed device buffers into a ``cupy.cuda.Graph`` (CuPy's stream
capture) and returns a step that copies each batch into those buffers and launches the
whole graph at once::

    step = capture_step(model, x_example, y_example)
    for xb, yb in batches:          # same shapes and dtypes as the example
        loss = step(xb, yb)         # a 0-d device array, rewritten by every replay
    if not step.captured:
        print("plain step:", step.reason)

How it is done:

* the batch is copied into two fixed buffers (allocated once), so the graph always
  reads the same addresses; the copies and the launch run on the capture stream, which
  first waits for the caller's stream (an event), and the caller's stream then waits
  for the graph, so work queued before and after a step is ordered as without a graph;
* a few warm-up steps run first, uncaptured, so every lazily made thing exists before
  capture: cuBLAS handles, compiled kernels, the optimizer's state arrays (momentum...);
* capture allocates from a private ``cupy.cuda.MemoryPool`` that the step keeps for its
  lifetime: the graph's temporaries keep their addresses and nothing else can be given
  them between replays;
* the warm-up and the (not executed) captured step leave no trace: the parameters, the
  optimizer's state arrays and its iteration count are copied before warm-up and written
  back in place afterwards (in place: the graph holds their addresses). So ``n`` replays
  give the parameters of ``n`` plain steps. Each replay adds 1 to ``optimizer.iterations``.

What a graph cannot replay, so :func:`capture_step` falls back to the plain step and
says why in ``step.reason`` (and logs it):

* not CuPy (CPU, ``strict``), or a CuPy without stream capture (``Stream.begin_capture``
  and ``cuda.Graph`` came in CuPy 9);
* layers that draw random numbers each step (:class:`~npdl.layers.Dropout`,
  :class:`~npdl.layers.MaskingNoise`, :class:`~npdl.layers.GaussianNoise`,
  :class:`~npdl.layers.DropoutNoise`; anything with an ``rng``): CuPy's generator cannot be
  captured (cuRAND), and a mask drawn once would be frozen into every replay;
* an optimizer whose step uses per-step Python numbers: the graph bakes every Python
  float in at capture. Capture-safe (:data:`CAPTURE_SAFE_OPTIMIZERS`): ``SGD``,
  ``Momentum``, ``Nesterov`` and ``RMSprop`` with a constant learning rate (no schedule;
  clipping by global norm is fine, it computes its scale on the device). Not safe:
  ``Adam`` (its bias corrections ``1 - beta^t`` depend on the step count ``t``) and any
  non-constant schedule (``StepDecay``, ``ExponentialDecay``: the rate is a Python float
  per step);
* an error while capturing: an operation that waits for the host (reading a value back,
  the loss's label range check, which is switched off here as ``npdl bench`` does), or a
  CUDA library CuPy refuses to call during capture. **CuPy refuses cuBLAS calls (matrix
  products) while a stream is capturing** (``NotImplementedError``; cupy/cupy#6290), so with
  the CuPy releases that do so every model with a dense, convolutional or recurrent layer
  falls back, with that error as the reason. The reason is reported, never hidden.
"""

from __future__ import annotations

import logging

from .. import backend

log = logging.getLogger(__name__)

#: optimizers whose update uses only constant Python numbers (given a constant learning rate)
CAPTURE_SAFE_OPTIMIZERS = ("SGD", "Momentum", "Nesterov", "RMSprop")


def _layers(model):
    """Every layer, wrapped ones (``TimeDistributed(layer)``) included."""
    for layer in model.layers:
        yield layer
        inner = getattr(layer, "layer", None)
        if inner is not None:
            yield inner


def capture_problems(model) -> list:
    """Why ``model``'s step cannot be replayed from a graph, as sentences (empty: it can be tried).

    Checks what can be known without a GPU: layers that draw noise and optimizers or
    schedules that use per-step Python numbers. Errors during capture itself are found
    by :func:`capture_step`.
    """
    problems = []
    if model.loss is None or model.optimizer is None:
        return ["the model is not compiled"]
    noisy = [f"{type(layer).__name__} ({layer.name})" for layer in _layers(model)
             if hasattr(layer, "rng")]
    if noisy:
        problems.append(f"layers draw random numbers every step ({', '.join(noisy)}): a graph would freeze "
                        f"one draw into every replay, and CuPy cannot capture its random generator")
    opt = model.optimizer
    name = type(opt).__name__
    if name not in CAPTURE_SAFE_OPTIMIZERS:
        why = " (its bias corrections depend on the step count)" if name == "Adam" else ""
        problems.append(f"optimizer {name} is not capture-safe{why}; capture-safe: "
                        f"{', '.join(CAPTURE_SAFE_OPTIMIZERS)} with a constant learning rate")
    schedule = type(opt.schedule).__name__
    if schedule != "Constant":
        problems.append(f"learning-rate schedule {schedule} changes the rate every step; a graph would "
                        f"keep the rate of the captured step")
    return problems


def _has_graphs(cupy) -> bool:
    return hasattr(cupy.cuda, "Graph") and hasattr(cupy.cuda.Stream, "begin_capture") \
        and hasattr(cupy.cuda, "MemoryPool") and hasattr(cupy.cuda, "using_allocator")


class _Snapshot:
    """Copies of the parameters and optimizer state, written back in place by :meth:`restore`."""

    def __init__(self, model):
        self.model = model
        self.params = [(p, backend_copy(p)) for p in model.parameters().values()]
        opt = model.optimizer
        self.slots = {k: backend_copy(v) for k, v in opt._slots.items()}
        self.iterations = opt.iterations

    def restore(self):
        for p, saved in self.params:
            p[...] = saved
        opt = self.model.optimizer
        for key, s in opt._slots.items():
            if key in self.slots:
                s[...] = self.slots[key]
            else:  # made by the warm-up: state arrays start at zero
                s[...] = 0
        opt.iterations = self.iterations


def backend_copy(x):
    out = backend.namespace(x).empty_like(x)
    out[...] = x
    return out


class PlainStep:
    """The uncaptured step, with the reason a graph is not used."""

    captured = False

    def __init__(self, model, reason: str):
        self.model, self.reason = model, reason

    def __call__(self, xb, yb):
        return self.model.train_step(xb, yb)

    def __repr__(self):
        return f"PlainStep(model={self.model.name!r}, reason={self.reason!r})"


class GraphStep:
    """A captured step: copy the batch into the fixed buffers, launch the graph. See the module docstring."""

    captured = True
    reason = None

    def __init__(self, model, cupy, stream, graph, pool, x_buf, y_buf, loss):
        self.model, self.cupy, self.stream, self.graph, self.pool = model, cupy, stream, graph, pool
        self.x_buf, self.y_buf, self.loss = x_buf, y_buf, loss
        self._ready, self._done = cupy.cuda.Event(), cupy.cuda.Event()

    def _check(self, what, a, buf):
        if tuple(a.shape) != tuple(buf.shape) or a.dtype != buf.dtype:
            raise ValueError(f"{self.model.name}: the captured step takes {what} of shape {tuple(buf.shape)} "
                             f"and dtype {buf.dtype}, got {tuple(a.shape)} {a.dtype} (a partial last batch "
                             f"needs the plain model.train_step)")

    def __call__(self, xb, yb):
        self._check("inputs", xb, self.x_buf)
        self._check("targets", yb, self.y_buf)
        cuda = self.cupy.cuda
        caller = cuda.get_current_stream()
        self._ready.record(caller)  # the batch may still be being written on the caller's stream
        self.stream.wait_event(self._ready)
        with self.stream:
            self.x_buf[...] = xb
            self.y_buf[...] = yb
            self.graph.launch(stream=self.stream)
        self._done.record(self.stream)
        caller.wait_event(self._done)
        self.model.optimizer.iterations += 1
        return self.loss

    def __repr__(self):
        return f"GraphStep(model={self.model.name!r}, batch={tuple(self.x_buf.shape)})"


def _fallback(model, reason: str) -> PlainStep:
    log.info("CUDA graph capture not used for %s: %s", model.name, reason)
    return PlainStep(model, reason)


def capture_step(model, x_example, y_example, warmup: int = 3, cupy=None):
    """A step ``step(xb, yb) -> loss`` replaying one captured ``model.train_step``, or the plain step.

    ``x_example``/``y_example`` fix the batch's shapes and dtypes (and are the warm-up's
    data; the model's state is unchanged on return). ``step.captured`` says which one you
    got and ``step.reason`` why not. ``cupy`` is for tests: a stand-in for the CuPy module
    (then the model's device is not checked).
    """
    if cupy is None:
        if not model.device.is_gpu:
            return _fallback(model, f"the model is on {model.device}, not a GPU: CUDA graphs need CuPy")
        import cupy
    if not _has_graphs(cupy):
        return _fallback(model, f"CuPy {getattr(cupy, '__version__', '?')} is too old for CUDA graphs "
                                f"(Stream.begin_capture and cuda.Graph came in CuPy 9)")
    problems = capture_problems(model)
    if problems:
        return _fallback(model, "; ".join(problems))
    if hasattr(model.loss, "check_range"):
        model.loss.check_range = False  # reads the labels' range back to the host: not capturable
    x_buf, y_buf = backend_copy(x_example), backend_copy(y_example)
    snapshot = _Snapshot(model)
    stream = cupy.cuda.Stream(non_blocking=True)
    cupy.cuda.get_current_stream().synchronize()  # the example batch and the buffers are written
    pool = cupy.cuda.MemoryPool()
    graph = loss = None
    try:
        with stream:
            for _ in range(warmup):
                model.train_step(x_buf, y_buf)
        stream.synchronize()
        with cupy.cuda.using_allocator(pool.malloc), stream:
            stream.begin_capture()
            try:
                loss = model.train_step(x_buf, y_buf)
            finally:
                graph = stream.end_capture()  # ends the capture even when the step raised
        stream.synchronize()
    except Exception as exc:  # noqa: BLE001  (any failure means: no graph, say why)
        if stream.is_capturing():
            try:
                stream.end_capture()
            except Exception:  # noqa: BLE001  (an invalidated capture raises here too)
                pass
        _synchronize(stream)
        snapshot.restore()
        model.clear_caches()
        _synchronize(cupy.cuda.get_current_stream())
        return _fallback(model, f"capture failed: {type(exc).__name__}: {exc}")
    snapshot.restore()  # undo the warm-up steps (the captured step was recorded, not run)
    cupy.cuda.get_current_stream().synchronize()
    return GraphStep(model, cupy, stream, graph, pool, x_buf, y_buf, loss)


def _synchronize(stream):
    try:
        stream.synchronize()
    except Exception:  # noqa: BLE001  (a stream left in a failed capture state)
        pass
