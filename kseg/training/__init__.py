"""Compile and fit a model from a :class:`~kseg.config.Config` into a run directory."""

# kseg.runtime sets the model opener of denoising_ae stages in data.preprocess, so every command
# that loads a run's data (train, convert, evaluate, optimize, sweep, export) can apply its chain
import kseg.runtime  # noqa: F401  (no TensorFlow)
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
