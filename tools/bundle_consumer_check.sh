#!/usr/bin/env bash
# Proof by consumers kseg did not write: a bundle made by `kseg export android` (default: the
# committed android_demo_assets/hc18/) must be reproduced by
#   1. tflite-runtime 2.14 + numpy<2 (no TensorFlow): output tensors of the golden inputs vs
#      golden/NAME.output.npy, masks vs golden/NAME.mask.png;
#   2. MediaPipe Tasks ImageSegmenter (mediapipe 1.2.3): built from model.tflite and its metadata
#      alone; its masks vs golden/NAME.mask.png;
#   3. tflite-support's MetadataDisplayer: the embedded metadata and labels.txt;
#   4. arm64: LiteRT's aarch64 wheel (ai-edge-litert 2.3.0) on emulated arm64 CPUs
#      (qemu-aarch64-static, root from tools/setup_arm64_env.sh): XNNPACK must reproduce
#      golden/NAME.output.npy exactly (a quantized graph with SOFTMAX, which XNNPACK leaves to the
#      builtin kernels, is held to the mask gate instead), the builtin kernels must agree with
#      golden/NAME.mask.png on KSEG_ARM64_BUILTIN_MIN_AGREEMENT of the pixels. Where the arm64
#      root cannot be made or run (not root, no apt-get, qemu cannot run arm64 programs) it prints
#      "[bundle] arm64 skipped: <reason>" and does not fail.
# 1-3 run in their own venvs from tools/setup_deploy_env.sh (created once, reused).
# Usage: tools/bundle_consumer_check.sh [BUNDLE_DIR]
# Env:   KSEG_BUNDLE_MIN_AGREEMENT pixel agreement required on every sample (default 0.999)
#        KSEG_BUNDLE_CONSUMERS     which to run (default "tflite_runtime mediapipe metadata arm64")
#        KSEG_ARM64_CPUS           qemu CPU models (default "cortex-a76 max,sme=off": Armv8.2 with
#                                  dot product, and Armv8.x/9 with i8mm and SVE, without SME)
#        KSEG_ARM64_BUILTIN_MIN_AGREEMENT  builtin kernels on arm64 vs the golden masks (0.998)
#        KSEG_ARM64_RECORD=1       when arm64 passes, write its figures into the bundle (model.json,
#                                  README table, manifest: kseg.deploy.bundle.record_arm64, run by
#                                  KSEG_MAIN_PYTHON, default python3 with kseg importable)
#        KSEG_EDGE_VENV, KSEG_MEDIAPIPE_VENV, KSEG_METADATA_VENV: see tools/setup_deploy_env.sh
#        KSEG_ARM64_ROOT: see tools/setup_arm64_env.sh
# Exit:  0 all agree (or arm64 skipped); 1 a consumer disagrees; 2 bad arguments.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE=$(realpath -m "${1:-$REPO/android_demo_assets/hc18}")
MIN=${KSEG_BUNDLE_MIN_AGREEMENT:-0.999}
LOGS=${TMPDIR:-/tmp}  # consumer logs and the arm64 results (kseg-bundle-*)
[[ -f "$BUNDLE/model.tflite" && -d "$BUNDLE/golden" ]] || {
  echo "error: $BUNDLE: not a kseg bundle (model.tflite, golden/); make one with kseg export android" >&2
  exit 2
}
CONSUMERS=${KSEG_BUNDLE_CONSUMERS:-tflite_runtime mediapipe metadata arm64}
declare -A VENV=(
  [tflite_runtime]=${KSEG_EDGE_VENV:-/tmp/kseg-edge-venv}
  [mediapipe]=${KSEG_MEDIAPIPE_VENV:-/tmp/kseg-mediapipe-venv}
  [metadata]=${KSEG_METADATA_VENV:-/tmp/kseg-metadata-venv}
)
declare -A SETUP=([tflite_runtime]=edge [mediapipe]=mediapipe [metadata]=metadata)
venvs=()
for consumer in $CONSUMERS; do
  case "$consumer" in
    tflite_runtime|mediapipe|metadata) venvs+=("${SETUP[$consumer]}") ;;
    arm64) ;;
    *) echo "error: unknown consumer '$consumer' (tflite_runtime, mediapipe, metadata, arm64)" >&2
       exit 2 ;;
  esac
