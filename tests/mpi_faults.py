"""Run under ``mpiexec -n 2``: a rank that fails ends the whole job, and its checkpoint resumes.

``python tests/mpi_faults.py MODE OUT [EPOCHS]`` trains the ``regressor`` recipe (no data files
needed) data-parallel for EPOCHS epochs (default 6) into the run folder OUT, and on rank 1:

* ``raise``: raises a RuntimeError in its 3rd epoch;
* ``kill``: kills itself (SIGKILL) in its 3rd epoch;
* ``exit``: leaves with status 0 in its 3rd epoch, as a rank that returns early would;
* ``none``: nothing (an uninterrupted run);
* ``resume``: nothing, and the run continues the one saved in OUT.

Rank 0 ends by printing one JSON line with the final parameters.
"""

import json
import os
import signal
import sys

import numpy as np

import npdl.distributed as dist
from npdl.recipes import get_recipe, train
from npdl.training import Callback


class FailOnRank1(Callback):
    def __init__(self, mode, epoch=2):
        super().__init__()
        self.mode, self.epoch = mode, epoch

    def on_epoch_begin(self, epoch, logs=None):
        if dist.world().rank != 1 or epoch != self.epoch:
            return
        if self.mode == "raise":
            raise RuntimeError("a deliberate failure on rank 1")
        if self.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.mode == "exit":
            os._exit(0)


def main():
    mode, out = sys.argv[1], sys.argv[2]
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    comm = dist.init()
    rng = np.random.default_rng(0)
    x = rng.random((40, 1)).astype(np.float32)
    data = {"train": (x, (0.5 * x + 2.0).astype(np.float32)), "test": (x[:8], (0.5 * x[:8] + 2.0).astype(np.float32))}
    result = train(get_recipe("regressor"), epochs=epochs, batch_size=8, data=data, out=out, verbose=0,
                   resume=mode == "resume", report=False, distributed=True, extra_callbacks=[FailOnRank1(mode)])
    if comm.rank == 0:
        print(json.dumps({"params": result.extra["params"], "epochs": result.epochs,
                          "resumed_from_epoch": result.resumed_from_epoch}), flush=True)
    dist.finalize()


if __name__ == "__main__":
    main()
