"""Data-parallel training (npdl.distributed): in one process (ranks as threads, ``mpi_cases.ThreadWorld``),
under ``mpiexec -n 2`` (skipped without mpi4py and mpiexec; CI installs ``[mpi]``), and on GPUs (``gpu``)."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import npdl
import npdl.distributed as dist
from npdl.deferred import ProductGrad
from npdl.training import Callback, TrainingDivergedError

sys.path.insert(0, os.path.dirname(__file__))
from mpi_cases import BATCH, FAMILIES, ThreadWorld, data, model, params, relative_difference  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@pytest.fixture
def thread_safe_kernels():
    """Ranks as threads call the Numba kernels at the same time: fine with the omp/tbb threading
    layers; with workqueue (not thread-safe) run the definitions instead."""
    from npdl import kernels
    from npdl.environment import _numba

    layer = _numba().get("threading_layer")
    previous = kernels.mode()
    if layer not in ("omp", "tbb"):
        kernels.use("off")
    yield
    kernels.use(None if previous == "auto" else previous)


# ------------------------------------------------------------------------------- shards


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shards_cover_the_batch_contiguously_and_evenly(size):
    for n in range(0, 11):
        bounds = [dist.shard_bounds(n, size, r) for r in range(size)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        sizes = [hi - lo for lo, hi in bounds]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


# ---------------------------------------------------------------------------- keyed draws


@pytest.mark.parametrize("draw", ["uniform32", "uniform64", "normal", "bernoulli"])
def test_keyed_draws_do_not_depend_on_how_the_batch_is_split(draw):
    def sample(g, shape):
        return {"uniform32": lambda: g.uniform(shape, dtype="float32"),
                "uniform64": lambda: g.uniform(shape, dtype="float64"),
                "normal": lambda: g.normal(shape, std=2.0, dtype="float64"),
                "bernoulli": lambda: g.bernoulli(shape, 0.3, dtype="float64")}[draw]()

    whole = dist.KeyedGenerator("cpu", 9)
    whole.begin_step(0)
    full = [sample(whole, (7, 3, 2)) for _ in range(2)]  # two draws in one step (two layers)
    for cuts in ([0, 4, 7], [0, 1, 2, 7], [0, 0, 7], [0, 7, 7]):
        parts = [[], []]
        for lo, hi in zip(cuts, cuts[1:]):
            g = dist.KeyedGenerator("cpu", 9)
            g.begin_step(lo)
            for k in range(2):
                parts[k].append(sample(g, (hi - lo, 3, 2)))
        for k in range(2):
            np.testing.assert_array_equal(np.concatenate(parts[k]), full[k])
    assert not np.array_equal(full[0], full[1])


def test_keyed_draws_have_the_right_distribution_and_change_with_step_and_seed():
    g = dist.KeyedGenerator("cpu", 1)
    g.begin_step(0)
    u = g.uniform((400, 500), dtype="float64")
    assert u.dtype == np.float64 and 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 3e-3 and abs(u.var() - 1 / 12) < 2e-3
    z = g.normal((400, 500), std=2.0, mean=1.0, dtype="float32")
    assert z.dtype == np.float32 and abs(z.mean() - 1.0) < 0.02 and abs(z.std() - 2.0) < 0.02
    m = g.bernoulli((400, 500), 0.3)
    assert m.dtype == np.float32 and set(np.unique(m)) == {0.0, 1.0} and abs(m.mean() - 0.3) < 5e-3
    # lag-1 correlation along the rows and across them: none to speak of
    assert abs(np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(u[:-1].ravel(), u[1:].ravel())[0, 1]) < 0.01
    g.begin_step(0)
    assert not np.array_equal(g.uniform((4, 5)), dist.KeyedGenerator("cpu", 1).uniform((4, 5)))
    assert not np.array_equal(dist.KeyedGenerator("cpu", 2).uniform((4, 5)),
                              dist.KeyedGenerator("cpu", 1).uniform((4, 5)))


def test_keyed_generator_state_resumes_the_same_sequence():
    g = dist.KeyedGenerator("cpu", 4)
    g.begin_step(0)
    g.uniform((3, 2))
    state = json.loads(json.dumps(g.get_state()))
    expected = g.uniform((3, 2))
    h = dist.KeyedGenerator("cpu", 4)
    h.set_state(state)
    np.testing.assert_array_equal(h.uniform((3, 2)), expected)
    plain = npdl.Generator("cpu", 4)
    plain.set_state(state)  # a checkpoint of a distributed run still loads into a one-process generator
    with pytest.raises(ValueError, match="seed must be an integer"):
        dist.KeyedGenerator("cpu", None)


# -------------------------------------------------------------------------------- buckets


def test_buckets_pack_many_parameters_into_few_messages_and_form_products_in_place():
    rng = np.random.default_rng(0)
    params = {"0.W": rng.random((6, 5)), "0.b": rng.random(5), "1.W": rng.random((5, 3)), "1.b": rng.random(3)}
    one = dist.Buckets(params, scalar_dtype="float64", scalar_device="cpu")
    assert one.messages == 1 and one.nbytes == (30 + 5 + 15 + 3 + 1) * 8
    small = dist.Buckets(params, bucket_bytes=160)  # 20 float64 a bucket: [0.W (alone: larger)], [0.b, 1.W], [1.b]
    assert small.messages == 3 and [f.shape[0] for f in small.flats] == [30, 20, 3] and small.fits(params) and not small.fits({**params, "0.b": rng.random(4)})
    A, B, C, D = rng.random((7, 6)), rng.random((7, 5)), rng.random((2, 6)), rng.random((2, 5))
    grads = {**params, "0.W": ProductGrad([(A, B), (C, D)])}
    one.pack(grads, scalar=np.float64(2.5))
    views = one.views()
    np.testing.assert_allclose(views["0.W"], A.T @ B + C.T @ D, rtol=1e-14)
    np.testing.assert_array_equal(views["1.b"], params["1.b"])
    assert float(one.scalar()) == 2.5
    one.flats[0][...] = 0.0  # the views are the buffer itself
    assert not views["0.W"].any() and float(one.scalar()) == 0.0


# ------------------------------------------------------------ two ranks as threads, in process


def _fit_on_ranks(family, optimizer, size=2, loss=None):
    """Every rank's parameters and loss after one epoch (3 steps) of data-parallel fit."""
    x, y = data(family)

    def rank(comm):
        m = model(family, optimizer, seed=11 + comm.rank)
        if loss is not None:
            m.loss = npdl.losses.get_loss(loss)
        dist.attach(m, comm)
        h = m.fit(x, y, epochs=1, batch_size=BATCH, rng=npdl.Generator("cpu", 5), verbose=0)
        return params(m), h.loss[-1], m.evaluate(x, y, batch_size=4), comm.calls
    return ThreadWorld(size).run(rank)


