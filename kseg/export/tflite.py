"""``export_tflite``: model file -> ``.tflite`` + parity check + model card, in one call.

Calibration and parity data are found the way a user expects:

1. ``data=DIR``: the model's run's saved split when that run trained on ``DIR`` (same resolved
   path and files); else the folder split by group with the seed, and the card warns that the
   parity images may include training images;
2. else the run directory that holds the model (``RUN/best.keras``): its config and saved split;
3. else the embedded synthetic set for the model's channel count (said so in the card).

Calibration images come only from the training split; the card records the split's provenance
(run, seed, sha256 of the file list, split, number of images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kseg.config import IODType
from kseg.errors import ConfigError
from kseg.export.card import CARD_FORMAT, gzip_size, sha256_bytes, sha256_file, write_card
from kseg.export.convert import MODE_DESCRIPTIONS, Mode, convert_model
from kseg.export.parity import ParityError, check_parity, failure_message
from kseg.training.rundir import resolve_data


def default_out(model_path: Path, mode: Mode, io_dtype: IODType) -> Path:
    tag = "uint8" if mode is Mode.INT8 and io_dtype is IODType.UINT8 else str(mode)
    return model_path.with_name(f"{model_path.stem}.{tag}.tflite")


def export_tflite(
    model_path: str | Path,
    mode: Mode | str = Mode.FLOAT32,
    *,
    data: str | Path | None = None,
    out: str | Path | None = None,
    io_dtype: IODType | str | None = None,
    max_dice_drop: float | None = None,
    representative_samples: int | None = None,
    seed: int = 42,
    steps: list[dict[str, Any]] | None = None,
    model=None,
    calibration: np.ndarray | None = None,
    select_threshold: bool = True,
) -> dict[str, Any]:
    """Convert ``model_path``, check it against the Keras model, and write the card.

    Args:
        model_path: ``.keras`` / ``.h5`` / SavedModel (float, QAT or pruned).
        mode: a :class:`~kseg.export.convert.Mode`.
        data: calibration and parity data: a folder, a run directory or ``synthetic:KIND[:N]``
            (see :func:`kseg.training.rundir.resolve_data`; default: the model's run).
        out: the ``.tflite`` path (default: beside the model, ``best.int8.tflite``).
        io_dtype: ``int8``/``uint8`` input and output for ``int8`` (default: ``export.io_dtype``);
            given as ``uint8`` with a float mode: uint8 input cast inside the graph.
        max_dice_drop: parity gate; exceeded -> the file and card are written, card marked failed,
            and :class:`ParityError` is raised (default: the run's ``export.max_dice_drop``;
            a negative value disables the gate).
        representative_samples: calibration images (default: ``export.representative_samples``).
        steps: earlier optimization steps (distill, prune, qat) recorded in the card.
        model: an already-loaded model (skips loading ``model_path``).
        calibration: calibration images (N, S, S, C) uint8 to use instead of the train split.
        select_threshold: choose the threshold with the best Dice of the ``.tflite`` on the
            validation split (grid 0.05..0.95) and store it as the card's ``output.threshold``
            (one-class models); ``False`` keeps the training threshold.

    Returns:
        The card dict (also written as ``FILE.json`` and ``FILE.md``).
    """
    from kseg.models import load_model, model_spec
    from kseg.models.complexity import count_macs, count_params
    from kseg.runtime import open_model
    from kseg.runtime.keras_model import native_scale, trained_flips

    model_path = Path(model_path)
    mode = Mode(mode)
    if out is not None and Path(out).suffix != ".tflite":
        raise ConfigError(f"--out {out}: use a file name ending in .tflite")
    if model is None:
        model = load_model(model_path)
    prep = prepare_export(
        model_path,
        model,
        data,
        seed=seed,
        max_dice_drop=max_dice_drop,
        representative_samples=representative_samples,
        calibration=calibration,
    )
    cfg, splits, chain, calibration = prep.config, prep.splits, prep.chain, prep.calibration
    # a float mode takes uint8 input only when the caller asks (the run config speaks for int8)
    float_uint8_input = mode is not Mode.INT8 and io_dtype is not None
    io_dtype = IODType(io_dtype or cfg.export.io_dtype)
    convert_io = io_dtype if mode is Mode.INT8 or float_uint8_input else IODType.INT8
    out = Path(out) if out else default_out(model_path, mode, io_dtype)

    flatbuffer = convert_model(model, mode, representative=calibration, io_dtype=convert_io)
    from kseg.atomic import write_bytes

    write_bytes(out, flatbuffer)

    threshold = cfg.train.threshold
    candidate = open_model(out)
    checked = prep.check(model, candidate, out)
    parity = checked.summary
    selection = None
    if select_threshold and checked.candidate_probs is not None:
        if checked.candidate_probs.shape[-1] == 1:
            from kseg.inference.threshold import choose_threshold

            selection = choose_threshold(
                checked.candidate_probs, splits.val.masks, default=threshold
            ).to_dict()
            selection["split"] = f"val of {prep.resolved.description}"

    facts = graph_facts(out)
    spec = model_spec(model)
    desc = candidate.describe()
    card = {
        "format": CARD_FORMAT,
        "tflite": {
            "path": str(out),
            "sha256": sha256_bytes(flatbuffer),
            "size_bytes": len(flatbuffer),
            "gzip_bytes": gzip_size(flatbuffer),
            "mode": str(mode),
            "description": MODE_DESCRIPTIONS[mode],
            **facts,
        },
        "source": {
            "path": str(model_path),
            "sha256": sha256_file(model_path) if model_path.is_file() else None,
            "name": spec.get("name", model.name),
            "options": spec.get("options", {}),
            "params": int(count_params(model)),
            "macs": int(count_macs(model)),
        },
        "input": {
            "shape": desc["input_shape"],
            "dtype": desc["input_dtype"],
            "scale": desc["input_scale"],
            "zero_point": desc["input_zero_point"],
            "pixel_range": [0, 255],
            "normalization": {
                "mean": list(spec.get("mean", cfg.data.mean)),
                "std": list(spec.get("std", cfg.data.std)),
                "applied": "in_model",
            },
            "resize": str(cfg.data.resize),
            "native_scale": native_scale(cfg.data),
            "flips": trained_flips(cfg.data),
            "channels": desc["input_shape"][-1],
            "preprocess": chain.to_list(),
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
        "float_dice": parity["float_dice"],
        "tflite_dice": parity["tflite_dice"],
        "dice_drop": parity["dice_drop"],
        "size_bytes": len(flatbuffer),
        "parity": parity,
    }
    write_card(card, out)
    if parity["passed"] is False:
        raise ParityError(
            failure_message(parity, out, prep.max_dice_drop)
            + " (try QAT or more calibration images)"
        )
    return card


@dataclass(frozen=True)
class ExportInputs:
    """What every exporter (TFLite, ONNX) checks and calibrates with, chosen the same way."""

    resolved: Any  # kseg.training.rundir.ModelData
    config: Any  # kseg.config.Config
    splits: Any  # kseg.data.pipeline.Splits
    max_dice_drop: float | None
    calibration: np.ndarray
    calibration_desc: str
    calibration_names: list[str] | None = None  # None: images given by the caller
    chain: Any = None  # kseg.filters.Chain: the run's filter chain (data.preprocess)

    def check(self, model, candidate, out: Path, **kw):
        """Dice parity of ``candidate`` against the Keras ``model`` on the validation images.

        Both see raw images and apply the run's filter chain themselves, as ``kseg predict``
        does; ``candidate.filters`` is set because its card (written after) records the chain.
        """
        from kseg.runtime import KerasPredictor

        threshold = self.config.train.threshold
        reference = KerasPredictor(
            model,
            threshold=threshold,
            resize_mode=str(self.config.data.resize),
            preprocess=self.chain,
        )
        candidate.filters = self.chain
        val = self.splits.val
        return check_parity(
            reference,
            candidate,
            val.images,
            val.masks,
            list(val.names),
            threshold=threshold,
            max_dice_drop=self.max_dice_drop,
            review_png=out.with_name(out.stem + ".parity.png"),
            class_names=self.class_names(int(model.output_shape[-1])),
            **kw,
        )

    def class_names(self, k: int) -> list[str]:
        """Names of a ``k``-output model's classes, index = class id (the run's ``data.classes``
        when its ``model.num_classes`` is ``k``, else ``background, class_1, ...``)."""
        from kseg.config import class_names

        if self.config.model.num_classes == k:
            return list(class_names(self.config))
        if k == 1:
            return ["background", "foreground"]
        return ["background", *(f"class_{c}" for c in range(1, k))]

    def output_classes(self, k: int) -> dict[str, Any]:
        """The card's ``output.classes`` (names, index = class id) and ``output.decision``:
        ``threshold`` (``p > threshold``) for one output channel, ``argmax`` for K > 1."""
        return {"classes": self.class_names(k), "decision": "threshold" if k == 1 else "argmax"}

    def data_card(self) -> dict[str, Any]:
        """The card's ``data`` section: the parity images and where their split came from."""
        val = self.splits.val
        return {
            "description": self.resolved.description,
            "n_val": len(val.images),
            "provenance": self.resolved.provenance(self.splits, "val"),
            "names": list(val.names),
        }

    def calibration_card(self) -> dict[str, Any]:
        """The card's ``calibration`` section (images, hash, names and provenance)."""
        return {
            "description": self.calibration_desc,
            "n_images": len(self.calibration),
            "sha256": sha256_bytes(np.ascontiguousarray(self.calibration).tobytes()),
            "names": self.calibration_names,
            "provenance": self.resolved.provenance(self.splits, "train")
            if self.calibration_names is not None
            else None,
        }


