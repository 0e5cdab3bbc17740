"""Run under ``mpiexec -n 2``: data-parallel training equals one process with the global batch.

For every family (MLP, MLP with dropout, tied denoising autoencoder with masking noise, conv
net, RNN, LSTM) and optimizer (SGD, Momentum, Adam, each with an L2 penalty), in float64:
3 steps of ``fit`` over 15 examples in batches of 7 (shards 4/3, then a last batch of 1, so
rank 1's last shard is empty). Rank 1 builds its model from another seed, so the broadcast of
rank 0's parameters is tested too. Every rank also trains the one-process reference itself
(keyed draws for the families that draw: a job of one, :class:`SingleProcess`). Rank 0 prints
one JSON line per case: the relative differences of the parameters, of the epoch loss and of
a sharded evaluation. The last line is ``{"done": N}``.
"""

import json
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])

import npdl  # noqa: E402
import npdl.distributed as dist  # noqa: E402
from mpi_cases import BATCH, FAMILIES, OPTIMIZERS, data, model, params, relative_difference  # noqa: E402


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def one_case(comm, family, optimizer):
    x, y = data(family)
    keyed = FAMILIES[family][4]
    ours = model(family, optimizer, seed=11 + comm.rank)  # rank 0's parameters must win
    dist.attach(ours, comm)
    h = ours.fit(x, y, epochs=1, batch_size=BATCH, rng=npdl.Generator("cpu", 5), verbose=0)
    ref = model(family, optimizer, seed=11)
    if keyed:
        dist.attach(ref, dist.SingleProcess())
    h_ref = ref.fit(x, y, epochs=1, batch_size=BATCH, rng=npdl.Generator("cpu", 5), verbose=0)
    ev, ev_ref = ours.evaluate(x, y, batch_size=4), ref.evaluate(x, y, batch_size=4)
    return {"case": f"{family}/{optimizer}", "steps": ours.optimizer.iterations,
            "params": relative_difference(params(ours), params(ref)), "loss": rel(h.loss[-1], h_ref.loss[-1]),
            "evaluate": max(rel(ev[k], ev_ref[k]) for k in ev_ref)}


def stateful_case(comm):
    """A stateful LSTM stepped by ``DataParallel.train_batch`` on global batches of 5 (shards 3/2):
    each rank's state holds its rows, and 3 steps equal one process's."""
    from npdl.layers import LSTM, Dense, TimeDistributed
    from npdl.optim import Adam

    def build(seed):
        g = npdl.Generator("cpu", seed)
        m = npdl.Sequential([LSTM(1, 4, return_sequences=True, stateful=True, dtype="float64", rng=g),
                             TimeDistributed(Dense(4, 1, dtype="float64", rng=g))])
        return m.compile("mse", Adam(lr=0.01), l2=1e-3)

    ours, ref = build(3 + comm.rank), build(3)
    parallel = dist.attach(ours, comm)
    rng = np.random.default_rng(1)
    for _ in range(3):
        xb, yb = rng.standard_normal((5, 4, 1)), rng.standard_normal((5, 4, 1))
        loss = parallel.train_step(xb, yb)
        loss_ref = ref.train_step(xb, yb)
    return {"case": "lstm-stateful/adam", "steps": ours.optimizer.iterations,
            "params": relative_difference(params(ours), params(ref)), "loss": rel(float(loss), float(loss_ref)),
            "evaluate": 0.0}


def main():
    comm = dist.init()
    results = [one_case(comm, f, o) for f in FAMILIES for o in OPTIMIZERS] + [stateful_case(comm)]
    if comm.rank == 0:
        for r in results:
            print(json.dumps(r), flush=True)
        print(json.dumps({"done": len(results), "ranks": comm.size}), flush=True)
    dist.finalize()


if __name__ == "__main__":
    main()
