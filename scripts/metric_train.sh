#!/usr/bin/env bash
# Train the two metric-learning checkpoints of chapter 4, one after the other, single-threaded.
# Resumable: rerun this script and each run continues from runs/<name>/state.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export MLKIT_DATA="${MLKIT_DATA:-$(cd .. && pwd)/shared/data}"
PY=.venv/bin/python
$PY -m mlkit train protonet-omniglot --resume
$PY -m mlkit train siamese-omniglot --resume
# train writes only under runs/: put the finished runs into checkpoints/
$PY -m mlkit train protonet-omniglot --promote
$PY -m mlkit train siamese-omniglot --promote
