#!/usr/bin/env bash
# The GPU path in one command of about 8 minutes, on a machine with an NVIDIA GPU:
#   1. the card (nvidia-smi);
#   2. training speed, float32 against mixed precision and XLA off and on, for the space's
#      default model and VGG-13, autocnn's pipeline against a bare model.fit (gpu_check.py);
#   3. a 5-minute auto search on Fashion-MNIST (fashion_mnist.py --budget 5m --only autocnn),
#      with the card's memory sampled every 5 s: growth as needed keeps it well under the total.
# Tables go to OUTPUT (default benchmarks/results): gpu_check.md, gpu/fashion_mnist.md.
#
#   bash benchmarks/gpu_check.sh [OUTPUT]
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh /tmp/gpu
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=${1:-benchmarks/results}
mkdir -p "$out/gpu"

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
else
  echo "nvidia-smi not found: no NVIDIA GPU here, the figures will be the CPU's"
fi

timeout 170 "$python" benchmarks/gpu_check.py --output "$out" \
  || echo "gpu_check.py stopped after 170 s: $out/gpu_check.md has the cells it measured"

sample_memory() {
  while sleep 5; do
    nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader,nounits 2>/dev/null \
      | head -1 >> "$out/gpu/memory.csv" || true
  done
}
: > "$out/gpu/memory.csv"
sample_memory &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
timeout 330 "$python" benchmarks/fashion_mnist.py --budget 5m --only autocnn --output "$out/gpu"
if [ -s "$out/gpu/memory.csv" ]; then
  sort -t, -k1 -n "$out/gpu/memory.csv" | tail -1 \
    | awk -F', *' '{printf "GPU memory during the search: at most %d of %d MiB (%.0f%%)\n", $1, $2, 100 * $1 / $2}' \
    | tee -a "$out/gpu_check.md"
fi
