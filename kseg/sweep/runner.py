"""A resumable architecture x loss (x seed) sweep: one training run per cell, one after another.

Every cell gets the same data, the same train/validation split (``SWEEP/split.csv``, made once),
the same augmentation, optimizer and schedule (the config's; ReduceLROnPlateau by default) and the
same budget (``train.epochs`` and/or ``train.time_limit_minutes``); only ``model.name``,
``train.loss`` and ``train.seed`` differ. A cell is a normal kseg run directory
(``SWEEP/cells/<model>__<loss>__seed<k>/``) and is finished when its ``cell.json`` exists, so a
killed sweep, started again with the same command, skips finished cells and continues the cell in
progress from its last completed epoch (``kseg train --resume``): at most the epoch in progress is
lost. The learning rate and optimizer state come back with the epoch; the patience counters of
early stopping and ReduceLROnPlateau start again. ``attempts`` in ``cell.json`` counts the starts of
a cell; the times recorded for a resumed cell cover its last start only.

The plan (models, losses, seeds, int8, hd95) comes from the flags or from a ``sweep:`` section of
the config file (:func:`make_plan`), which every other command ignores.

``engine`` says where the cells train (:mod:`kseg.sweep.engines`): one after another in this
process (``local``), or as tasks on a Ray cluster (``ray``), each declaring its CPUs and GPUs and
started again, from its last completed epoch, when its worker dies. Either way the folder, the
cells and the results are the same.

Example:
    >>> plan = SweepPlan(models=("unet", "segnet"), losses=("dice", "bce"), seeds=(0,))
    >>> run_sweep(plan, "runs/sweep", base_overrides={"train.epochs": 20})
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kseg.atomic import write_json
from kseg.errors import ConfigError, did_you_mean
from kseg.sweep import cell as one_cell
from kseg.sweep.cell import CELL_FILE, ENGINE_FILE
from kseg.sweep.engines import CellJob, CellResources, Engine, parse_engine

PLAN_FILE = "sweep.json"


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """Which cells a sweep trains.

    Args:
        models: registry names (``kseg models list``).
        losses: loss names (``kseg.losses.LOSSES``).
        seeds: training seeds; each (model, loss) is trained once per seed.
        int8: also convert every cell's best model to INT8 TFLite and record its Dice.
        hd95: evaluate every cell at the images' original size for HD95 (``kseg evaluate``).
    """

    models: tuple[str, ...]
    losses: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    int8: bool = True
    hd95: bool = True

    def cells(self) -> list[tuple[str, str, int]]:
        return [(m, lo, s) for m in self.models for lo in self.losses for s in self.seeds]

    def validate(self) -> None:
        from kseg.losses import LOSSES
        from kseg.models import MODELS

        for name in self.models:
            MODELS.get(name)  # unknown names raise with the valid ones listed
        for name in self.losses:
            LOSSES.get(name)
        if not self.models or not self.losses or not self.seeds:
            raise ConfigError("a sweep needs at least one model, one loss and one seed")


#: keys of a config file's ``sweep:`` section; each means what the ``kseg sweep`` flag of that name
#: means, and a flag given on the command line wins over the file
SECTION_KEYS = ("models", "losses", "seeds", "int8", "hd95")


def read_sweep_section(config_path: str | Path | None) -> dict[str, Any]:
    """The ``sweep:`` section of a config file (``{}`` without a file or section), keys checked.

    Example (``configs/sweeps/hc18_classic.yaml``)::

        sweep:
          models: [segnet, unet, unet2, dilated_unet]
          losses: [bce, focal, dice, tversky, combo]
          seeds: [0]
    """
    from kseg.config import read_yaml

    if config_path is None:
        return {}
    section = read_yaml(config_path).get("sweep")
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(
            f"{config_path}: sweep must be a mapping with keys {', '.join(SECTION_KEYS)}"
        )
    for key in section:
        if key not in SECTION_KEYS:
            raise ConfigError(
                f"{config_path}: unknown key 'sweep.{key}'{did_you_mean(key, SECTION_KEYS)}; "
                "valid keys in sweep: " + ", ".join(SECTION_KEYS)
            )
    return section


def make_plan(
    config_path: str | Path | None = None,
    *,
    models: str | Sequence[str] | None = None,
    losses: str | Sequence[str] | None = None,
    seeds: str | Sequence[int] | None = None,
    int8: bool | None = None,
    hd95: bool | None = None,
) -> SweepPlan:
    """The plan from the flags (``None`` = not given) and the config file's ``sweep:`` section.

    A flag wins over the file; seeds default to ``0`` and ``int8``/``hd95`` to on. Models and
    losses have no default: missing from both is an error naming the flag and the key.
    """
    section = read_sweep_section(config_path)
    where = f"{config_path} has no sweep." if config_path is not None else "no --config with sweep."

    def names(given, key: str) -> tuple[str, ...]:
        value = given if given is not None else section.get(key)
        flag = f"--{key}"
        if value is None:
            raise ConfigError(
                f"{flag} not given and {where}{key}; pass {flag} A,B or add "
                f"'sweep: {{{key}: [A, B]}}' to the config"
            )
        return parse_names(value, flag if given is not None else f"sweep.{key}")

    def flag(given: bool | None, key: str) -> bool:
        value = given if given is not None else section.get(key, True)
        if not isinstance(value, bool):
            raise ConfigError(f"{config_path}: sweep.{key} must be true or false, got {value!r}")
        return value

    seed_value = seeds if seeds is not None else section.get("seeds", (0,))
    return SweepPlan(
        models=names(models, "models"),
        losses=names(losses, "losses"),
        seeds=parse_seeds(seed_value, "--seeds" if seeds is not None else "sweep.seeds"),
        int8=flag(int8, "int8"),
        hd95=flag(hd95, "hd95"),
    )


def cell_name(model: str, loss: str, seed: int) -> str:
    return f"{model}__{loss}__seed{seed}"


def _plan_record(plan: SweepPlan, overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "format": "kseg-sweep/1",
        "plan": {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(plan).items()
        },
        "overrides": dict(overrides),
    }


def run_sweep(
    plan: SweepPlan,
    out: str | Path,
    *,
    config_path: str | Path | None = None,
    base_overrides: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    engine: Engine | str = Engine.LOCAL,
    resources: CellResources | None = None,
) -> list[dict[str, Any]]:
    """Train every cell not finished yet, then write the results; returns one record per cell.

    ``config_path`` and ``base_overrides`` make the shared config (data, schedule, budget).
    Starting again on the same ``out`` with a different plan or config is refused, so a results
    table never mixes two protocols. ``engine`` and ``resources`` say where the cells run; they
    may change between starts of one sweep (a sweep begun here may be finished on a cluster).
    """
    from kseg.config import load_config, save_config
    from kseg.data.pipeline import load_splits
    from kseg.data.split import save_split
    from kseg.sweep.results import write_results

    engine = parse_engine(engine)
    resources = resources or CellResources()
    resources.check(engine)
    if engine is Engine.RAY:
        from kseg.sweep.ray_engine import import_ray

        import_ray()  # without Ray: one line, before anything is written
    plan.validate()
    out = Path(out)
    overrides = dict(base_overrides or {})
    if config_path is not None:
        overrides["_config_file"] = str(config_path)
    record = _plan_record(plan, overrides)
    plan_path = out / PLAN_FILE
    if plan_path.is_file():
        before = json.loads(plan_path.read_text(encoding="utf-8"))
        if before != json.loads(json.dumps(record)):
            raise ConfigError(
                f"{out}: holds a sweep with another plan or config ({plan_path}); "
                "resume it with the same flags or choose a new --out"
            )
        log(f"resuming sweep {out}")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: folder is not empty and holds no sweep; choose a new --out")
    overrides.pop("_config_file", None)
    base = load_config(config_path, overrides)
    split = out / "split.csv"
    if not plan_path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        splits = load_splits(base.data, seed=base.train.seed, progress=False)
        save_split(split, splits.rows)
        save_config(base, out / "base_config.yaml")
        write_json(plan_path, record)

    cells = plan.cells()
    if engine is Engine.RAY:
        from kseg.sweep.ray_engine import run_cells

        # absolute paths: a Ray worker does not share this process's working directory
        root = out.resolve()
        jobs = [
            CellJob(base, root / "cells" / cell_name(m, lo, s), root / "split.csv", m, lo, s, plan)
            for m, lo, s in cells
            if not (out / "cells" / cell_name(m, lo, s) / CELL_FILE).is_file()
        ]
        if jobs:
            run_cells(jobs, resources, log=log, record=out / ENGINE_FILE)
    else:
        for i, (model, loss, seed) in enumerate(cells, 1):
            cell = out / "cells" / cell_name(model, loss, seed)
            if (cell / CELL_FILE).is_file():
                continue
            log(f"[{i}/{len(cells)}] {cell.name}")
            one_cell.train(base, cell, split, model, loss, seed, plan)
    records = load_cells(out, plan)
    write_results(records, out, plan)
    return records


def load_cells(out: Path, plan: SweepPlan) -> list[dict[str, Any]]:
    """The finished cells' records, in plan order."""
    rows = []
    for m, lo, s in plan.cells():
        p = out / "cells" / cell_name(m, lo, s) / CELL_FILE
        if p.is_file():
            rows.append(json.loads(p.read_text(encoding="utf-8")))
    return rows


def parse_names(text: str | Sequence[str], flag: str) -> tuple[str, ...]:
    """``"unet, segnet"`` or ``["unet", "segnet"]`` -> ``("unet", "segnet")``."""
    items = str(text).split(",") if isinstance(text, str) else [str(t) for t in text]
    names = tuple(n.strip() for n in items if n.strip())
    if not names:
        raise ConfigError(f"{flag}: give comma-separated names, e.g. {flag} unet,segnet")
    return names


def parse_seeds(text: str | int | Sequence[int], flag: str = "--seeds") -> tuple[int, ...]:
    """``"0,1"``, ``[0, 1]`` or ``0`` -> ``(0, 1)`` / ``(0,)``."""
    items = str(text).split(",") if isinstance(text, (str, int)) else list(text)
    items = [t for t in items if str(t).strip()]
    try:
        if any(isinstance(t, (bool, float)) for t in items):
            raise ValueError
        return tuple(int(t) for t in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} {text}: give comma-separated integers like 0,1") from None
