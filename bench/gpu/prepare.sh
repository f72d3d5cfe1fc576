#!/usr/bin/env bash
# Run HERE (with internet to PyPI) before the GPU call: fetches the few Python packages the
# test suite imports that the GPU machine's image lacks, as wheels for its Python (3.12),
# into .gpu-carry/wheels, and the MMAudio goldens into .gpu-carry/goldens (git-ignored);
# pass the folder to the device tool with carry=[".gpu-carry"].
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu-carry && mkdir -p .gpu-carry/wheels
python -m pip download -q -d .gpu-carry/wheels --no-deps --python-version 3.12 --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
  soundfile soxr librosa audioread pooch more-itertools
python -m pip download -q -d .gpu-carry/wheels --no-deps openai-whisper==20250625
cp -r ../shared/goldens .gpu-carry/goldens  # the MMAudio parity goldens (13 MB)
du -sh .gpu-carry
