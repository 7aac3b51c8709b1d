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


def parse_synthetic_spec(
    text: str, flag: str, usage: str = "synthetic:KIND[:N]", default_n: int = 200
) -> tuple[SyntheticKind, int]:
    """``synthetic:KIND[:N]`` -> ``(kind, n)`` (KIND defaults to ultrasound, N to ``default_n``).

    Raises:
        ConfigError: unknown KIND or a non-integer N, naming ``flag`` and ``usage``.
    """
    parts = text.split(":")
    try:
        kind = SyntheticKind(parts[1] if len(parts) > 1 and parts[1] else "ultrasound")
        n = int(parts[2]) if len(parts) > 2 else default_n
    except ValueError:
        raise ConfigError(
            f"{flag} {text}: use {usage} with KIND one of {', '.join(SyntheticKind.values())}"
        ) from None
    return kind, n


def resolve_data(
    model_path: Path | None, size: int, channels: int, data: str | Path | None, *, seed: int = 42
) -> ModelData:
    """Data for a trained model: calibration, parity, evaluation and fine-tuning find it the same way.

    ``data`` may be:

    1. ``None``: the run directory that holds the model (``RUN/best.keras``): its config and saved
       split; without one, the embedded synthetic set for the model's channel count (said so in
       ``description``);
    2. a run directory (has ``config.yaml``): that run's data and split;
    3. ``synthetic:KIND[:N]`` (e.g. ``synthetic:ultrasound:200``): the embedded generator;
    4. a folder with ``images/`` and ``masks/``: split by group with ``seed``.

    Images are brought to the model's ``size`` and ``channels``.
    """
    run = find_run_dir(model_path) if model_path is not None else None
    text = None if data is None else str(data)
    if text is not None and (Path(text) / "config.yaml").is_file():
        run, text = RunDir(Path(text)), None
    base = load_config(run.config) if run else Config()
    fitted = {"img_size": size, "channels": channels}
    if text is not None and text.startswith("synthetic:"):
        kind, n = parse_synthetic_spec(text, "--data")
        try:
            d = DataConfig(
                synthetic_kind=kind, synthetic_n=n, preprocess=base.data.preprocess, **fitted
            )
        except ValueError:
            raise ConfigError(
                f"--data {text}: use synthetic:KIND[:N] with KIND one of {', '.join(SyntheticKind.values())}"
            ) from None
        return ModelData(dataclasses.replace(base, data=d), None, f"synthetic {kind} n={n}")
    if text is not None:
        d = dataclasses.replace(base.data, path=text, **fitted)
        return ModelData(
            dataclasses.replace(base, data=d), None, f"folder {text} (group split, seed {seed})"
        )
    if run is not None:
        what = base.data.path or f"synthetic {base.data.synthetic_kind}"
        if (base.data.img_size, base.data.channels) != (size, channels):
            base = dataclasses.replace(base, data=dataclasses.replace(base.data, **fitted))
        return ModelData(
            base, run.split if run.split.is_file() else None, f"run {run.root}: {what}"
        )
    kind = SyntheticKind.ULTRASOUND if channels == 1 else SyntheticKind.SKIN
    d = DataConfig(synthetic_kind=kind, synthetic_n=96, **fitted)
    return ModelData(
        dataclasses.replace(base, data=d), None, f"embedded synthetic {kind} (no --data given)"
    )
