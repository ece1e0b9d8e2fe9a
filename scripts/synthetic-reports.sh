#!/usr/bin/env bash
# Regenerate reports/synthetic/ on the shipped default model (CPU is fine: about 15 minutes on 2 cores).
# Usage: scripts/synthetic-reports.sh [OUT_DIR]   (default reports/synthetic). Resumable: re-run to continue.
set -euo pipefail
OUT="${1:-reports/synthetic}"
RUN="$OUT/results"
PB="python -m prune_bench"
COMMON=(--out "$RUN" --no-progress)

# Sanity baselines: is the benchmark discriminative?
$PB compare random uniform --keep 0.1 --keep 0.2 --keep 0.3 --keep 0.5 "${COMMON[@]}"
# HieraVid and every ablation switch.
$PB compare hieravid "hieravid[segment_level=false]" "hieravid[frame_level=false]" "hieravid[layer_level=false]" \
  "hieravid[relevance_sign=positive]" "hieravid[first_stage_selector=relevance_spread]" \
  "hieravid[dynamic_budget=false]" "hieravid[authors_preset=true]" --keep 0.1 --keep 0.2 --keep 0.3 "${COMMON[@]}"
# Every baseline beside it.
$PB compare fastv visionzip dycoke pdrop framefusion divprune fastvid vispruner prunevid holitom \
  --keep 0.1 --keep 0.2 --keep 0.3 "${COMMON[@]}"

$PB report "$RUN" --format md -o "$OUT/accuracy.md" --plots "$OUT"
$PB report "$RUN" --format csv -o "$OUT/accuracy.csv"
$PB report "$RUN" --format latex -o "$OUT/accuracy.tex"
