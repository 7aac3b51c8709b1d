#!/usr/bin/env bash
# Create (or reuse) the project virtual environment and install kseg with its dev, onnx and ray extras.
# Usage: source tools/setup_env.sh   (sets $KSEG_PY to the venv's python)
# Reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KSEG_VENV:-$repo/.venv}"
py_bin="${PYTHON:-}"
if [ -z "$py_bin" ]; then
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      py_bin="$cand"; break
    fi
  done
fi
if [ -z "$py_bin" ]; then
  echo "error: kseg needs Python 3.11 (python3.11 not found); install it or set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv with $($py_bin --version)"
  "$py_bin" -m venv "$venv"
fi
stamp="$venv/.kseg-installed"
want="$(cat "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing kseg and its dependencies (first run takes a few minutes)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$repo[dev,onnx,ray]"
  echo "$want" > "$stamp"
fi
export KSEG_PY="$venv/bin/python"
export PATH="$venv/bin:$PATH"
