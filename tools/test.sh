#!/usr/bin/env bash
# The test command: set up the environment on a fresh machine, then run the default test suite
# (slow tests excluded; run them with: tools/test.sh -m slow). Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/tools/setup_env.sh"
cd "$repo"
"$KSEG_PY" -m pytest "$@"
