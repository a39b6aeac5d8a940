#!/usr/bin/env bash
# One prepared GPU check (for a session that is lent a CUDA device): the ResNet-34 fit
# throughput test and the benchmark on CUDA (data path, full step vs the authors'-style
# loop, SD/BS cost, ResNet-34 share of dense bf16 peak). Results go to ${OUT:-results}/
# gpu_check/ and, as one archive, to ${OUT:-results}/gpu_check.tar.gz (the device tool
# returns at most 8 files, 2 folders down).
#   bash ci/gpu_check.sh     # needs torch with CUDA, numpy, pytest; runs from src/ (no install)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
root="${OUT:-results}"
out="$root/gpu_check"
mkdir -p "$out"
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
"$py" -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])" \
    | tee "$out/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$out/versions.txt"
status=0
timeout 240 "$py" -m pytest -q -s -p no:cacheprovider tests/gpu 2>&1 | tee "$out/pytest_gpu.log" \
    || status=1
timeout 300 "$py" -m selfdistill.bench --out "$out/bench" --rounds 3 --steps 50 2>&1 \
    | tee "$out/bench.log" || status=1
cp "$out/bench/summary.md" "$out/summary.md" 2>/dev/null || true
tar -czf "$root/gpu_check.tar.gz" -C "$root" gpu_check
exit "$status"
