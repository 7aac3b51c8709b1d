#!/usr/bin/env bash
# Arm Ethos-U check: compile INT8 .tflite files with Arm's Vela compiler (ethos-u-vela, in its own
# virtual environment, nothing of kseg installed there) for Ethos-U55-128 and Ethos-U55-256 and
# require every operator on the NPU. Prints Vela's cycle estimate, SRAM and off-chip traffic.
#
# Usage: tools/vela_check.sh MODEL.tflite [MODEL.tflite ...]
#        tools/vela_check.sh --self-test [WORK_DIR]  (tiny INT8 model made here, plus every
#                                                    android_demo_assets/*/model.tflite present)
#        tools/vela_check.sh --install               (only create the venv)
# Env:   KSEG_VELA_VENV    venv folder, reused when present (default /tmp/kseg-vela-venv)
#        KSEG_VELA_PYTHON  interpreter that creates it (default python3.11)
#        KSEG_MAIN_PYTHON  main-environment python with kseg (default: python)
#        KSEG_VELA_ACCELERATORS  comma-separated (default ethos-u55-128,ethos-u55-256)
# Exit:  0 every operator of every model on the NPU; 1 an operator left on the CPU or Vela failed;
#        2 bad arguments.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAIN_PY=${KSEG_MAIN_PYTHON:-python}
VENV=${KSEG_VELA_VENV:-/tmp/kseg-vela-venv}
VELA_PY=${KSEG_VELA_PYTHON:-python3.11}
ACCELERATORS=${KSEG_VELA_ACCELERATORS:-ethos-u55-128,ethos-u55-256}
REQ=$(PYTHONPATH="$REPO" "$MAIN_PY" -c 'from kseg.bench.vela import VELA_REQUIREMENT as r; print(r)')

# 1. Vela's own environment (created once): ethos-u-vela and what it pulls in, nothing else
if [[ ! -x "$VENV/bin/vela" ]]; then
  echo "== creating Vela venv $VENV ($REQ)"
  "$VELA_PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$REQ"
fi
echo "== Vela $("$VENV/bin/vela" --version) at $VENV/bin/vela"
if [[ "${1:-}" == "--install" ]]; then
  exit 0
fi

if [[ "${1:-}" == "--self-test" ]]; then
  WORK=$(realpath -m "${2:-$(mktemp -d /tmp/kseg-vela-self.XXXXXX)}")
  mkdir -p "$WORK"
  echo "== building a tiny INT8 model in $WORK/models"
  if ! PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$MAIN_PY" - "$REPO" "$WORK" \
      >"$WORK/build.log" 2>&1 <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, str(Path(sys.argv[1]) / "tests" / "runtime"))
import tiny_models
tiny_models.build_all(Path(sys.argv[2]) / "models")
EOF
  then
    cat "$WORK/build.log" >&2
    echo "error: could not build the tiny INT8 model (log above)" >&2
    exit 1
  fi
  set -- "$WORK/models/tiny_int8.tflite"
  for bundle in "$REPO"/android_demo_assets/*/model.tflite; do  # hc18, usgra
    [[ -f "$bundle" ]] && set -- "$@" "$bundle"
  done
fi
if [[ $# -lt 1 ]]; then
  echo "usage: $0 MODEL.tflite [MODEL.tflite ...]  |  $0 --self-test [WORK_DIR]  |  $0 --install" >&2
  exit 2
fi
for m in "$@"; do
  [[ -f "$m" ]] || { echo "error: $m: model not found" >&2; exit 2; }
done

# 2. compile every model for every accelerator; Vela's summary read by kseg.bench.vela
KSEG_VELA="$VENV/bin/vela" PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" \
  "$MAIN_PY" - "$ACCELERATORS" "$@" <<'EOF'
import sys
from pathlib import Path
from kseg.bench.vela import vela_report
from kseg.errors import KsegError

accs, models = sys.argv[1].split(","), sys.argv[2:]
failed = []
print(f"{'model':<28} {'accelerator':<14} {'NPU ops':>8} {'latency ms':>11} {'SRAM KiB':>9} "
      f"{'off-chip rd KiB':>16} {'off-chip wr KiB':>16}")
for m in models:
    for acc in accs:
        try:
            r = vela_report(m, acc)
        except KsegError as e:
            failed.append(f"{m} {acc}: {e}")
            continue
        print(f"{Path(m).name:<28} {acc:<14} {r['npu_ops']:>4}/{r['ops_total']:<3} "
              f"{r['latency_ms']:>11.2f} {r['sram_bytes'] / 1024:>9.0f} "
              f"{r['offchip_read_bytes'] / 1024:>16.0f} {r['offchip_write_bytes'] / 1024:>16.0f}")
        if not r["all_on_npu"] or r["vela_op_counts"]["cpu"] != 0:
            why = "; ".join(f"{c['op']}: {c['reason']}" for c in r["cpu_op_reasons"][:4])
            failed.append(f"{m} {acc}: {len(r['cpu_ops'])} op(s) on the CPU: "
                          f"{', '.join(r['cpu_ops'][:8])}" + (f" ({why})" if why else ""))
for f in failed:
    print(f"FAIL {f}", file=sys.stderr)
sys.exit(1 if failed else 0)
EOF
echo "vela check passed: every operator on the NPU ($ACCELERATORS)"
