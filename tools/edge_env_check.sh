#!/usr/bin/env bash
# Edge-device emulation: run `kseg predict` and `kseg bench` on a .tflite in a minimal virtual
# environment (numpy<2, tflite-runtime 2.14, click, pyyaml, opencv-headless, tflite schema
# bindings; kseg installed with --no-deps, so no TensorFlow, no LiteRT), the stand-in for a
# Raspberry Pi-class device, and check that its masks match LiteRT's in the main environment.
#
# Usage: tools/edge_env_check.sh MODEL.tflite IMAGES_DIR [OUT_DIR]
#        tools/edge_env_check.sh --self-test [WORK_DIR]   (tiny INT8 model + phantoms, for CI)
# Env:   KSEG_EDGE_VENV   venv folder, reused when present (default /tmp/kseg-edge-venv)
#        KSEG_EDGE_PYTHON interpreter that creates it (default python3.11)
#        KSEG_MAIN_PYTHON main-environment python with kseg + ai-edge-litert (default: python)
#        KSEG_EDGE_MIN_AGREEMENT pixel agreement required, in [0, 1] (default 0.999)
# Exit:  0 masks agree and bench wrote its JSON; 1 mismatch or failure; 2 bad arguments.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAIN_PY=${KSEG_MAIN_PYTHON:-python}

if [[ "${1:-}" == "--self-test" ]]; then
  # CI without a trained model: a tiny INT8 U-Net (tests/runtime/tiny_models.py) and 4 phantoms
  WORK=$(realpath -m "${2:-$(mktemp -d /tmp/kseg-edge-self.XXXXXX)}")
  mkdir -p "$WORK/images"
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$MAIN_PY" - "$REPO" "$WORK" <<'EOF'
import sys
from pathlib import Path
import cv2, numpy as np
repo, work = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(repo / "tests" / "runtime"))
import tiny_models
paths = tiny_models.build_all(work / "models")
rng = np.random.default_rng(0)
for i in range(4):
    img = rng.normal(60, 20, (48 + 8 * i, 40 + 4 * i)).clip(0, 255).astype(np.uint8)
    cv2.circle(img, (20, 24), 10 + i, 200, -1)
    cv2.imwrite(str(work / "images" / f"img{i}.png"), img)
print(paths["int8"])
EOF
  exec "$0" "$WORK/models/tiny_int8.tflite" "$WORK/images" "$WORK/out"
