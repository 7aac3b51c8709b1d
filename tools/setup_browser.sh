#!/usr/bin/env bash
# Install what the `kseg serve` tests need, idempotently: the `serve` extra (FastAPI, uvicorn,
# python-multipart, httpx) and Playwright's Python package into $KSEG_PY's venv, and Debian's
# `chromium` for the page test (Playwright drives it by path; its own browser download is never
# used). Without root or apt the browser step is skipped with a message, and
# tests/serve/test_page.py then skips, saying why.
#   KSEG_PY=.venv/bin/python bash tools/setup_browser.sh
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${KSEG_PY:-python3}"
if ! "$py" -c 'import fastapi, uvicorn, multipart, httpx, playwright' 2>/dev/null; then
  echo "[serve] installing the serve extra into $("$py" -c 'import sys; print(sys.prefix)')"
  "$py" -m pip install --quiet -e "$repo[serve]" "playwright>=1.40" || echo "[serve] warning: pip install of the serve extra failed" >&2
fi
if [ -x /usr/bin/chromium ] || [ -n "${KSEG_CHROMIUM:-}" ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "[serve] no root: cannot apt-get install chromium; the page test will skip" >&2; exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[serve] no apt-get: install Chromium and set KSEG_CHROMIUM=/path/to/chromium for the page test" >&2
  exit 0
fi
echo "[serve] installing Debian chromium for the page test"
$sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null \
  || echo "[serve] warning: apt-get install chromium failed; the page test will skip" >&2
exit 0
