"""The layering of docs/ARCHITECTURE.md: no import circles between kseg's packages, lazy imports
included, and the low packages load without the ones above them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = Path(os.environ.get("KSEG_TOOLS", REPO.parent / "shared" / "tools")) / "import_cycles.py"


def test_no_import_cycles_between_packages():
    if not TOOL.is_file():
        pytest.skip(f"import-cycle tool not found at {TOOL} (set KSEG_TOOLS or place ../shared)")
    res = subprocess.run(
        [sys.executable, str(TOOL), "kseg", "--packages"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        res.stdout.strip().splitlines()[-1] == "0 import cycle(s) between the subpackages of kseg/"
    )
    assert res.returncode == 0, res.stdout


@pytest.mark.parametrize(
    ("module", "above"),
    [
        ("kseg.filters", ["kseg.config", "kseg.data", "kseg.runtime", "kseg.preprocess"]),
        ("kseg.config", ["kseg.data", "kseg.models", "kseg.runtime", "kseg.preprocess"]),
        ("kseg.runtime", ["kseg.training", "kseg.export", "kseg.bench", "kseg.inference"]),
        ("kseg.models", ["kseg.optimize", "kseg.export", "kseg.runtime", "kseg.training"]),
    ],
)
def test_a_low_package_loads_without_the_packages_above_it(module, above):
    code = f"import sys, {module}; print(' '.join(m for m in {above!r} if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""


def test_qat_objects_load_without_the_optimize_package():
    pytest.importorskip("tensorflow_model_optimization")
    code = (
        "import sys; from kseg.models import custom_objects; o = custom_objects(); "
        "print('QuantizeWrapperV2' in o, 'kseg>OutputQuantizeConfig' in o, 'kseg.optimize' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["True", "True", "False"]
