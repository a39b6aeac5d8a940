#!/usr/bin/env bash
# One prepared GPU check (for a session that is lent a CUDA device): the ResNet-34 fit
# throughput test and the benchmark on CUDA (data path, full step vs the authors'-style
# loop, SD/BS cost, ResNet-34 share of dense bf16 peak). Results go to ${OUT:-results}/.
#   bash ci/gpu_check.sh            # needs torch with CUDA and `pip install -e .[test]`
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results}/gpu_check"
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"
timeout 240 python -m pytest -q -s tests/gpu 2>&1 | tee "$out/pytest_gpu.log"
timeout 300 python -m selfdistill.bench --out "$out/bench" --rounds 3 --steps 50 2>&1 \
    | tee "$out/bench.log"
