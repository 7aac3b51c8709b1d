#!/usr/bin/env bash
# The main job: set up the environment, train a U-Net on the embedded synthetic ultrasound data,
# convert it to float32 and full-integer INT8 TFLite (parity-checked with LiteRT), and print
# float Dice, INT8 Dice and the .tflite sizes. About 10 minutes on 2 CPU cores.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/tools/setup_env.sh"
cd "$repo"
run="${1:-runs/demo-$(date +%Y%m%d-%H%M%S)}"
kseg train --config configs/demo.yaml --out "$run"
kseg convert --model "$run/best.keras" --float32 --max-dice-drop 0.05
kseg convert --model "$run/best.keras" --int8
"$KSEG_PY" tools/summarize_run.py "$run"
