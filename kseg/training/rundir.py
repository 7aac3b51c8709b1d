"""The run directory: one folder that describes a training run completely.

See ``docs/ARCHITECTURE.md`` for the layout. Paths are named here once so training, evaluation,
conversion and ``--resume`` agree on them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kseg.atomic import write_json
from kseg.config import Config, DataConfig, SyntheticKind, load_run_config
from kseg.data.synthetic import parse_synthetic_spec
from kseg.errors import ConfigError
from kseg.runs import RunDir, find_run_dir


def files_sha256(names: Iterable[str]) -> str:
    """sha256 of the sorted sample names (file stems), one per line: the data set's identity."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def record_data_source(run: RunDir, config: Config, rows: list[dict[str, str]]) -> Path:
    """Write ``RUN/data_source.json``: the resolved folder (or synthetic set), the seed and the hash
    of the file list the run was split from, so later commands can tell whether ``--data DIR`` is
    this run's data (see :func:`resolve_data`)."""
    d = config.data
    return write_json(
        run.data_source,
        {
            "path": str(Path(d.path).expanduser().resolve()) if d.path else None,
            "synthetic": None if d.path else {"kind": str(d.synthetic_kind), "n": d.synthetic_n},
            "seed": config.train.seed,
            "n_files": len(rows),
            "files_sha256": files_sha256(r["name"] for r in rows),
        },
    )


def _trained_folder(run: RunDir, cfg: Config) -> Path | None:
    """The resolved folder ``run`` trained on (``data_source.json``; older runs: ``data.path``)."""
    if run.data_source.is_file():
        path = json.loads(run.data_source.read_text()).get("path")
        return Path(path) if path else None
    return Path(cfg.data.path).expanduser().resolve() if cfg.data.path else None


def folder_mismatch(run: RunDir, cfg: Config, folder: str | Path) -> str | None:
    """``None`` when ``folder`` is the folder ``run`` trained on, holding exactly the files of its
    ``split.csv``; else why it is not (one sentence)."""
    from kseg.data.folder import scan_folder
    from kseg.data.split import load_split

    trained = _trained_folder(run, cfg)
    here = Path(folder).expanduser().resolve()
    if trained is None:
        return f"the model's run {run.root} trained on synthetic {cfg.data.synthetic_kind}, not on {folder}"
    if here != trained:
        return f"the model's run {run.root} trained on {trained}, not on {here}"
    if not run.split.is_file():
        return f"{run.split} is missing"
    saved = set(load_split(run.split))
    names = {s.name for s in scan_folder(here, cfg.data.group_regex)}
    if names != saved:
        return (
            f"{here} no longer holds the files of {run.split} ({len(names - saved)} added, "
            f"{len(saved - names)} removed)"
        )
    return None


def _same_split(a: RunDir, b: RunDir) -> bool:
    return a.split.is_file() and b.split.is_file() and a.split.read_bytes() == b.split.read_bytes()


MAY_INCLUDE_TRAINING = "the images checked may include images the model was trained on"


@dataclasses.dataclass(frozen=True)
class ModelData:
    """Where a trained model's data comes from (see :func:`resolve_data`).

    Attributes:
        config: the config whose ``data`` section loads the images.
        split_file: the run's ``split.csv`` to reuse, else ``None`` (a new split with ``seed``).
        description: one line for people.
        seed: the seed to pass to :func:`kseg.data.pipeline.load_splits`.
        run: the run directory whose split is reused (its training images are then never checked).
        warning: set when the split is not the model's run's: validation images may be training
            images. Commands print it and cards record it.
    """

    config: Config
    split_file: Path | None
    description: str
    seed: int = 42
    run: Path | None = None
    warning: str | None = None

    def provenance(self, splits: Any, which: str) -> dict[str, Any]:
        """The split's provenance for cards and ``metrics.json``: run, seed, sha256 of the sorted
        file list, which split (``train``/``val``/``test``/``all``) and how many images."""
        parts = {"train": [splits.train], "val": [splits.val], "test": [splits.test]}
        parts["all"] = [splits.train, splits.val, splits.test]
        names = [r["name"] for r in splits.rows]
        return {
            "run": str(self.run) if self.run is not None else None,
            "split_file": str(self.split_file) if self.split_file is not None else None,
            "seed": self.seed,
            "files_sha256": files_sha256(names),
            "n_files": len(names),
            "split": which,
            "n_images": sum(len(p) for p in parts[which] if p is not None),
            "may_include_training_images": self.warning is not None or which == "all",
            "warning": self.warning,
        }


