#!/usr/bin/env bash
# The main job, on the embedded synthetic B-mode ultrasound set (no data to download):
#   1. kseg data synth: 400 images with lesions, speckle and shadowing, into the run's data folder;
#   2. kseg train --budget: plan a U-Net for this machine's speed and train it within the budget;
#   3. kseg convert --int8: full-integer INT8 .tflite, checked against the float model on the
#      validation images it never trained on (the parity gate);
#   4. kseg bench: the INT8 file's latency with LiteRT on one thread;
#   5. kseg evaluate: the INT8 file on the validation split, with contours.png (true and predicted
#      outlines);
# then prints a summary (tools/summarize_run.py). The first run also sets up .venv/.
# Usage: bash tools/demo.sh [RUN_DIR]     Env: KSEG_DEMO_BUDGET minutes (default 12)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/tools/setup_env.sh"
cd "$repo"
run="${1:-runs/demo-$(date +%Y%m%d-%H%M%S)}"
budget="${KSEG_DEMO_BUDGET:-12}"
data="runs/demo-data/ultrasound400"
if [[ ! -d "$data/images" ]]; then
  kseg data synth --kind ultrasound --n 400 --size 128 --seed 0 --out "$data"
fi
kseg train --data "$data" --budget "$budget" --out "$run"
kseg convert --model "$run/best.keras" --int8
kseg bench "$run/best.int8.tflite" --threads 1 --json "$run/bench.int8.json"
kseg evaluate --model "$run/best.int8.tflite" --data "$data" --split val --out "$run/eval-int8"
"$KSEG_PY" tools/summarize_run.py "$run"
