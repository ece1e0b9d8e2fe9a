#!/usr/bin/env bash
# Regenerate reports/gpu/ on a CUDA machine (random weights at the real 7B shape, no download).
# Usage: scripts/gpu-reports.sh [OUT_DIR]   (default reports/gpu)
# Every figure names the GPU, dtype, attention backend and package versions it came from.
set -uo pipefail
OUT="${1:-reports/gpu}"
mkdir -p "$OUT"
PB="python -m prune_bench"
FRAME_ARGS="${FRAME_ARGS:---frames 32 --frames 64}"

# CPU and CUDA paths agree; every strategy's selection step, timed without the model.
python -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tail -5 | tee "$OUT/gpu-tests.txt"
python -m pytest -q -p no:cacheprovider benchmarks --benchmark-only --benchmark-enable \
  --benchmark-columns=median,iqr,rounds --benchmark-sort=name 2>&1 | grep -E "test_selection|Name|passed|failed" \
  | tee "$OUT/selection-benchmarks.txt"

# Prefill / TTFT / decode / memory / overhead of every strategy at 10/20/30% on LLaVA-OneVision-7B.
$PB speed none random uniform hieravid fastv visionzip dycoke pdrop divprune framefusion "hieravid[first_stage_selector=relevance_spread]" \
  --arch "${ARCH:-llava-onevision-7b}" $FRAME_ARGS --keep 0.1 --keep 0.2 --keep 0.3 \
  --repeats "${REPEATS:-3}" --warmup 1 --decode-tokens 16 --out "$OUT"
