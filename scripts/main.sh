#!/usr/bin/env bash
# The main job on a fresh machine: install gancheck with the dlib face embedder, export the real
# DCGAN face generator shipped in PyPI gan-face-generate to ONNX, and audit it (a few minutes on
# 2 CPU cores: dlib's descriptor runs as an ONNX graph built from its own .dat file, so |C| = 1e4
# takes about what |C| = 3000 took with dlib's own code). torch==2.13.0 is the CPU build, needed
# only for the export.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[faces,torch]"
python -m pip install -q --no-deps gan-face-generate==1.1.1
python examples/dcgan_digiface/export_onnx.py
gancheck audit examples/dcgan_digiface/dcgan_digiface.onnx --embedder dlib --align fixed \
    --n 10000 --anchors 1000 --seed 0 --out runs/dcgan_digiface --overwrite "$@"
