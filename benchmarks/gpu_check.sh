#!/usr/bin/env bash
# Every GPU check of npdl in one call of at most 6 minutes, the most important first, on a machine
# with an NVIDIA GPU and no network:
#
#   bash benchmarks/gpu_wheels.sh 3.12          # beforehand, with network: wheels of what may be missing
#   mkdir -p data && cp -r /path/to/mnist data/ # the MNIST files for the training runs (data/ is git-ignored)
#   OUT=/some/dir bash benchmarks/gpu_check.sh  # on the GPU machine, in the repository's root
#
# Steps, in this order, each under its own timeout and all under one deadline (BUDGET seconds, 355 by
# default), so a step that hangs costs its slot and a run cut short keeps every earlier result:
#   0. the Python packages npdl needs, installed from wheelhouse/ (--no-index) when one is missing;
#   1. nvidia-smi and `npdl info`                                       -> info.txt
#   2. the tests marked gpu, the CuPy backend's first, then the numba.cuda kernels -> tests.txt
#   3. `npdl gradcheck --backend cupy`                                  -> tests.txt
#   4. the benchmark suite on the CPU and the GPU against PyTorch CUDA: a batch-size sweep, the
#      GPU/CPU crossover, the ceilings and the roofline columns         -> bench.txt, bench.csv, peak.txt
#   5. the kernel A/B (numba.cuda, CuPy ElementwiseKernels, plain CuPy) and the host time per launch
#                                                                       -> kernels.txt
#   6. short --device gpu training runs of logreg, da, lenet and keras-cnn -> train.txt
#   7. `npdl bench --peak --device gpu`                                 -> peak.txt
# summary.txt has each step's exit status and seconds. Every file starts with the GPU's name. Eight
# files in all, appended to as the steps run (bench.csv row by row).
set -u
OUT=${OUT:-${1:-./gpu-check}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export NPDL_DATA_DIR=${NPDL_DATA_DIR:-$PWD/data/mnist}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEADLINE=$((SECONDS + ${BUDGET:-355}))
SCRATCH=$(mktemp -d)
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
GPU=${GPU:-no GPU found by nvidia-smi}
for f in summary info tests bench kernels train peak; do
    echo "# GPU: $GPU; $(date -u +%Y-%m-%dT%H:%M:%SZ); $(git rev-parse --short HEAD 2>/dev/null || echo no-git)" \
        > "$OUT/$f.txt"
done

step() {  # step FILE NAME SECONDS COMMAND...: append the output to FILE.txt, under the step's and the run's limit
    local file=$1 name=$2 limit=$3
    shift 3
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 5 ]; then
        echo "$name skipped: the ${BUDGET:-355} s budget is spent" | tee -a "$OUT/summary.txt"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local start=$SECONDS
    echo "=== $name (limit ${limit} s)" >> "$OUT/$file.txt"
    timeout -k 5 "$limit" "$@" >> "$OUT/$file.txt" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - start))$([ $rc -eq 124 ] && echo ' (timed out)')" | tee -a "$OUT/summary.txt"
}

# 0. what npdl needs, from the wheels brought along, only where an import fails
missing=$($PY - <<'EOF'
import importlib
need = {"array_api_compat": "array-api-compat", "array_api_strict": "array-api-strict", "tqdm": "tqdm",
        "threadpoolctl": "threadpoolctl", "numba": "numba", "hypothesis": "hypothesis", "pytest": "pytest"}
out = []
for module, dist in need.items():
    try:
        importlib.import_module(module)
    except ImportError:
        out.append(dist)
print(" ".join(out))
EOF
)
if [ -n "$missing" ]; then
    SITE=$SCRATCH/site
    # shellcheck disable=SC2086  # a word list on purpose
    step summary "install $missing" 30 $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
        --find-links wheelhouse $missing
    export PYTHONPATH=$PYTHONPATH:$SITE
fi

# 1. the machine
step info info 20 bash -c "nvidia-smi; $PY -m npdl info"
# 2. the gpu tests: the CuPy backend first, then the rest, then the numba.cuda kernels (simulator and PTX)
step tests pytest-gpu-cupy 50 $PY -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_backend.py
# (279 tests, each numba.cuda kernel compiled on first use: over 4 processes where pytest-xdist is installed)
XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 4")
# shellcheck disable=SC2086  # XDIST is empty or two words on purpose
step tests pytest-gpu-rest 90 $PY -m pytest -q -m gpu -p no:cacheprovider $XDIST tests/ \
    --ignore=tests/test_gpu.py --ignore=tests/test_backend.py
step tests pytest-cuda-kernels 20 $PY -m pytest -q -p no:cacheprovider tests/test_cuda_sim.py
# 3. gradients on the GPU against the definitions
step tests gradcheck-cupy 25 $PY -m npdl gradcheck --backend cupy --autodiff none
# 4. npdl CPU vs GPU vs PyTorch CUDA over batch sizes (the crossover), with the ceilings and the roofline
step bench bench 150 $PY benchmarks/run.py --workload mlp,lenet --batch-sizes 1,32,1024 --device cpu,gpu \
    --impls npdl,torch --rounds 1 --min-seconds 0.1 --csv "$SCRATCH/bench.csv" --no-plots
cp "$SCRATCH/bench.csv" "$OUT/bench.csv" 2>/dev/null
for f in "$SCRATCH"/bench-peak-*.json; do [ -f "$f" ] && { echo "=== $(basename "$f")"; cat "$f"; } >> "$OUT/peak.txt"; done
# 5. does a fused kernel's launch pay at small batches, and whose? (numba.cuda launches cost more host time
#    than CuPy's); then the host time per launch, kernel by kernel
step kernels kernels-ab 30 bash -c "set -o pipefail; for k in auto cuda off; do
    NPDL_KERNELS=\$k $PY -m npdl bench --device gpu --workload sda_b1,mlp_b20,sda_b128,lenet_b500 \
        --min-seconds 0.05 --no-peak --json | sed -u \"s/^/\$k /\"; done"
step kernels launch-overhead 12 $PY benchmarks/launch_overhead.py --calls 300
# 6. short training runs on the GPU (MODEL:SECONDS:ARGS)
for spec in "logreg:15:--epochs 2" "da:15:--epochs 1 --subset 20000" "lenet:20:--epochs 1 --subset 10000" \
            "keras-cnn:20:--subset 10000"; do
    model=${spec%%:*}
    rest=${spec#*:}
    limit=${rest%%:*}
    args=${rest#*:}
    # shellcheck disable=SC2086  # args is a word list on purpose
    step train "train-$model" "$limit" $PY -m npdl train "$model" --device gpu --json --quiet $args
done
# 7. the GPU's ceilings on their own (TF32 off)
step peak peak-gpu 20 $PY -m npdl bench --peak --device gpu --json --min-seconds 0.5
rm -rf "$SCRATCH"
echo "done in $SECONDS s; see $OUT/summary.txt" | tee -a "$OUT/summary.txt"
