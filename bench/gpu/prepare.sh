#!/usr/bin/env bash
# Run HERE (with internet to PyPI) before the GPU call: fetches the few Python packages the
# test suite imports that the GPU machine's image lacks, as wheels for its Python (3.12),
# into .gpu-wheels/ (git-ignored). Pass it to the device tool with carry=[".gpu-wheels"].
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu-wheels && mkdir -p .gpu-wheels
python -m pip download -q -d .gpu-wheels --no-deps --python-version 3.12 --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
  soundfile soxr librosa audioread pooch more-itertools
python -m pip download -q -d .gpu-wheels --no-deps openai-whisper==20250625
du -sh .gpu-wheels