done
((${#venvs[@]} == 0)) || bash "$REPO/tools/setup_deploy_env.sh" "${venvs[@]}"

summary() {  # JSON_FILE: the arm64 consumer's summary line and its problems
  "${KSEG_VENV_PYTHON:-python3.11}" -c 'import json, sys
r = json.load(open(sys.argv[1]))
print("; ".join([r["summary"], *r["problems"]]))' "$1"
}

arm64() {  # LiteRT's aarch64 wheel on each emulated CPU; returns 1 when a gate fails
  local root=${KSEG_ARM64_ROOT:-/tmp/kseg-arm64-root} t0=$SECONDS reason rc=0 cpu out failed=0
  if reason=$(bash "$REPO/tools/setup_arm64_env.sh" 2>"$LOGS/kseg-bundle-arm64-setup.log"); then :; else
    rc=$?
    if ((rc == 3)); then echo "[bundle] arm64 skipped: $reason"; return 0; fi
    echo "[bundle] arm64 FAILED: set-up failed, see $LOGS/kseg-bundle-arm64-setup.log" >&2
    tail -3 "$LOGS/kseg-bundle-arm64-setup.log" >&2
    return 1
  fi
  local t1=$SECONDS results=()
  for cpu in ${KSEG_ARM64_CPUS:-cortex-a76 max,sme=off}; do
    # the full result (per sample) goes to a file, the log gets its summary line
    local json="$LOGS/kseg-bundle-arm64-${cpu%%,*}.json"
    if (cd /tmp && QEMU_CPU=$cpu PYTHONPATH="$root/opt/kseg-site" \
        qemu-aarch64-static -L "$root" "$root/usr/bin/python3.11" "$REPO/tools/bundle_consumer.py" \
        arm64 "$BUNDLE" --builtin-min-agreement "${KSEG_ARM64_BUILTIN_MIN_AGREEMENT:-0.998}" \
        >"$json" 2>"$LOGS/kseg-bundle-arm64.log"); then
      echo "[bundle] arm64 ok: $(summary "$json")"
      results+=("$json")
    else
      out=$(summary "$json" 2>/dev/null) || out="see $LOGS/kseg-bundle-arm64.log"
      echo "[bundle] arm64 ($cpu) FAILED: $out" >&2
      tail -5 "$LOGS/kseg-bundle-arm64.log" >&2
      failed=1
    fi
  done
  echo "[bundle] arm64 took $((SECONDS - t0)) s (set-up $((t1 - t0)) s)"
  if ((failed == 0)) && [[ ${KSEG_ARM64_RECORD:-0} == 1 ]]; then
    "${KSEG_MAIN_PYTHON:-python3}" -c 'import json, sys
from kseg.deploy.bundle import record_arm64
print("[bundle] arm64 figures recorded in", sys.argv[1], json.dumps(
    record_arm64(sys.argv[1], [json.load(open(f)) for f in sys.argv[2:]])))' "$BUNDLE" "${results[@]}"
  fi
  return $failed
}

status=0
for consumer in $CONSUMERS; do
  if [[ $consumer == arm64 ]]; then
    arm64 || status=1
    continue
  fi
  # MediaPipe and TFLite log to stderr; keep it for a failure only
  if out=$(cd /tmp && "${VENV[$consumer]}/bin/python" "$REPO/tools/bundle_consumer.py" "$consumer" \
      "$BUNDLE" --min-agreement "$MIN" 2>"$LOGS/kseg-bundle-$consumer.log"); then
    echo "[bundle] $consumer ok: $out"
  else
    echo "[bundle] $consumer FAILED: ${out:-see $LOGS/kseg-bundle-$consumer.log}" >&2
    tail -5 "$LOGS/kseg-bundle-$consumer.log" >&2
    status=1
  fi
done
exit $status
