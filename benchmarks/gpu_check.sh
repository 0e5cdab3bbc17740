#!/usr/bin/env bash
# Every GPU check of the GPU issues in one call, time-boxed to fit a lent GPU machine's budget.
#
#   mkdir -p data && cp -r ../shared/data/mnist data/      # /data/ is git-ignored
#   run(command="bash benchmarks/gpu_check.sh", carry=["data"], timeout_s=600)
#
# Writes under $OUT (default ./gpu-check): info.txt (nvidia-smi, npdl info), pytest-gpu.txt
# (the tests marked gpu), pytest-cuda-kernels.txt (the numba.cuda kernels under the simulator and
# compiled to PTX with the machine's libNVVM),
# gradcheck-cupy.txt, train-*.json/.txt (short --device gpu runs of every issue-8 model),
# kernels-ab.txt (npdl's GPU steps with the numba.cuda kernels, with CuPy ElementwiseKernels for the
# elementwise ones, NPDL_KERNELS=cupy, and with CuPy operations only, NPDL_KERNELS=off: does a
# fused kernel's launch pay at small batches, and whose?), launch-overhead.txt
# (host microseconds per launch, kernel by kernel: benchmarks/launch_overhead.py),
# bench.csv/bench.txt (npdl CPU vs GPU vs PyTorch CUDA, with the CUDA-graph replay) and
# summary.txt (exit status and seconds of each step). Each step has its own timeout, so
# one that hangs costs its slot, not the rest; the limits add up to 575 s (under the 600 s of one call).
set -u
OUT=${OUT:-./gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
export NPDL_DATA_DIR=${NPDL_DATA_DIR:-$PWD/data/mnist}
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

step() {  # step NAME SECONDS COMMAND...: run with a timeout, log output and status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$SUMMARY"
}

step info 30 bash -c 'nvidia-smi; python -m npdl info'
step pytest-gpu 90 python -m pytest -q -m gpu tests/ -p no:cacheprovider
step pytest-cuda-kernels 25 python -m pytest -q tests/test_cuda_sim.py -p no:cacheprovider
step gradcheck-cupy 40 python -m npdl gradcheck --backend cupy --autodiff none
# MODEL:SECONDS:ARGS. The SdA smoke run is one epoch per phase at batch 20 (10,000 steps instead
# of 200,000 at batch 1): the published batch-1 reproduction belongs to a run of its own.
for spec in "logreg:30:" "mlp:30:--epochs 3" "da:35:--epochs 2" "sda:50:--epochs 1 --batch-size 20" \
            "lenet:30:--epochs 2" "keras-cnn:35:" "rnn-mnist:25:"; do
    model=${spec%%:*}
    rest=${spec#*:}
    limit=${rest%%:*}
    args=${rest#*:}
    # shellcheck disable=SC2086  # args is a word list on purpose
    step "train-$model" "$limit" python -m npdl train "$model" --device gpu --json --quiet $args
done
# numba.cuda launches cost more host time than CuPy's (numba-cuda#477), so at small batches a fused
# kernel may lose to the several CuPy launches it replaces: the same GPU steps with the numba.cuda
# kernels (auto), CuPy's ElementwiseKernels for the elementwise ones (cupy) and plain CuPy operations
# (reference); unbuffered, so a timeout keeps what was printed
step kernels-ab 40 bash -c 'set -o pipefail; for k in auto cupy off; do
    NPDL_KERNELS=$k python -u -m npdl bench --device gpu --workload sda_b1,mlp_b20,sda_b128,lenet_b500 \
        --min-seconds 0.1 --json | sed -u "s/^/$k /"; done'
# host time per launch: CuPy's operations against npdl's numba.cuda kernels, one by one
step launch-overhead 15 python -u benchmarks/launch_overhead.py
step bench 100 python benchmarks/run.py --workload sda_b1,sda_b128,lenet_b500,kcnn_b64,mlp_b20 \
    --device cpu,gpu --impls npdl,torch --graph --rounds 1 --min-seconds 0.3 --csv "$OUT/bench.csv" --no-plots
echo "done; see $SUMMARY"
