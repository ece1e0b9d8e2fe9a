#!/usr/bin/env bash
# Regenerate reports/gpu/ on a CUDA machine (random weights at the real 7B shapes, no download).
# Usage: scripts/gpu-reports.sh [OUT_DIR] [PARTS]
#   OUT_DIR  default reports/gpu
#   PARTS    which parts to run, default "1 2 3" (together about 5 minutes on an H200):
#            1  every strategy at keep 0.1 / 0.2 / 0.3, 32 frames, LLaVA-OneVision-7B; HieraVid with the
#               other greedy-DPP paths (PRUNE_BENCH_DPP=triton, graph, eager); the GPU tests; the selection
#               micro-benchmarks; the Triton DPP kernel's tuning table
#            2  every strategy at keep 0.1 / 0.2 / 0.3, 64 frames
#            3  Qwen2-VL-7B at 32 frames, the main methods at keep 0.3
#            4  the strategies added in the eighth session (and cdpruner, evs, pool) at keep 0.1 / 0.2 /
#               0.3, 32 and 64 frames; decode as CUDA graphs against the eager loop (32 decoded tokens)
#            5  Qwen3-VL-8B, Qwen2.5-VL-7B and InternVL3-8B at 32 frames, every strategy at keep 0.3
#            6  every strategy at keep 0.3, 32 frames, LLaVA-OneVision-7B, on the two named speed inputs:
#               the rendered 8-scene clip (tokens centred) and noise (the single-segment worst case),
#               with the segments each method formed; the speed input's GPU test
# Env: REPEATS (default 3), TAR=FILE to pack OUT_DIR into one archive after each part (for machines
# that return few files). Every table and figure names the GPU, dtype, attention backend and versions.
set -uo pipefail
OUT="${1:-reports/gpu}"
PARTS="${2:-1 2 3}"
mkdir -p "$OUT"
PB="python -m prune_bench"
ALL="none random uniform hieravid fastv visionzip dycoke pdrop framefusion divprune fastvid vispruner prunevid holitom"
NEW="none random vidcom2 dart flashvid cdpruner evs pool"
EVERY="$ALL vidcom2 dart flashvid cdpruner evs pool"
COMMON=(--repeats "${REPEATS:-3}" --warmup 1 --decode-tokens 8)

for part in $PARTS; do
  case "$part" in
    1)
      $PB speed $ALL "hieravid[first_stage_selector=relevance_spread]" --arch llava-onevision-7b --frames 32 \
        --keep 0.1 --keep 0.2 --keep 0.3 "${COMMON[@]}" --out "$OUT/32f"
      for path in triton graph eager; do
        PRUNE_BENCH_DPP=$path $PB speed hieravid --arch llava-onevision-7b --frames 32 --keep 0.1 --keep 0.3 \
          "${COMMON[@]}" --out "$OUT/32f-dpp-$path"
      done
      timeout 180 python -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tail -5 | tee "$OUT/gpu-tests.txt"
      timeout 180 python -m pytest -q -p no:cacheprovider benchmarks --benchmark-only --benchmark-enable \
        --benchmark-columns=median,iqr,rounds --benchmark-sort=name 2>&1 \
        | grep -E "test_selection|test_hieravid_selection|test_greedy_dpp|test_gram|Name|passed|failed" | tee "$OUT/selection-benchmarks.txt"
      timeout 120 python scripts/tune-dpp-triton.py > "$OUT/tune-dpp-triton.jsonl"
      ;;
    2)
      $PB speed $ALL --arch llava-onevision-7b --frames 64 --keep 0.1 --keep 0.2 --keep 0.3 "${COMMON[@]}" \
        --out "$OUT/64f"
      ;;
    3)
      $PB speed none random hieravid fastv visionzip dycoke framefusion --arch qwen2-vl-7b --frames 32 \
        --keep 0.3 "${COMMON[@]}" --out "$OUT/qwen2-vl-32f"
      ;;
    4)
      for frames in 32 64; do
        $PB speed $NEW --arch llava-onevision-7b --frames $frames --keep 0.1 --keep 0.2 --keep 0.3 \
          "${COMMON[@]}" --out "$OUT/new-${frames}f"
      done
      for path in graph eager; do
        PRUNE_BENCH_DECODE=$path $PB speed none random dycoke fastv --arch llava-onevision-7b --frames 32 \
          --keep 0.3 --repeats "${REPEATS:-3}" --warmup 1 --decode-tokens 32 --out "$OUT/32f-decode-$path"
      done
      ;;
    5)
      for arch in qwen3-vl-8b qwen2.5-vl-7b internvl3-8b; do
        $PB speed $EVERY --arch $arch --frames 32 --keep 0.3 "${COMMON[@]}" --out "$OUT/$arch-32f"
      done
      ;;
    6)
      for input in scenes noise; do
        $PB speed $EVERY --arch llava-onevision-7b --frames 32 --keep 0.3 --input $input "${COMMON[@]}" \
          --out "$OUT/32f-input-$input"
      done
      timeout 300 python -m pytest -q -p no:cacheprovider -m gpu tests/runner/test_speed_input.py 2>&1 \
        | tail -5 | tee "$OUT/speed-input-gpu-test.txt"
      ;;
    *) echo "unknown part '$part' (parts: 1 2 3 4 5 6)" >&2; exit 2 ;;
  esac
  if [ -n "${TAR:-}" ]; then  # after every part, so a call cut short still returns the parts it finished
    tar -C "$OUT" -czf "$TAR.tmp" --exclude "$(basename "$TAR")*" . && mv "$TAR.tmp" "$TAR"
  fi
done
