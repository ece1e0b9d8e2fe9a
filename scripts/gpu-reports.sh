#!/usr/bin/env bash
# Regenerate reports/gpu/ on a CUDA machine (random weights at the real 7B shape, no download).
# Usage: scripts/gpu-reports.sh [OUT_DIR]   (default reports/gpu)
# Every figure names the GPU, dtype, attention backend and package versions it came from.
set -uo pipefail
OUT="${1:-reports/gpu}"
ARCH="${ARCH:-llava-onevision-7b}"
mkdir -p "$OUT"
PB="python -m prune_bench"
ALL="none random uniform hieravid fastv visionzip dycoke pdrop framefusion divprune fastvid vispruner prunevid holitom"

# 1. Every strategy at 10/20/30% on 32 frames: prefill, TTFT, decode, memory, overhead, speed-up vs FLOPs.
$PB speed $ALL "hieravid[first_stage_selector=relevance_spread]" --arch "$ARCH" --frames 32 \
  --keep 0.1 --keep 0.2 --keep 0.3 --repeats "${REPEATS:-3}" --warmup 1 --decode-tokens 8 --out "$OUT/32f"
# 2. The main methods at 30% on 64 frames.
$PB speed none random hieravid fastv visionzip dycoke --arch "$ARCH" --frames 64 --keep 0.3 \
  --repeats "${REPEATS:-3}" --warmup 1 --decode-tokens 8 --out "$OUT/64f"
# 3. CPU and CUDA paths agree; every strategy's selection step timed without the model.
timeout 120 python -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tail -5 | tee "$OUT/gpu-tests.txt"
timeout 120 python -m pytest -q -p no:cacheprovider benchmarks --benchmark-only --benchmark-enable \
  --benchmark-columns=median,iqr,rounds --benchmark-sort=name 2>&1 | grep -E "test_selection|Name|passed|failed" \
  | tee "$OUT/selection-benchmarks.txt"
