"""Recipes: YAML files that chain optimize steps into one run directory.

A recipe::

    name: edge_int8
    model: runs/unet/best.keras      # --model overrides; or start with a `train` step
    data: null                       # folder or synthetic:KIND[:N]; null = the model's run data
    seed: 42
    steps:
      - {step: prune, sparsity: 0.5, epochs: 4}
      - {step: qat, epochs: 3, preserve_sparsity: true}
      - {step: convert, mode: int8, max_dice_drop: 0.01}

(``{step: cluster, clusters: 16, epochs: 3}`` after ``prune`` limits each kernel to 16 values
and keeps the zeros; see ``configs/recipes/edge_int8_compressed.yaml``)

writes::

    RUN/recipe.yaml                the resolved recipe
    RUN/01_prune/pruned.h5         each step's model, report and metrics.json
    RUN/02_qat/qat.h5
    RUN/03_convert/model.int8.tflite (+ .json/.md card when kseg.export resolves the data)
    RUN/summary.json, RUN/summary.md  every step's settings and metrics, in order

Step keys are the keyword arguments of the ``run_*`` functions in :mod:`kseg.optimize.steps`,
their fine-tuning budget (``**fit``) included (``train`` takes ``config`` and ``overrides`` for
``kseg.training.train``); unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from kseg.atomic import write_json, write_text
from kseg.errors import ConfigError, KsegError

_TOP_KEYS = ("name", "description", "model", "data", "seed", "steps")


def _step_functions() -> dict[str, Any]:
    from kseg.optimize import steps

    return {
        "distill": steps.run_distill,
        "prune": steps.run_prune,
        "cluster": steps.run_cluster,
        "qat": steps.run_qat,
        "convert": steps.run_convert,
    }


_NOT_SETTINGS = {"model", "teacher", "data", "out_dir", "model_path", "data_arg", "steps", "seed"}


def step_keys(step: str) -> list[str]:
    """A step's own keyword arguments, then the fine-tuning budget it takes (its ``**fit``)."""
    if step == "train":
        return ["config", "overrides"]
    from kseg.optimize.steps import fit_keys

    params = inspect.signature(_step_functions()[step]).parameters.values()
    own = [p.name for p in params if p.kind is not p.VAR_KEYWORD]
    fit = list(fit_keys(step)) if any(p.kind is p.VAR_KEYWORD for p in params) else []
    return [k for k in own + fit if k not in _NOT_SETTINGS]


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read and validate a recipe (keys, step names, step options)."""
    from kseg.config import read_yaml

    raw = read_yaml(path)
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate_recipe(raw, source=str(path))


def validate_recipe(raw: dict[str, Any], *, source: str = "recipe") -> dict[str, Any]:
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(
                f"{source}: unknown recipe key {key!r}; valid: {', '.join(_TOP_KEYS)}"
            )
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError(
            f"{source}: 'steps' must be a non-empty list, e.g. [{{step: qat, epochs: 3}}]"
        )
    valid_steps = ["train", *_step_functions()]
    out_steps = []
    for i, item in enumerate(steps):
        if not isinstance(item, dict) or "step" not in item:
            raise ConfigError(
                f"{source}: steps[{i}] must be a mapping with a 'step' key ({', '.join(valid_steps)})"
            )
        name = str(item["step"])
        if name not in valid_steps:
            raise ConfigError(
                f"{source}: steps[{i}].step = {name!r}; valid: {', '.join(valid_steps)}"
            )
        keys = step_keys(name)
        for key in item:
            if key != "step" and key not in keys:
                raise ConfigError(
                    f"{source}: steps[{i}] ({name}) has no option {key!r}; valid: {', '.join(keys)}"
                )
        if name == "train" and "config" not in item:
            raise ConfigError(f"{source}: steps[{i}] (train) needs 'config: path/to/config.yaml'")
        out_steps.append(dict(item))
    if raw.get("model") is None and out_steps[0]["step"] != "train":
        raise ConfigError(
            f"{source}: no model; set 'model:' in the recipe, pass --model, or start with a train step"
        )
    return {
        "name": str(raw.get("name") or Path(source).stem),
        "description": str(raw.get("description") or ""),
        "model": raw.get("model"),
        "data": raw.get("data"),
        "seed": int(raw.get("seed", 42)),
        "steps": out_steps,
    }


def run_recipe(recipe: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Run every step in order; each writes into ``out_dir/NN_step``. Returns the summary.

    A failed parity gate in a ``convert`` step is recorded (``passed: false``) and re-raised after
    the summary is written, so the command exits non-zero with every artifact kept.
    """
    import yaml

    from kseg.models import load_model
    from kseg.optimize import steps as S

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))
    seed = recipe["seed"]
    data_arg = recipe.get("data")
    model_path: Path | None = Path(recipe["model"]) if recipe.get("model") else None
    if data_arg is None and model_path is not None:
        from kseg.training.rundir import find_run_dir

        source_run = find_run_dir(model_path)
        # later steps write models outside that run: keep pointing at its data and split
        data_arg = str(source_run.root) if source_run is not None else None
    elif data_arg is not None and model_path is not None:
        data_arg = _faithful_data(model_path, str(data_arg))
    model = load_model(model_path) if model_path is not None else None
    data = None
    records: list[dict[str, Any]] = []
    failure: KsegError | None = None
    summary: dict[str, Any] = {
        "name": recipe["name"],
        "source_model": str(model_path) if model_path else None,
        "data": None,
        "steps": records,
    }
    for i, item in enumerate(recipe["steps"], start=1):
        name = item["step"]
        opts = {k: v for k, v in item.items() if k != "step"}
        step_dir = out_dir / f"{i:02d}_{name}"
        if name == "train":
            from kseg.config import load_config
            from kseg.training import train

            cfg = load_config(opts["config"], opts.get("overrides") or {})
            metrics = train(cfg, step_dir)
            model_path = step_dir / "best.keras"
            model = load_model(model_path)
            if recipe.get("data") is None:
                data_arg = str(step_dir)  # the new run's data and split
            records.append(
                {
                    "step": "train",
                    "settings": {"config": str(opts["config"]), **(opts.get("overrides") or {})},
                    "model": str(model_path),
                    "metrics": {"after": metrics},
                }
            )
            data = None
            continue
        if data is None:
            data, desc = S.load_data(model_path, model, data_arg, seed=seed)
            summary["data"] = {"description": desc, **data.describe()}
        if name == "convert":
            try:
                result = S.run_convert(
                    model,
                    model_path,
                    data,
                    step_dir,
                    data_arg=data_arg,
                    steps=records,
                    seed=seed,
                    **opts,
                )
                result.record["passed"] = True
            except KsegError as exc:
                if type(exc).__name__ != "ParityError":
                    raise
                failure = exc
                result = S.StepResult(
                    None,
                    step_dir / f"model.{opts.get('mode', 'int8')}.tflite",
                    {"step": "convert", "settings": opts, "passed": False, "error": str(exc)},
                )
            records.append(result.record)
            continue
        fn = {
            "distill": S.run_distill,
            "prune": S.run_prune,
            "cluster": S.run_cluster,
            "qat": S.run_qat,
        }[name]
        result = fn(model, data, step_dir, seed=seed, **opts)
        records.append(result.record)
        model, model_path = result.model, result.path
    write_json(out_dir / "summary.json", summary)
    write_text(out_dir / "summary.md", render_summary(summary))
    if failure is not None:
        raise failure
    return summary


