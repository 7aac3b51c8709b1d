"""``export_tflite``: model file -> ``.tflite`` + parity check + model card, in one call.

Calibration and parity data are chosen as for every exporter (:mod:`kseg.export.pipeline`): the
model's run's split, or the folder / synthetic set given as ``data``; calibration images come only
from the training split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Unpack

from kseg.config import IODType
from kseg.errors import ConfigError
from kseg.export.card import CARD_FORMAT
from kseg.export.convert import MODE_DESCRIPTIONS, Mode, convert_model
from kseg.export.parity import ParityError
from kseg.export.pipeline import (
    ExportData,
    ExportInputs,
    _num_classes,  # noqa: F401  (its old import path)
    file_card,
    prepare_export,
    source_card,
    write_gated_card,
)


def default_out(model_path: Path, mode: Mode, io_dtype: IODType) -> Path:
    tag = "uint8" if mode is Mode.INT8 and io_dtype is IODType.UINT8 else str(mode)
    return model_path.with_name(f"{model_path.stem}.{tag}.tflite")


def export_tflite(
    model_path: str | Path,
    mode: Mode | str = Mode.FLOAT32,
    *,
    out: str | Path | None = None,
    io_dtype: IODType | str | None = None,
    steps: list[dict[str, Any]] | None = None,
    model=None,
    select_threshold: bool = True,
    **data_args: Unpack[ExportData],
) -> dict[str, Any]:
    """Convert ``model_path``, check it against the Keras model, and write the card.

    Args:
        model_path: ``.keras`` / ``.h5`` / SavedModel (float, QAT or pruned).
        mode: a :class:`~kseg.export.convert.Mode`.
        out: the ``.tflite`` path (default: beside the model, ``best.int8.tflite``).
        io_dtype: ``int8``/``uint8`` input and output for ``int8`` (default: ``export.io_dtype``);
            given as ``uint8`` with a float mode: uint8 input cast inside the graph.
        steps: earlier optimization steps (distill, prune, qat) recorded in the card.
        model: an already-loaded model (skips loading ``model_path``).
        select_threshold: choose the threshold with the best Dice of the ``.tflite`` on the
            validation split (grid 0.05..0.95) and store it as the card's ``output.threshold``
            (one-class models); ``False`` keeps the training threshold.
        **data_args: what it checks and calibrates with, as keywords: ``data``, ``seed``,
            ``max_dice_drop``, ``representative_samples``, ``calibration``
            (:class:`~kseg.export.pipeline.ExportData`).

    Returns:
        The card dict (also written as ``FILE.json`` and ``FILE.md``).
    """
    from kseg.models import load_model, model_spec

    model_path = Path(model_path)
    mode = Mode(mode)
    if out is not None and Path(out).suffix != ".tflite":
        raise ConfigError(f"--out {out}: use a file name ending in .tflite")
    if model is None:
        model = load_model(model_path)
    prep = prepare_export(model_path, model, **data_args)
    cfg, splits, calibration = prep.config, prep.splits, prep.calibration
    # a float mode takes uint8 input only when the caller asks (the run config speaks for int8)
    float_uint8_input = mode is not Mode.INT8 and io_dtype is not None
    io_dtype = IODType(io_dtype or cfg.export.io_dtype)
    convert_io = io_dtype if mode is Mode.INT8 or float_uint8_input else IODType.INT8
    out = Path(out) if out else default_out(model_path, mode, io_dtype)

    flatbuffer = convert_model(model, mode, representative=calibration, io_dtype=convert_io)
    candidate, checked = prep.write_and_check(model, out, flatbuffer)
    threshold = cfg.train.threshold
    selection = None
    if select_threshold and checked.candidate_probs is not None:
        if checked.candidate_probs.shape[-1] == 1:
            from kseg.inference.threshold import choose_threshold

            selection = choose_threshold(
                checked.candidate_probs, splits.val.masks, default=threshold
            ).to_dict()
            selection["split"] = f"val of {prep.resolved.description}"

    spec = model_spec(model)
    desc = candidate.describe()
    card = {
        "format": CARD_FORMAT,
        "tflite": {
            **file_card(out, flatbuffer),
            "mode": str(mode),
            "description": MODE_DESCRIPTIONS[mode],
            **graph_facts(out),
        },
        "source": source_card(model_path, model, spec),
        "input": {
            "shape": desc["input_shape"],
            "dtype": desc["input_dtype"],
            "scale": desc["input_scale"],
            "zero_point": desc["input_zero_point"],
            **prep.pixel_contract(spec),
            "channels": desc["input_shape"][-1],
            "preprocess": prep.chain.to_list(),
        },
        "output": {
            "shape": desc["output_shape"],
            "dtype": desc["output_dtype"],
            "scale": desc["output_scale"],
            "zero_point": desc["output_zero_point"],
            "activation": "sigmoid" if desc["output_shape"][-1] == 1 else "softmax",
            "threshold": selection["threshold"] if selection else threshold,
            "threshold_source": "validation" if selection else "config",
            **prep.output_classes(desc["output_shape"][-1]),
        },
        "threshold_selection": selection,
        "data": prep.data_card(),
        "calibration": prep.calibration_card(),
        "steps": list(steps or [])
        + [{"step": "convert", "mode": str(mode), "io_dtype": str(convert_io)}],
    }
    return write_gated_card(
        card,
        out,
        checked.summary,
        kind="tflite",
        max_dice_drop=prep.max_dice_drop,
        hint="try QAT or more calibration images",
    )


def graph_facts(tflite_path: Path) -> dict[str, Any]:
    """Op names, whether every op is builtin, and float tensors left inside an integer graph."""
    from kseg.bench.analyze import analyze_model

    info = analyze_model(tflite_path)
    return {
        "ops": sorted(info.op_counts()),
        "builtin_only": not info.custom_ops,
        "float_ops": [f"{op.index}:{op.name}" for op in info.float_ops],
        "dynamic_shape_ops": [f"{op.index}:{op.name}" for op in info.dynamic_ops],
        "tflite_macs": info.total_macs,
    }


__all__ = ["ExportInputs", "ParityError", "export_tflite", "graph_facts", "prepare_export"]