fi
if [[ $# -lt 2 ]]; then
  echo "usage: $0 MODEL.tflite IMAGES_DIR [OUT_DIR]  |  $0 --self-test [WORK_DIR]" >&2
  exit 2
fi
MODEL=$(realpath "$1")
IMAGES=$(realpath "$2")
OUT=$(realpath -m "${3:-$(mktemp -d /tmp/kseg-edge-check.XXXXXX)}")
VENV=${KSEG_EDGE_VENV:-/tmp/kseg-edge-venv}
EDGE_PY=${KSEG_EDGE_PYTHON:-python3.11}
MIN_AGREEMENT=${KSEG_EDGE_MIN_AGREEMENT:-0.999}

[[ -f "$MODEL" ]] || { echo "error: $MODEL: model not found" >&2; exit 2; }
[[ -d "$IMAGES" ]] || { echo "error: $IMAGES: images folder not found" >&2; exit 2; }
mkdir -p "$OUT"

# 1. the minimal environment (created once, kseg reinstalled every time from this checkout)
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "== creating edge venv $VENV"
  "$EDGE_PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "numpy<2" "tflite-runtime==2.14.*" "click>=8.1" "pyyaml>=6" \
    "opencv-python-headless>=4.9,<4.11" "tflite>=2.18,<3"
fi
echo "== installing kseg --no-deps into $VENV"
if ! "$VENV/bin/python" -m pip install -q --no-deps --force-reinstall "$REPO" >"$OUT/pip_install.log" 2>&1; then
  cat "$OUT/pip_install.log" >&2
  echo "error: pip install --no-deps $REPO failed in $VENV" >&2
  exit 1
fi
"$VENV/bin/python" - <<'EOF'
import importlib.util, sys
heavy = [m for m in ("tensorflow", "ai_edge_litert", "keras", "tf_keras") if importlib.util.find_spec(m)]
if heavy:
    sys.exit(f"edge venv is not minimal: {heavy} installed")
import numpy, tflite_runtime
print(f"edge venv: numpy {numpy.__version__}, tflite-runtime {tflite_runtime.__version__}, no TensorFlow")
EOF

# 2. reference masks: LiteRT in the main environment
echo "== main environment (LiteRT)"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$MAIN_PY" - "$MODEL" "$IMAGES" "$OUT/main" <<'EOF'
import sys
from pathlib import Path
from kseg.data.io import is_image_file
from kseg.inference import predict_files
from kseg.runtime import open_model
model, images, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
files = sorted(p for p in images.iterdir() if is_image_file(p))
if not files:
    sys.exit(f"error: {images}: no images")
m = open_model(model, runtime="litert")
predict_files(m, files, out)
print(f"{m.backend}: {len(files)} masks -> {out}")
EOF

# 3. the device: kseg predict + kseg bench with tflite-runtime, from the console script
echo "== edge environment (tflite-runtime)"
cd "$OUT"  # not the repo: the installed kseg must be the one imported
KSEG="$VENV/bin/kseg"
if "$KSEG" predict --help >/dev/null 2>&1; then
  "$KSEG" predict --model "$MODEL" "$IMAGES" --out "$OUT/edge" --runtime tflite_runtime
else
  echo "NOTE: 'kseg predict' is not available in this checkout; calling kseg.inference.predict_files"
  "$VENV/bin/python" - "$MODEL" "$IMAGES" "$OUT/edge" <<'EOF'
import sys
from pathlib import Path
from kseg.data.io import is_image_file
from kseg.inference import predict_files
from kseg.runtime import open_model
m = open_model(sys.argv[1], runtime="tflite_runtime")
predict_files(m, sorted(p for p in Path(sys.argv[2]).iterdir() if is_image_file(p)), sys.argv[3])
EOF
fi
if "$KSEG" bench --help >/dev/null 2>&1; then
  BENCH=("$KSEG" bench)
else
  echo "NOTE: 'kseg bench' is not registered in kseg.cli yet; using python -m kseg.bench.cli"
  BENCH=("$VENV/bin/python" -m kseg.bench.cli)
fi
"${BENCH[@]}" "$MODEL" --runtime tflite_runtime --threads 1 --runs 20 --warmup 3 \
  --npu "$REPO/configs/devices/generic_npu.yaml" --npu "$REPO/configs/devices/cortex_a53.yaml" \
  --json "$OUT/edge_bench.json" --md "$OUT/edge_bench.md" >/dev/null
"$VENV/bin/python" - "$OUT/edge_bench.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
res = r["results"][0]
assert res["backend"] == "tflite_runtime", res["backend"]
print(f"edge bench: p50 {r['latency_ms']['p50']:.2f} ms, p90 {r['latency_ms']['p90']:.2f} ms, "
      f"init {r['init_ms']:.0f} ms, peak RSS {r['peak_rss_mb']:.0f} MiB, size {r['size_bytes']} B, "
      f"{len(r['npu'])} device emulations")
EOF

# 4. compare
echo "== comparing masks"
"$VENV/bin/python" - "$OUT/main" "$OUT/edge" "$MIN_AGREEMENT" <<'EOF'
import sys
from pathlib import Path
import cv2, numpy as np
main, edge, need = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
refs = sorted(main.glob("*_mask.png"))
if not refs:
    sys.exit("error: no reference masks")
total = same = 0
worst = (1.0, "")
for ref in refs:
    other = edge / ref.name
    if not other.is_file():
        sys.exit(f"error: {other}: edge mask missing")
    a = cv2.imread(str(ref), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(other), cv2.IMREAD_UNCHANGED)
    if a.shape != b.shape:
        sys.exit(f"error: {ref.name}: shape {a.shape} (LiteRT) vs {b.shape} (tflite-runtime)")
    eq = int((a == b).sum())
    total, same = total + a.size, same + eq
    worst = min(worst, (eq / a.size, ref.name))
agree = same / total
print(f"pixel agreement {agree:.6f} over {len(refs)} masks (worst {worst[0]:.6f} {worst[1]}); need >= {need}")
sys.exit(0 if agree >= need else 1)
EOF
echo "edge check passed: $OUT"