def _one_process(family, optimizer, loss=None):
    x, y = data(family)
    m = model(family, optimizer, seed=11)
    if loss is not None:
        m.loss = npdl.losses.get_loss(loss)
    if FAMILIES[family][4]:  # keyed draws: a job of one
        dist.attach(m, dist.SingleProcess())
    h = m.fit(x, y, epochs=1, batch_size=BATCH, rng=npdl.Generator("cpu", 5), verbose=0)
    return params(m), h.loss[-1], m.evaluate(x, y, batch_size=4)


@pytest.mark.parametrize("family,optimizer", [("mlp", "adam"), ("tied-da", "momentum"), ("conv", "sgd"),
                                              ("rnn", "adam"), ("lstm", "momentum"), ("mlp-dropout", "sgd")])
def test_two_ranks_equal_one_process_with_the_global_batch(family, optimizer, thread_safe_kernels):
    ranks = _fit_on_ranks(family, optimizer)
    ref_params, ref_loss, ref_eval = _one_process(family, optimizer)
    for got_params, got_loss, got_eval, calls in ranks:
        assert relative_difference(got_params, ref_params) <= 1e-12
        assert abs(got_loss - ref_loss) <= 1e-12 * abs(ref_loss)
        for k in ref_eval:
            assert abs(got_eval[k] - ref_eval[k]) <= 1e-12 * max(abs(ref_eval[k]), 1e-300)
        assert calls["allreduce_sum"] == 3 + 1  # one gradient message per step, one for the evaluation
    assert ranks[0][0].keys() == ref_params.keys()