def _faithful_data(model_path: Path, data_arg: str) -> str:
    """The source model's run directory when ``data_arg`` is the folder that run trained on (same
    path and files): later steps write models outside the run and must keep its split."""
    from kseg.training.rundir import find_run_dir, folder_mismatch

    run = find_run_dir(model_path)
    if (
        run is None
        or data_arg.startswith("synthetic:")
        or (Path(data_arg) / "config.yaml").is_file()
    ):
        return data_arg
    from kseg.config import load_run_config

    return (
        str(run.root)
        if folder_mismatch(run, load_run_config(run.config), data_arg) is None
        else data_arg
    )


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def render_summary(summary: dict[str, Any]) -> str:
    lines = [f"# Recipe {summary['name']}", ""]
    if summary.get("source_model"):
        lines.append(f"Source model: `{summary['source_model']}`")
    if summary.get("data"):
        lines.append(
            f"Data: {summary['data'].get('description')} (train {summary['data'].get('train')}, val {summary['data'].get('val')})"
        )
        warning = (summary["data"].get("provenance") or {}).get("warning")
        if warning:
            lines.append(f"\n**Warning: {warning}.**")
    lines += ["", "| # | step | settings | validation Dice | artifact |", "|---|---|---|---|---|"]
    for i, rec in enumerate(summary["steps"], start=1):
        settings = ", ".join(
            f"{k}={_fmt(v)}"
            for k, v in (rec.get("settings") or {}).items()
            if not isinstance(v, dict)
        )
        m = rec.get("metrics") or {}
        if rec["step"] == "convert" and "tflite" in m:
            dice = f"float {_fmt(m['float']['dice'])} -> tflite {_fmt(m['tflite']['dice'])} (drop {_fmt(m['dice_drop'])})"
        elif rec["step"] == "distill" and "student" in m:
            dice = f"teacher {_fmt(m['teacher']['dice'])}, student {_fmt(m['student']['dice'])}, alone {_fmt(m['baseline']['dice'])}"
        elif "after" in m and isinstance(m["after"], dict) and "dice" in m["after"]:
            before = m.get("before", {}).get("dice")
            dice = (f"{_fmt(before)} -> " if before is not None else "") + _fmt(m["after"]["dice"])
        else:
            dice = "failed" if rec.get("passed") is False else ""
        lines.append(f"| {i} | {rec['step']} | {settings} | {dice} | `{rec.get('model', '')}` |")
    return "\n".join(lines) + "\n"
