#!/usr/bin/env bash
# The test command: set up the environment on a fresh machine, run the default test suite (slow
# tests excluded), then the edge-device emulation check: a second, minimal venv with numpy<2 and
# tflite-runtime 2.14 (no TensorFlow) runs `kseg predict` and `kseg bench` on an INT8 model made
# here and must match LiteRT's masks.
#   bash tools/test.sh                 everything above
#   bash tools/test.sh -m slow         only the slow tests (arguments go to pytest; no edge check)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/tools/setup_env.sh"
cd "$repo"
bash tools/setup_browser.sh  # kseg serve: the serve extra and Debian chromium for the page test
if [ "$#" -gt 0 ]; then
  exec "$KSEG_PY" -m pytest "$@"
fi
KSEG_MAIN_PYTHON="$KSEG_PY" bash tools/vela_check.sh --self-test  # Arm Vela (own venv, also used by tests/bench/test_vela.py): every op on Ethos-U55-128/256
bash tools/setup_deploy_env.sh  # venvs: metadata writer (tflite-support), MediaPipe, edge
"$KSEG_PY" -m pytest
echo "[edge] device emulation: tflite-runtime 2.14 + numpy<2, no TensorFlow"
KSEG_MAIN_PYTHON="$KSEG_PY" bash tools/edge_env_check.sh --self-test
# tflite-runtime, MediaPipe (confidence mask; usgra: category mask), metadata reader, both bundles
bash tools/bundle_consumer_check.sh android_demo_assets/hc18
bash tools/bundle_consumer_check.sh android_demo_assets/usgra
