#!/usr/bin/env bash
# Small venvs for the deployment bundle (kseg export android) and its consumer checks, created once
# and reused (each only when missing or broken):
#   metadata   tflite-support 0.4.4, the maintained TFLite Model Metadata writer; it pins
#              protobuf 3.20, which TensorFlow 2.21 cannot share. Used by `kseg export android`.
#   mediapipe  mediapipe 1.2.3 (MediaPipe Tasks ImageSegmenter), numpy 2, its own wheels.
#   edge       numpy<2 + tflite-runtime 2.14 + OpenCV (the same venv tools/edge_env_check.sh uses).
# Usage: tools/setup_deploy_env.sh [metadata|mediapipe|edge ...]   (default: all three)
# Env:   KSEG_METADATA_VENV  (default /tmp/kseg-metadata-venv)
#        KSEG_MEDIAPIPE_VENV (default /tmp/kseg-mediapipe-venv)
#        KSEG_EDGE_VENV      (default /tmp/kseg-edge-venv)
#        KSEG_VENV_PYTHON    interpreter that creates them (default python3.11)
set -euo pipefail
PY=${KSEG_VENV_PYTHON:-python3.11}
META=${KSEG_METADATA_VENV:-/tmp/kseg-metadata-venv}
MP=${KSEG_MEDIAPIPE_VENV:-/tmp/kseg-mediapipe-venv}
EDGE=${KSEG_EDGE_VENV:-/tmp/kseg-edge-venv}

make_venv() {  # DIR CHECK_IMPORT PACKAGES...
  local dir=$1 check=$2; shift 2
  if [[ -x "$dir/bin/python" ]] && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
    return 0
  fi
  echo "== creating $dir ($*)" >&2
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q "$@"
  "$dir/bin/python" -c "$check"
}

need_lib() {  # SONAME DEBIAN_PACKAGE WHY: install a system library a wheel links against
  local so=$1 pkg=$2 why=$3
  if ldconfig -p 2>/dev/null | grep -q "$so"; then return 0; fi
  local sudo=""
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      echo "error: $why needs $so; install it (Debian/Ubuntu: apt-get install $pkg) and rerun" >&2
      exit 2
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $why needs $so and there is no apt-get; install your system's $pkg package and rerun" >&2
    exit 2
  fi
  echo "== installing $pkg ($so, for $why)" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >/dev/null
}

for what in "${@:-metadata mediapipe edge}"; do
  for w in $what; do
    case "$w" in
      metadata) need_lib libusb-1.0.so.0 libusb-1.0-0 "tflite-support's metadata writer"
                make_venv "$META" "from tflite_support.metadata_writers import image_segmenter" \
                  "tflite-support==0.4.4" ;;
      mediapipe) make_venv "$MP" "from mediapipe.tasks.python import vision" \
                  "mediapipe==1.2.3" ;;
      edge) make_venv "$EDGE" "import tflite_runtime, cv2, numpy" \
                  "numpy<2" "tflite-runtime==2.14.*" "click>=8.1" "pyyaml>=6" \
                  "opencv-python-headless>=4.9,<4.11" "tflite>=2.18,<3" ;;
      *) echo "error: unknown venv '$w' (metadata, mediapipe, edge)" >&2; exit 2 ;;
    esac
  done
done
