"""The run directory: one folder that describes a training run completely.

See ``docs/ARCHITECTURE.md`` for the layout. Paths are named here once so training, evaluation,
conversion and ``--resume`` agree on them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from kseg.config import Config, DataConfig, SyntheticKind, load_config
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


@dataclasses.dataclass(frozen=True)
class ModelData:
    config: Config
    split_file: Path | None
    description: str


def resolve_data(
    model_path: Path, size: int, channels: int, data: str | Path | None, *, seed: int = 42
) -> ModelData:
    """Data for a trained model: calibration, parity and evaluation all find it the same way.

    1. ``data=DIR``: the folder, split by group with the seed;
    2. else the run directory that holds the model (``RUN/best.keras``): its config and saved split;
    3. else the embedded synthetic set for the model's channel count (said so in ``description``).
    """
    run = find_run_dir(model_path)
    base = load_config(run.config) if run else Config()
    if data is not None:
        d = dataclasses.replace(base.data, path=str(data), img_size=size, channels=channels)
        return ModelData(dataclasses.replace(base, data=d), None, f"folder {data} (group split, seed {seed})")
    if run is not None:
        return ModelData(base, run.split, f"run {run.root}: {base.data.path or 'synthetic ' + str(base.data.synthetic_kind)}")
    kind = SyntheticKind.ULTRASOUND if channels == 1 else SyntheticKind.SKIN
    d = DataConfig(synthetic_kind=kind, synthetic_n=96, img_size=size, channels=channels)
    return ModelData(
        dataclasses.replace(base, data=d), None, f"embedded synthetic {kind} (no --data given)"
    )
