#!/usr/bin/env bash
# Rebuild the committed Android demo bundles under android_demo_assets/ with one command:
#   1. the metadata-writer venv (tools/setup_deploy_env.sh metadata);
#   2. the bundle's model, unless RUN/best.keras exists:
#      hc18   a small mobile_unet on the HC18 fetal-head subset (configs/android_demo.yaml: 160 px,
#             one class, at most 7 minutes on a CPU), under nice;
#      usgra  the planned U-Net of `kseg train --data USGRA --budget 25` (what tools/bench_usgra.py
#             measures: unet depth 4, 16 filters, 224 px letterbox, 3 classes with softmax), under nice;
#   3. kseg export android --int8 with 4 golden samples from the run's validation split into
#      android_demo_assets/NAME/ (labels: fetal_head; usgra: background, nerve, vessel, the
#      palette indices 0, 1, 2 of the data's README);
#   4. the arm64 check (LiteRT on emulated arm64 CPUs), whose figures are recorded in the bundle's
#      model.json, README and manifest (KSEG_ARM64_RECORD=1; skipped with a line where the arm64
#      root cannot be made, then the README says arm64 was not measured).
# Usage: tools/make_android_assets.sh [hc18|usgra|all] [RUN_DIR]   (default: hc18, runs/android_demo
#        for hc18 and runs/bench/usgra/run for usgra; RUN_DIR only with one bundle)
# Env:   KSEG_HC18, KSEG_USGRA data folders (default ../shared/data/hc18, ../shared/data/usgra)
#        KSEG_PY python with kseg (default python)
# HC18 (van den Heuvel et al., PLoS ONE 2018, doi:10.5281/zenodo.1327317) and USGRA
# (T. Kandaouroff, usgra-seg, GitHub tmkand/usgra-seg, 2025) are CC BY 4.0; each bundle's
# samples/ATTRIBUTION.md carries the attribution from the data set's README.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
WHICH=${1:-hc18}
PY=${KSEG_PY:-python}
if [[ "$WHICH" == all ]]; then
  [[ $# -le 1 ]] || { echo "error: RUN_DIR goes with one bundle (hc18 or usgra), not all" >&2; exit 2; }
  bash "$0" hc18
  exec bash "$0" usgra
fi
case "$WHICH" in
  hc18)  DATA=${KSEG_HC18:-$REPO/../shared/data/hc18}; CONFIG=configs/android_demo.yaml
         RUN=${2:-runs/android_demo}; EXTRA=(--labels fetal_head) ;;
  usgra) DATA=${KSEG_USGRA:-$REPO/../shared/data/usgra}; CONFIG=
         RUN=${2:-runs/bench/usgra/run}; EXTRA=(--labels background,nerve,vessel) ;;
  *) echo "error: unknown bundle '$WHICH' (hc18, usgra, all)" >&2; exit 2 ;;
esac
[[ -d "$DATA/images" ]] || {
  echo "error: $DATA: $WHICH data not found (set KSEG_${WHICH^^})" >&2
  exit 2
}
bash tools/setup_deploy_env.sh metadata
if [[ ! -f "$RUN/best.keras" && -n "$CONFIG" ]]; then
  nice -n 10 "$PY" -m kseg.cli train --config "$CONFIG" --data "$DATA" --out "$RUN"
elif [[ ! -f "$RUN/best.keras" ]]; then  # usgra: the budget-planned run, as a user types it
  nice -n 10 "$PY" -m kseg.cli train --data "$DATA" --budget 25 --out "$RUN"
fi
# Vela's compiled Ethos-U figures go into bench.json and the README when its venv exists
# (tools/vela_check.sh --install makes it)
VELA=${KSEG_VELA_VENV:-/tmp/kseg-vela-venv}/bin/vela
if [[ -z "${KSEG_VELA:-}" && -x "$VELA" ]]; then export KSEG_VELA=$VELA; fi
"$PY" -m kseg.cli export android --model "$RUN" --out "android_demo_assets/$WHICH" --int8 \
  --samples 4 "${EXTRA[@]}" --force
KSEG_BUNDLE_CONSUMERS=arm64 KSEG_ARM64_RECORD=1 KSEG_MAIN_PYTHON="$PY" \
  bash tools/bundle_consumer_check.sh "android_demo_assets/$WHICH"
du -sh "android_demo_assets/$WHICH"
