"""The run directory's layout: the names of the files one training run writes, named once.

Here, just above the utilities, rather than in :mod:`kseg.training`, because the layers below
training read runs too: :mod:`kseg.runtime` opens ``RUN/best.keras`` with its ``config.yaml``.
What training does with a run (data sources, resolving ``--data``) stays in
:mod:`kseg.training.rundir`, which re-exports these names. See ``docs/ARCHITECTURE.md`` for the
layout.

Example:
    >>> run = find_run_dir("runs/demo/best.keras")      # RunDir(root=.../runs/demo) or None
    >>> run.config, run.split                           # runs/demo/config.yaml, runs/demo/split.csv
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kseg.errors import ConfigError


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def split(self) -> Path:
        return self.root / "split.csv"

    @property
    def init(self) -> Path:
        return self.root / "init.json"

    @property
    def data_source(self) -> Path:
        return self.root / "data_source.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def best_model(self) -> Path:
        return self.root / "best.keras"

    @property
    def last_model(self) -> Path:
        return self.root / "last.keras"

    @property
    def backup(self) -> Path:
        return self.root / "backup"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.png"

    def is_run(self) -> bool:
        return self.config.is_file()

    @classmethod
    def for_new_run(cls, path: str | Path) -> RunDir:
        """A run directory for a new run; an existing run or a non-empty folder is never reused.

        Nothing is created here: the caller creates ``root`` once data and model are known to work,
        so a failing command leaves no half-made run behind.
        """
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"{root}: --out exists and is a file; choose a folder name")
        if root.is_dir() and any(root.iterdir()):
            run = cls(root)
            if run.is_run():
                raise ConfigError(
                    f"{root}: a run already exists there; continue it with --resume {root} "
                    "or choose another --out"
                )
            raise ConfigError(f"{root}: folder is not empty; choose a new or empty --out folder")
        return cls(root)

    @classmethod
    def for_resume(cls, path: str | Path) -> RunDir:
        run = cls(Path(path))
        if not run.is_run():
            raise ConfigError(
                f"{path}: not a kseg run directory (no config.yaml); give the --out folder of an "
                "earlier `kseg train`"
            )
        return run


def find_run_dir(model_path: str | Path) -> RunDir | None:
    """The run directory that holds ``model_path`` (e.g. ``RUN/best.keras``), if any."""
    parent = Path(model_path).resolve().parent
    run = RunDir(parent)
    return run if run.is_run() else None


__all__ = ["RunDir", "find_run_dir"]