def resolve_data(
    model_path: Path | None, size: int, channels: int, data: str | Path | None, *, seed: int = 42
) -> ModelData:
    """Data for a trained model: calibration, parity, evaluation and fine-tuning find it the same way.

    ``data`` may be:

    1. ``None``: the run directory that holds the model (``RUN/best.keras``): its config and saved
       split; without one, the embedded synthetic set for the model's channel count (said so in
       ``description``);
    2. a run directory (has ``config.yaml``): that run's data and split;
    3. ``synthetic:KIND[:N]`` (e.g. ``synthetic:ultrasound:200``): the embedded generator; the
       model's run's own set and split when KIND and N are the run's;
    4. a folder with ``images/`` and ``masks/``: when the model's run trained on this folder (same
       resolved path, same files as its ``split.csv``) that run's split, so validation images are
       never training images; otherwise split by group with ``seed`` and ``warning`` says the
       images may include training images.

    Images are brought to the model's ``size`` and ``channels``.
    """
    model_run = find_run_dir(model_path) if model_path is not None else None
    run = model_run
    text = None if data is None else str(data)
    warning = None
    if text is not None and (Path(text) / "config.yaml").is_file():
        run, text = RunDir(Path(text)), None
        if (
            model_run is not None
            and model_run.root.resolve() != run.root.resolve()
            and not _same_split(model_run, run)
        ):
            warning = (
                f"the model was trained in {model_run.root} with another split than {run.root}; "
                + MAY_INCLUDE_TRAINING
            )
    base = load_run_config(run.config) if run else Config()
    fitted = {"img_size": size, "channels": channels}

    def from_run(what: str) -> ModelData:
        cfg = base
        if (cfg.data.img_size, cfg.data.channels) != (size, channels):
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **fitted))
        split = run.split if run.split.is_file() else None  # type: ignore[union-attr]
        return ModelData(
            cfg,
            split,
            f"run {run.root}: {what}",
            cfg.train.seed,
            run.root,
            warning,  # type: ignore[union-attr]
        )

    if text is not None and text.startswith("synthetic:"):
        kind, n = parse_synthetic_spec(text, "--data")
        if run is not None and base.data.path is None and base.data.synthetic_kind == kind:
            if base.data.synthetic_n == n:  # the run's own set: its seed regenerates it
                return from_run(f"synthetic {kind} n={n} (its split, seed {base.train.seed})")
            if seed == base.train.seed:  # same generator seed, another split of similar images
                warning = (
                    f"synthetic {kind} n={n} with the seed of {run.root} (n={base.data.synthetic_n}) "
                    "is split differently; " + MAY_INCLUDE_TRAINING
                )
        try:
            d = DataConfig(
                synthetic_kind=kind, synthetic_n=n, preprocess=base.data.preprocess, **fitted
            )
        except ValueError:
            raise ConfigError(
                f"--data {text}: use synthetic:KIND[:N] with KIND one of {', '.join(SyntheticKind.values())}"
            ) from None
        return ModelData(
            dataclasses.replace(base, data=d),
            None,
            f"synthetic {kind} n={n} seed {seed}",
            seed,
            None,
            warning,
        )
    if text is not None:
        if run is not None:
            reason = folder_mismatch(run, base, text)
            if reason is None:
                return from_run(f"folder {text} (its split.csv, seed {base.train.seed})")
        else:
            reason = f"no run directory beside {model_path} tells which images it was trained on"
        d = dataclasses.replace(base.data, path=text, **fitted)
        return ModelData(
            dataclasses.replace(base, data=d),
            None,
            f"folder {text} (new group split, seed {seed})",
            seed,
            None,
            f"{reason}: {MAY_INCLUDE_TRAINING}",
        )
    if run is not None:
        return from_run(base.data.path or f"synthetic {base.data.synthetic_kind}")
    kind = SyntheticKind.ULTRASOUND if channels == 1 else SyntheticKind.SKIN
    d = DataConfig(synthetic_kind=kind, synthetic_n=96, **fitted)
    return ModelData(
        dataclasses.replace(base, data=d),
        None,
        f"embedded synthetic {kind} (no --data given)",
        seed,
    )
