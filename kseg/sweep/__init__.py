"""Architecture x loss sweeps under one protocol and budget (``kseg sweep``)."""

from kseg.sweep.runner import (
    SweepPlan,
    cell_name,
    load_cells,
    make_plan,
    read_sweep_section,
    run_sweep,
)

__all__ = ["SweepPlan", "cell_name", "load_cells", "make_plan", "read_sweep_section", "run_sweep"]
