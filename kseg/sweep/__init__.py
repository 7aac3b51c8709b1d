"""Architecture x loss sweeps under one protocol and budget (``kseg sweep``), on this machine or
on a Ray cluster (``engine="ray"``)."""

from kseg.sweep.engines import CellResources, Engine
from kseg.sweep.runner import (
    SweepPlan,
    cell_name,
    load_cells,
    make_plan,
    read_sweep_section,
    run_sweep,
)

__all__ = [
    "CellResources",
    "Engine",
    "SweepPlan",
    "cell_name",
    "load_cells",
    "make_plan",
    "read_sweep_section",
    "run_sweep",
]
