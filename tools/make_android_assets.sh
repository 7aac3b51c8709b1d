#!/usr/bin/env bash
# Rebuild android_demo_assets/ (the committed Android bundle) with one command:
#   1. the metadata-writer venv (tools/setup_deploy_env.sh metadata);
#   2. a small mobile_unet trained on the HC18 fetal-head subset (configs/android_demo.yaml: 160 px,
#      width 1.0, at most 7 minutes on a CPU, under nice), unless RUN/best.keras exists;
#   3. kseg export android --int8 with 4 golden samples from the run's validation split;
#   4. the arm64 check (LiteRT on emulated arm64 CPUs), whose figures are recorded in the bundle's
#      model.json, README and manifest (KSEG_ARM64_RECORD=1; skipped with a line where the arm64
#      root cannot be made, then the README says arm64 was not measured).
# Usage: tools/make_android_assets.sh [RUN_DIR]   (default runs/android_demo)
# Env:   KSEG_HC18 data folder (default ../shared/data/hc18), KSEG_PY python with kseg (default python)
# HC18 (van den Heuvel et al., PLoS ONE 2018, doi:10.5281/zenodo.1327317) is CC BY 4.0; the bundle's
# samples/ATTRIBUTION.md carries the attribution.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
RUN=${1:-runs/android_demo}
DATA=${KSEG_HC18:-$REPO/../shared/data/hc18}
PY=${KSEG_PY:-python}
[[ -d "$DATA/images" ]] || { echo "error: $DATA: HC18 data not found (set KSEG_HC18)" >&2; exit 2; }
bash tools/setup_deploy_env.sh metadata
if [[ ! -f "$RUN/best.keras" ]]; then
  nice -n 10 "$PY" -m kseg.cli train --config configs/android_demo.yaml --data "$DATA" --out "$RUN"
fi
"$PY" -m kseg.cli export android --model "$RUN" --out android_demo_assets --int8 --samples 4 \
  --labels fetal_head --force
KSEG_BUNDLE_CONSUMERS=arm64 KSEG_ARM64_RECORD=1 KSEG_MAIN_PYTHON="$PY" \
  bash tools/bundle_consumer_check.sh android_demo_assets
du -sh android_demo_assets
