"""Compile and fit a model from a :class:`~kseg.config.Config` into a run directory."""

from kseg.training.loop import (
    build_model,
    compile_model,
    default_out,
    finish_run,
    score_split,
    train,
)
from kseg.training.rundir import RunDir, find_run_dir

__all__ = [
    "RunDir",
    "build_model",
    "compile_model",
    "default_out",
    "find_run_dir",
    "finish_run",
    "score_split",
    "train",
]
