"""Where a sweep's cells run: one after another in this process, or as tasks on a Ray cluster.

The engine only decides where :func:`kseg.sweep.runner.run_cell` is called; the cells, their run
directories, resume from the last completed epoch and the results are the runner's, whichever
engine ran them. Ray is an optional extra (``pip install 'kseg[ray]'``) imported only by
``--engine ray`` (:mod:`kseg.sweep.ray_engine`).

Example:
    >>> engine = Engine("ray")
    >>> CellResources(cpus=2, gpus=0.5).check(engine)
"""

from __future__ import annotations

import dataclasses
import enum
import math
from pathlib import Path
from typing import Any

from kseg.errors import ConfigError


class Engine(enum.StrEnum):
    """Runs a sweep's cells.

    ``local``: one after another in this process (TensorFlow imported once).
    ``ray``: one Ray task per cell on a cluster (``--address``) or on a Ray instance started on
    this machine; each task declares the cell's CPUs and GPUs and is retried when its worker dies.
    """

    LOCAL = "local"
    RAY = "ray"


@dataclasses.dataclass(frozen=True)
class CellResources:
    """What one cell asks of the engine (``--engine ray`` only).

    Args:
        cpus: CPUs reserved per cell; the cell's TensorFlow also uses that many threads.
        gpus: GPUs per cell (fractions share a GPU); Ray sets the task's ``CUDA_VISIBLE_DEVICES``.
        retries: how often a cell whose worker process or node died is started again; it
            continues from its last completed epoch.
        address: the Ray cluster (``ray start --head`` prints it); ``None``: ``RAY_ADDRESS`` if
            set, else a Ray instance started on this machine for the sweep.

    Example:
        >>> CellResources(cpus=2, gpus=1, address="10.0.0.5:6379")
    """

    cpus: float = 1.0
    gpus: float = 0.0
    retries: int = 3
    address: str | None = None

    def check(self, engine: Engine) -> None:
        if not (math.isfinite(self.cpus) and self.cpus > 0):
            raise ConfigError(f"--cpus-per-cell {self.cpus}: give a number of CPUs > 0, e.g. 1")
        if not (math.isfinite(self.gpus) and self.gpus >= 0):
            raise ConfigError(f"--gpus-per-cell {self.gpus}: give a number of GPUs >= 0, e.g. 1")
        if self.retries < 0:
            raise ConfigError(f"--retries {self.retries}: give 0 or more, e.g. 3")
        if engine is Engine.LOCAL and self != CellResources():
            raise ConfigError(
                "--address, --cpus-per-cell, --gpus-per-cell and --retries need --engine ray "
                "(the local engine runs one cell at a time in this process)"
            )

    def task_options(self) -> dict[str, Any]:
        """The Ray task options that declare a cell's needs and its retries.

        Only the death of a worker process or node is retried (``retry_exceptions=False``): a cell
        that raises fails the same way again.
        """
        return {
            "num_cpus": self.cpus,
            "num_gpus": self.gpus,
            "max_retries": self.retries,
            "retry_exceptions": False,
        }

    def threads(self) -> int:
        """TensorFlow threads for a cell that reserved ``cpus`` (at least one)."""
        return max(1, int(self.cpus))


@dataclasses.dataclass(frozen=True)
class CellJob:
    """One cell to train: everything :func:`kseg.sweep.runner.run_cell` needs, picklable."""

    base: Any  # kseg.config.Config shared by every cell
    cell: Path
    split: Path
    model: str
    loss: str
    seed: int
    plan: Any  # kseg.sweep.runner.SweepPlan


def parse_engine(value: str | Engine) -> Engine:
    try:
        return Engine(str(value))
    except ValueError:
        valid = ", ".join(e.value for e in Engine)
        raise ConfigError(f"--engine {value}: unknown engine; valid engines: {valid}") from None
