#!/usr/bin/env bash
# The CUDA path in one command, for a machine with a GPU: the CUDA tests, then every benchmark with --device cuda.
# Run from the repository root: bash benchmarks/gpu_check.sh [OUT_DIR]   (default: $OUT, else gpu_check_out)
# Each step's output goes to OUT_DIR/<step>.txt and to the terminal; a failing step is reported and the rest
# still run (a GPU machine may lack the peers, pytorch-optimizer or loss-landscapes: their columns are then left
# out by the benchmarks themselves). Exit status: the number of failed steps.
set -u -o pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_check_out}}"
mkdir -p "$out"
python - <<'PY' | tee "$out/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0))
PY
failed=0
step() {  # step NAME COMMAND...: run, keep the output, count a failure
    local name="$1"; shift
    echo "== $name: $*" | tee "$out/$name.txt"
    if ! "$@" 2>&1 | tee -a "$out/$name.txt"; then failed=$((failed + 1)); echo "== $name FAILED" | tee -a "$out/$name.txt"; fi
}
if python -c "import pytest" 2>/dev/null; then
    step cuda_tests python -m pytest -q -p no:cacheprovider tests/test_cuda.py
else
    step cuda_tests python tests/test_cuda.py
fi
step bench_optim python benchmarks/bench_optim.py --device cuda
step bench_sweep python benchmarks/bench_sweep.py --device cuda
step bench_landscape python benchmarks/bench_landscape.py --device cuda
step bench_hessian python benchmarks/bench_hessian.py --device cuda
echo "failed steps: $failed (outputs in $out)"
exit "$failed"