def test_three_ranks_and_a_summed_loss(thread_safe_kernels):
    """A loss summed over the batch is summed over the ranks (weight 1), averaged ones are weighted."""
    ranks = _fit_on_ranks("lstm", "sgd", size=3, loss=npdl.losses.MeanSquaredError(reduction="sum"))
    ref_params, ref_loss, _ = _one_process("lstm", "sgd", loss=npdl.losses.MeanSquaredError(reduction="sum"))
    for got_params, got_loss, _, _ in ranks:
        assert relative_difference(got_params, ref_params) <= 1e-12
        assert abs(got_loss - ref_loss) <= 1e-12 * abs(ref_loss)


def test_a_stop_on_one_rank_stops_every_rank_at_the_same_batch(thread_safe_kernels):
    x, y = data("mlp", n=40)

    class StopOnRank1(Callback):
        def on_batch_end(self, batch, logs=None):
            if self.params["rank"] == 1 and batch == 1:
                self.model.stop_training = True

    def rank(comm):
        m = model("mlp", "sgd")
        dist.attach(m, comm)
        m.fit(x, y, epochs=3, batch_size=BATCH, callbacks=[StopOnRank1()], verbose=0, rng=npdl.Generator("cpu", 1))
        return m.optimizer.iterations, len(m.history)
    assert ThreadWorld(2).run(rank) == [(2, 1), (2, 1)]


def test_divergence_is_raised_on_every_rank_together(thread_safe_kernels):
    x, y = data("mlp", n=40)
    x[30] = np.nan
    raised = []

    def rank(comm):
        m = model("mlp", "sgd")
        dist.attach(m, comm)
        try:
            m.fit(x, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0)
        except TrainingDivergedError as exc:
            raised.append((comm.rank, exc.epoch))
        return m.optimizer.iterations
    steps = ThreadWorld(2).run(rank)
    assert sorted(raised) == [(0, 1), (1, 1)] and steps[0] == steps[1]


def test_ranks_whose_parameters_drift_apart_are_told(thread_safe_kernels):
    def rank(comm):
        m = model("mlp", "sgd")
        parallel = dist.attach(m, comm)
        if comm.rank == 1:
            m.layers[0].params["b"][0] += 1e-9
        with pytest.raises(dist.DistributedError, match="parameters differ"):
            parallel.check_in_sync()
    ThreadWorld(2).run(rank)


def test_only_distributed_models_draw_keyed_masks():
    plain = model("mlp-dropout", "sgd")
    assert type(plain.layers[1].rng) is npdl.Generator  # one-process runs keep their PCG64 masks
    parallel = dist.attach(model("mlp-dropout", "sgd"), dist.SingleProcess())
    assert isinstance(parallel.model.layers[1].rng, dist.KeyedGenerator) and parallel.generators


# ------------------------------------------------------------------------ the launcher's world


def test_world_from_the_launchers_environment(monkeypatch):
    assert dist.launched_size({}) == 1 and dist.launched_size({"PMI_SIZE": "4"}) == 4
    assert dist.launched_size({"OMPI_COMM_WORLD_SIZE": "2"}) == 2
    with pytest.raises(dist.DistributedError, match="not a number"):
        dist.launched_size({"PMI_SIZE": "x"})
    from npdl.distributed import launch

    monkeypatch.setattr(launch, "_WORLD", None)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if not installed
    with pytest.raises(dist.DistributedError, match=r"npdl-backprop\[mpi\]"):
        dist.init()
    monkeypatch.delenv("PMI_SIZE")
    assert isinstance(dist.init(), dist.SingleProcess) and dist.is_writer()
    launch.reset()
    assert "mpi4py is not installed" in dist.mpi_info()["reason"]  # what npdl info says then


