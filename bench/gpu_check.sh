#!/usr/bin/env bash
# The multivariate CUDA checks, for a machine with an NVIDIA GPU: run from the repository
# root after `pip install -e '.[test,gpu]'`. One script, a few minutes:
#   1. the CUDA tests (numpy and CUDA equal on the same permutations, MMD² equal to the
#      direct computation), which CI skips for want of a GPU;
#   2. the MMD and classifier benchmark on the GPU at 5k, 20k and 100k rows per side,
#      500 permutations, 30 features (docs/benchmarks.md), skipping the CPU baselines
#      that take minutes at those sizes.
# Results go to stdout and, as markdown, to bench/results/ (or $OUT when set).
set -euo pipefail
python3 - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
print("GPU:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
python3 -m pytest -q -p no:cacheprovider -rs \
    tests/unit/test_multivariate_mmd.py -k "cuda or torch"
dest="${OUT:-bench/results}"
mkdir -p "$dest"
# 5k: the GPU against numpy and torch on this machine's CPUs, classifier included
python3 -m bench.multivariate_bench --sizes 5000 --devices numpy,cpu,cuda \
    --skip baseline --output "$dest/multivariate-gpu-5k.md"
# 20k and 100k: the GPU alone (the CPU paths take minutes there)
python3 -m bench.multivariate_bench --sizes "${SIZES:-20000,100000}" --devices cuda \
    --skip baseline,classifier --output "$dest/multivariate-gpu.md"
