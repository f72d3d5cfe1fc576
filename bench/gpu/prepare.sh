#!/usr/bin/env bash
# Run HERE (with internet to PyPI) before the GPU call: fetches the few Python packages the
# test suite imports that the GPU machine's image lacks, as wheels for its Python (3.12),
# into .gpu-carry/wheels, and the MMAudio goldens into .gpu-carry/goldens (git-ignored);
# pass the folder to the device tool with carry=[".gpu-carry"].
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu-carry && mkdir -p .gpu-carry/wheels
python -m pip download -q -d .gpu-carry/wheels --no-deps --python-version 3.12 --implementation cp \
  --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  soundfile soxr librosa audioread pooch more-itertools decorator platformdirs cffi pycparser \
  bigvgan==2.4.1 open_clip_torch==3.3.0 ftfy wcwidth
python -m pip download -q -d .gpu-carry/wheels --no-deps openai-whisper==20250625
cp -r ../shared/goldens .gpu-carry/goldens  # the MMAudio parity goldens (13 MB)
# A fallback cp312 wheel with sm_90 kernels, installed there only if building there fails.
PY312=${PY312:-}
for c in python3.12 ~/.pyenv/versions/3.12*/bin/python3.12; do  # the first that runs (pyenv shims may not)
  [ -z "$PY312" ] && "$c" -c pass 2>/dev/null && PY312=$c
done
if [ -n "$PY312" ]; then
  "$PY312" -m pip wheel -q --no-deps -w .gpu-carry/dist . -C cmake.define.SONICORE_CUDA_ARCHITECTURES=90a \
    -C build-dir=/tmp/sonicore-cp312-build || echo "warning: no fallback wheel (python3.12 build failed)"
else
  echo "warning: no python3.12 here: no fallback wheel"
fi
du -sh .gpu-carry