def test_other_ranks_write_a_private_copy_of_the_run_folder(tmp_path):
    from npdl.distributed.runs import private_copy

    (tmp_path / "checkpoint.npz").write_bytes(b"x")
    (tmp_path / "run.lock").write_text("held by rank 0")
    copy = private_copy(str(tmp_path), True, 1)
    assert sorted(os.listdir(copy)) == ["checkpoint.npz"] and not copy.startswith(str(tmp_path))
    assert not os.path.exists(private_copy(str(tmp_path), False, 1))  # a new run: its folder is made by the run


# ------------------------------------------------------------------------ mpiexec -n 2, for real

MPIEXEC = shutil.which("mpiexec") or shutil.which("mpirun")
try:
    import mpi4py  # noqa: F401
    HAS_MPI = MPIEXEC is not None
except ImportError:
    HAS_MPI = False
needs_mpi = pytest.mark.skipif(not HAS_MPI, reason='needs mpi4py and mpiexec (pip install "npdl-backprop[mpi]")')


@pytest.fixture(autouse=True)
def _scratch_in_tmp_path(tmp_path, monkeypatch):
    """The other ranks' scratch copies of a run folder (left behind by a rank that is killed) go to tmp_path."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def _mpiexec(*args, n=2, timeout=180):
    started = time.monotonic()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.run([MPIEXEC, "-n", str(n), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)
    return proc, time.monotonic() - started


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@needs_mpi
def test_mpiexec_two_ranks_equal_one_process_for_every_family_and_optimizer():
    proc, _ = _mpiexec(sys.executable, os.path.join(HERE, "mpi_equivalence.py"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = _json_lines(proc.stdout)
    assert lines[-1] == {"done": 19, "ranks": 2}
    cases = lines[:-1]
    assert {c["case"].split("/")[0] for c in cases} == set(FAMILIES) | {"lstm-stateful"}
    for c in cases:
        assert c["steps"] == 3 and max(c["params"], c["loss"], c["evaluate"]) <= 1e-12, c


@needs_mpi
def test_mpiexec_npdl_train_distributed_matches_one_process(tmp_path):
    npdl_cmd = [sys.executable, "-m", "npdl"]
    single = subprocess.run(npdl_cmd + ["train", "regressor", "--epochs", "30", "--json"], capture_output=True,
                            text=True, cwd=ROOT, timeout=180)
    out = str(tmp_path / "run")
    proc, _ = _mpiexec(*npdl_cmd, "train", "regressor", "--epochs", "30", "--json", "--distributed", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = _json_lines(proc.stdout)
    assert len(results) == 1  # rank 0 alone prints
    ours, ref = results[0]["extra"]["params"], _json_lines(single.stdout)[0]["extra"]["params"]
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-5)
    assert {"run.json", "model.npz", "checkpoint.npz"} <= set(os.listdir(out))
    assert json.load(open(os.path.join(out, "run.json")))["settings"]["ranks"] == 2
    info = subprocess.run(npdl_cmd + ["info"], capture_output=True, text=True, cwd=ROOT, timeout=180).stdout
    assert "\nmpi " in info and "mpi4py" in info
    assert "rank 1 pid" in proc.stderr  # which process is which rank, for the launcher's messages


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    """The final parameters of the fault script's run without a failure."""
    proc, _ = _mpiexec(sys.executable, os.path.join(HERE, "mpi_faults.py"), "none",
                       str(tmp_path_factory.mktemp("whole") / "run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _json_lines(proc.stdout)[0]["params"]


@needs_mpi
@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_and_the_checkpoint_resumes(mode, tmp_path, uninterrupted_run):
    out = str(tmp_path / "run")
    proc, seconds = _mpiexec(sys.executable, os.path.join(HERE, "mpi_faults.py"), mode, out, timeout=60)
    assert proc.returncode != 0 and seconds < 30
    if mode == "raise":
        assert "rank 1 of 2 failed" in proc.stderr and "a deliberate failure on rank 1" in proc.stderr
    else:  # the launcher names the process id; the first line names its rank
        pid = proc.stderr.split("rank 1 pid ")[1].split()[0]
        assert f"PID {pid}" in proc.stdout + proc.stderr
    assert npdl.training.read_checkpoint(os.path.join(out, "checkpoint.npz"))["epoch"] == 2
    resumed, _ = _mpiexec(sys.executable, os.path.join(HERE, "mpi_faults.py"), "resume", out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = _json_lines(resumed.stdout)[0]
    assert got["resumed_from_epoch"] == 2 and got["params"] == uninterrupted_run  # bit for bit


def test_mpi_abort_waits_for_the_launcher_to_forward_the_reason(monkeypatch):
    """``MPI_Abort`` lets the launcher end the job at once: the reason written just before must first
    be flushed and given :data:`ABORT_GRACE_SECONDS` to travel (no MPI needed: a recording stand-in)."""
    from npdl.distributed import comm as comm_module

    events = []

    class Stream:
        def __init__(self, name):
            self.name = name

        def write(self, text):
            events.append(("write", self.name))

        def flush(self):
            events.append(("flush", self.name))

    class FakeMPIComm:
        def Abort(self, code):
            events.append(("Abort", code))

    class Exited(Exception):
        pass

    def exit_(code):
        events.append(("_exit", code))
        raise Exited

    monkeypatch.setattr(comm_module.sys, "stdout", Stream("stdout"))
    monkeypatch.setattr(comm_module.sys, "stderr", Stream("stderr"))
    monkeypatch.setattr(comm_module.time, "sleep", lambda s: events.append(("sleep", s)))
    monkeypatch.setattr(comm_module.os, "_exit", exit_)
    world = object.__new__(comm_module.MPICommunicator)  # no MPI: only what abort touches
    world.comm, world._nccl = FakeMPIComm(), {}
    with pytest.raises(Exited):
        world.abort(3)
    assert comm_module.ABORT_GRACE_SECONDS >= 0.1
    assert events == [("flush", "stdout"), ("flush", "stderr"), ("sleep", comm_module.ABORT_GRACE_SECONDS),
                      ("Abort", 3), ("_exit", 3)]


@needs_mpi
def test_mpiexec_user_error_ends_every_rank_without_a_traceback():
    proc, seconds = _mpiexec(sys.executable, "-m", "npdl", "train", "regressor", "--distributed", "--resume",
                             "--out", os.path.join(ROOT, "no-such-run-folder"), timeout=60)
    assert proc.returncode != 0 and seconds < 30
    assert "failed: --resume: no checkpoint" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------- GPUs

HAS_GPU = npdl.backend.cupy_or_none() is not None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")
def test_keyed_draws_are_the_same_on_the_gpu(dtype):
    cpu, gpu_ = dist.KeyedGenerator("cpu", 3), dist.KeyedGenerator("cuda:0", 3)
    for g in (cpu, gpu_):
        g.begin_step(5)
    np.testing.assert_array_equal(npdl.to_numpy(gpu_.uniform((6, 7), dtype=dtype)), cpu.uniform((6, 7), dtype=dtype))
    np.testing.assert_allclose(npdl.to_numpy(gpu_.normal((6, 7), dtype=dtype)), cpu.normal((6, 7), dtype=dtype),
                               rtol=1e-6 if dtype == "float32" else 1e-12, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU or not HAS_MPI, reason="needs CuPy, a CUDA device and mpi4py")
def test_one_rank_nccl_communicator_and_gpu_training_equal_the_cpu():
    cupy = npdl.backend.cupy_or_none()
    comm = dist.MPICommunicator()  # a job of one (MPI's singleton start): NCCL over one GPU
    a = cupy.arange(5, dtype=cupy.float64)
    np.testing.assert_array_equal(npdl.to_numpy(comm.allreduce_sum(a)), np.arange(5.0))
    np.testing.assert_array_equal(npdl.to_numpy(comm.broadcast(a)), np.arange(5.0))
    comm.barrier()
    x, y = data("tied-da")
    results = []
    for device, c in (("cpu", dist.SingleProcess()), ("cuda:0", comm)):
        m = model("tied-da", "adam").to(device)
        dist.attach(m, c)
        m.fit(x, y, epochs=1, batch_size=BATCH, rng=npdl.Generator("cpu", 5), verbose=0)
        results.append({k: npdl.to_numpy(v) for k, v in m.state_dict().items()})
    assert relative_difference(results[1], results[0]) <= 1e-10
