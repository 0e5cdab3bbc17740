#!/usr/bin/env bash
# Wheels of the Python packages npdl needs that a GPU machine without network may lack, into wheelhouse/
# (git-ignored), for benchmarks/gpu_check.sh to install from with `pip install --no-index --find-links
# wheelhouse` where an import fails:
#
#   bash benchmarks/gpu_wheels.sh                  # for Python 3.12, Linux x86_64
#   bash benchmarks/gpu_wheels.sh 3.11 numba==0.61.2 llvmlite==0.44.0
#
# The first argument is the GPU machine's Python version (default 3.12). The small pure-Python
# dependencies are always fetched, at the versions installed here when they are (the versions the
# tests passed with); binary packages (numpy, numba, llvmlite, ...) only when named, as NAME==VERSION,
# since a GPU machine's image usually has them and their wheels are large. No dependencies are
# resolved: name each package that is needed.
set -eu
PYVER=${1:-3.12}
[ $# -gt 0 ] && shift
DEST=${WHEELHOUSE:-wheelhouse}
PY=${PYTHON:-python}
mkdir -p "$DEST"
pins=$($PY - <<'PYEOF'
import importlib.metadata as md
out = []
for dist in ("array-api-compat", "array-api-strict", "tqdm", "threadpoolctl"):
    try:
        out.append(f"{dist}=={md.version(dist)}")
    except md.PackageNotFoundError:
        out.append(dist)
print(" ".join(out))
PYEOF
)
# shellcheck disable=SC2086  # pins is a word list on purpose
$PY -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$DEST" $pins "$@"
ls -l "$DEST"
du -sh "$DEST"