def prepare_export(
    model_path: Path,
    model,
    data: str | Path | None,
    *,
    seed: int = 42,
    max_dice_drop: float | None = None,
    representative_samples: int | None = None,
    calibration: np.ndarray | None = None,
) -> ExportInputs:
    """Parity data, the gate and calibration images for ``model`` (see :func:`export_tflite`).

    The same ``model_path``, ``data`` and ``seed`` give the same calibration images to every
    exporter, so a ``.tflite`` and an ``.onnx`` of one model are calibrated identically.
    """
    from kseg.data.pipeline import load_splits

    resolved = resolve_data(
        model_path, int(model.input_shape[1]), int(model.input_shape[3]), data, seed=seed
    )
    cfg = resolved.config
    if max_dice_drop is None:
        max_dice_drop = cfg.export.max_dice_drop
    if max_dice_drop is not None and max_dice_drop < 0:
        max_dice_drop = None
    representative_samples = representative_samples or cfg.export.representative_samples
    # the run's own seed regenerates the same synthetic images it was trained and validated on
    seed = resolved.seed
    # raw images: both predictors apply the run's filter chain themselves (parity sees the same
    # pixels as `kseg predict`); calibration images are filtered here, as training saw them
    splits = load_splits(
        cfg.data,
        seed=seed,
        split_file=resolved.split_file,
        progress=False,
        preprocess=False,
        num_classes=_num_classes(model),  # class-id masks stay class ids
    )
    from kseg.filters import Chain

    chain = Chain.parse(cfg.data.preprocess)
    if len(splits.val.images) == 0:
        raise ConfigError(f"{resolved.description}: no validation images for the parity check")
    calibration_names: list[str] | None = None
    if calibration is None:  # only ever the training split: parity images stay unseen
        pool = splits.train
        if len(pool.images) == 0:
            raise ConfigError(
                f"{resolved.description}: no training images to calibrate on; "
                "pass a folder with more images or another --data"
            )
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.permutation(len(pool.images))[:representative_samples])
        calibration = chain(pool.images[idx]) if chain else pool.images[idx]
        calibration_names = [pool.names[i] for i in idx]
        calibration_desc = (
            f"{len(calibration)} images from the train split of {resolved.description}"
        )
    else:
        calibration_desc = f"{len(calibration)} images given by the caller"
    return ExportInputs(
        resolved,
        cfg,
        splits,
        max_dice_drop,
        calibration,
        calibration_desc,
        calibration_names,
        chain,
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


def _num_classes(model) -> int:
    """Segmentation classes of a kseg model (1 for binary and for denoisers)."""
    from kseg.models import model_spec

    spec = model_spec(model)
    return int(spec.get("num_classes", 1)) if spec.get("task", "segment") == "segment" else 1


__all__ = ["ExportInputs", "ParityError", "export_tflite", "graph_facts", "prepare_export"]
