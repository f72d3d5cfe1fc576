#!/usr/bin/env bash
# The GPU proof: one call on an H100/H200 machine (no internet there) that builds sonicore
# with CUDA for sm_90, runs every GPU test, runs the GPU benchmarks next to their peers,
# and leaves a markdown table + raw numbers in OUT_DIR.
#
#   bench/gpu/run.sh OUT_DIR            # on the GPU machine (about 6-9 minutes)
#   bench/gpu/run.sh OUT_DIR --dry-run  # anywhere: checks imports, prints the plan (CI runs this)
#
# Exit status: non-zero when the build or any GPU test fails.
set -uo pipefail
OUT=${1:?usage: bench/gpu/run.sh OUT_DIR [--dry-run]}
MODE=${2:-run}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
mkdir -p "$OUT"
PY=${PYTHON:-python3}
cd "$ROOT"

if [ "$MODE" = "--dry-run" ]; then
  exec "$PY" "$HERE/plan.py" --dry-run --out "$OUT"
fi

status=0
t0=$(date +%s)
{ nvidia-smi; nvcc --version; "$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } \
  > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt" | head -20

# 0. Packages the tests import that the image lacks, carried as wheels (bench/gpu/prepare.sh).
export SONICORE_GOLDENS="$ROOT/.gpu-carry/goldens"
if [ -d .gpu-carry/wheels ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation .gpu-carry/wheels/* > "$OUT/wheels.log" 2>&1 \
    || { echo "warning: some carried wheels did not install"; tail -5 "$OUT/wheels.log"; }
fi

# 1. Build for Hopper only (fast) with the compiler's resource report (-Xptxas=-v is on).
#    --no-build-isolation: the machine has scikit-build-core and pybind11 but no index.
export PATH="$PATH:/usr/local/cuda/bin"
if ! "$PY" -m pip install --no-build-isolation --no-deps -v . \
     -C cmake.define.SONICORE_CUDA_ARCHITECTURES=90 -C build-dir=/tmp/sonicore-gpu-build > "$OUT/build.log" 2>&1; then
  echo "BUILD FAILED"; tail -60 "$OUT/build.log"; exit 1
fi
grep -E "ptxas info|bytes stack frame|spill" "$OUT/build.log" > "$OUT/ptxas.txt" || true
echo "build: $(( $(date +%s) - t0 )) s, $(grep -c 'Used' "$OUT/ptxas.txt") kernels reported; spills:"
grep -E "[1-9][0-9]* bytes spill" "$OUT/ptxas.txt" | head -5 || echo "  none"
cd /tmp  # import the installed package, not the source tree

# 2. Every GPU test (CUDA + Triton on the real device), fresh random inputs, poisoned outputs.
"$PY" -m pytest -q -p no:cacheprovider -m "gpu or triton" "$ROOT/tests" \
    -rs > "$OUT/gpu_tests.txt" 2>&1; rc=$?
tail -25 "$OUT/gpu_tests.txt"
[ "$rc" -eq 0 ] || status=1

# 3. GPU benchmarks next to their peers in the same process.
"$PY" -m pytest -q -p no:cacheprovider "$ROOT/bench" -m gpu --benchmark-json="$OUT/bench.json" \
    --benchmark-min-rounds=5 --benchmark-max-time=0.5 -s > "$OUT/bench.txt" 2>&1 || status=1
tail -40 "$OUT/bench.txt"
"$PY" "$HERE/plan.py" --report "$OUT/bench.json" --out "$OUT" || status=1
cat "$OUT/RESULTS_gpu.md" 2>/dev/null
echo "total: $(( $(date +%s) - t0 )) s, status $status"
exit $status
