#!/usr/bin/env bash
# Install gancheck with everything its tests use, then run them. torch==2.13.0 is the local CPU
# build (an unpinned torch would pull gigabytes of CUDA packages).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test,faces,torch,ray]"
python -m pip install -q --no-deps gan-face-generate
python -m pytest -q tests
