#!/usr/bin/env bash
# Regenerate reports/synthetic/ (tables and figures) on the shipped default model with one command:
# sweep + ablate into one resumable results store, then table + plot + the significance report. CPU is fine: about 35 minutes
# on 2 cores. Re-run to continue a killed run; finished items are never recomputed.
#
# Usage: scripts/synthetic-reports.sh [OUT_DIR] [EXTRA_OPTIONS...]
#   OUT_DIR        default reports/synthetic
#   EXTRA_OPTIONS  passed to every sweep/ablate, e.g. a quick check: scripts/synthetic-reports.sh /tmp/s --limit 6
set -euo pipefail
OUT="${1:-reports/synthetic}"
shift $(($# > 0 ? 1 : 0))
RUN="$OUT/results"
PB="python -m prune_bench"
COMMON=(--out "$RUN" --no-progress "$@")
KEEPS=(--keep 0.1 0.2 0.3)

# Sanity baselines, with 50% too: is the benchmark discriminative?
$PB sweep random uniform --keep 0.1 0.2 0.3 0.5 "${COMMON[@]}"
# HieraVid and every baseline beside it.
$PB sweep hieravid fastv visionzip dycoke pdrop framefusion divprune fastvid vispruner prunevid holitom \
  vidcom2 dart flashvid cdpruner evs pool "${KEEPS[@]}" "${COMMON[@]}"
# Every ablation switch HieraVid declares (prune-bench list --options hieravid), and those of the
# baselines that declare some (e.g. original positions instead of LLaVA's reindexing splice).
$PB ablate hieravid visionzip vispruner divprune holitom prunevid "${KEEPS[@]}" "${COMMON[@]}"

$PB table "$RUN" --format markdown -o "$OUT/accuracy.md"
$PB table "$RUN" --format csv -o "$OUT/accuracy.csv"
$PB table "$RUN" --format latex -o "$OUT/accuracy.tex"
$PB plot "$RUN" --out "$OUT"
python scripts/significance-report.py "$RUN" -o "$OUT/significance.md"
