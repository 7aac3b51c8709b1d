#!/usr/bin/env bash
# Proof by consumers kseg did not write: a bundle made by `kseg export android` (default: the
# committed android_demo_assets/hc18/) must be reproduced by
#   1. tflite-runtime 2.14 + numpy<2 (no TensorFlow): output tensors of the golden inputs vs
#      golden/NAME.output.npy, masks vs golden/NAME.mask.png;
#   2. MediaPipe Tasks ImageSegmenter (mediapipe 1.2.3): built from model.tflite and its metadata
#      alone; its masks vs golden/NAME.mask.png;
#   3. tflite-support's MetadataDisplayer: the embedded metadata and labels.txt.
# Each runs in its own venv from tools/setup_deploy_env.sh (created once, reused).
# Usage: tools/bundle_consumer_check.sh [BUNDLE_DIR]
# Env:   KSEG_BUNDLE_MIN_AGREEMENT pixel agreement required on every sample (default 0.999)
#        KSEG_EDGE_VENV, KSEG_MEDIAPIPE_VENV, KSEG_METADATA_VENV: see tools/setup_deploy_env.sh
# Exit:  0 all agree; 1 a consumer disagrees; 2 bad arguments.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE=$(realpath -m "${1:-$REPO/android_demo_assets/hc18}")
MIN=${KSEG_BUNDLE_MIN_AGREEMENT:-0.999}
[[ -f "$BUNDLE/model.tflite" && -d "$BUNDLE/golden" ]] || {
  echo "error: $BUNDLE: not a kseg bundle (model.tflite, golden/); make one with kseg export android" >&2
  exit 2
}
bash "$REPO/tools/setup_deploy_env.sh" edge mediapipe metadata
declare -A VENV=(
  [tflite_runtime]=${KSEG_EDGE_VENV:-/tmp/kseg-edge-venv}
  [mediapipe]=${KSEG_MEDIAPIPE_VENV:-/tmp/kseg-mediapipe-venv}
  [metadata]=${KSEG_METADATA_VENV:-/tmp/kseg-metadata-venv}
)
status=0
for consumer in tflite_runtime mediapipe metadata; do
  # MediaPipe and TFLite log to stderr; keep it for a failure only
  if out=$(cd /tmp && "${VENV[$consumer]}/bin/python" "$REPO/tools/bundle_consumer.py" "$consumer" \
      "$BUNDLE" --min-agreement "$MIN" 2>/tmp/kseg-bundle-$consumer.log); then
    echo "[bundle] $consumer ok: $out"
  else
    echo "[bundle] $consumer FAILED: ${out:-see /tmp/kseg-bundle-$consumer.log}" >&2
    tail -5 "/tmp/kseg-bundle-$consumer.log" >&2
    status=1
  fi
done
exit $status
