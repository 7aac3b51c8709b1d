"""The pipeline every exporter (``.tflite``, ``.onnx``) shares: data, calibration, parity, card.

An exporter loads the model, asks :func:`prepare_export` for its parity and calibration images,
converts, and hands the bytes to :meth:`ExportInputs.write_and_check` (atomic write, opened with
:mod:`kseg.runtime`, Dice parity against the Keras model); its card takes the sections that do
not depend on the format from here (:func:`source_card`, :func:`file_card`,
:meth:`ExportInputs.pixel_contract`, ``data``, ``calibration``), and :func:`write_gated_card`
writes it and applies the gate.

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

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from kseg.errors import ConfigError
from kseg.export.card import gzip_size, sha256_bytes, sha256_file, write_card
from kseg.export.parity import (
    ParityError,
    ParityResult,
    check_parity,
    failure_message,
    rename_candidate,
)
from kseg.training.rundir import resolve_data


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

    def check(self, model, candidate, out: Path, **kw) -> ParityResult:
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

    def write_and_check(
        self, model, out: Path, data: bytes, *, kind: str = "tflite"
    ) -> tuple[Any, ParityResult]:
        """Write the exported ``data`` to ``out`` atomically, open it with :mod:`kseg.runtime` and
        :meth:`check` it against ``model``. Returns ``(predictor, result)``; the result's summary
        names the file's scores ``KIND_dice``, ``KIND_iou`` (``kind``: ``tflite``, ``onnx``)."""
        from kseg.atomic import write_bytes
        from kseg.runtime import open_model

        write_bytes(out, data)
        candidate = open_model(out)
        checked = self.check(model, candidate, out, candidate_name=kind)
        return candidate, dataclasses.replace(
            checked, summary=rename_candidate(checked.summary, kind)
        )

    def pixel_contract(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The card's ``input`` fields every format shares: raw pixels in [0, 255], normalized
        inside the model (``spec``: :func:`kseg.models.model_spec`), resized the run's way, the
        scale it was trained at (tiling) and the flips its training applied (test-time flips)."""
        from kseg.runtime.keras_model import native_scale, trained_flips

        return {
            "pixel_range": [0, 255],
            "normalization": {
                "mean": list(spec.get("mean", self.config.data.mean)),
                "std": list(spec.get("std", self.config.data.std)),
                "applied": "in_model",
            },
            "resize": str(self.config.data.resize),
            "native_scale": native_scale(self.config.data),
            "flips": trained_flips(self.config.data),
        }

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
        """The card's ``data`` section: the parity images, where their split came from and the data
        set they belong to (``source``: its folder, or the synthetic generator)."""
        val = self.splits.val
        d = self.resolved.config.data
        return {
            "description": self.resolved.description,
            "source": str(d.path) if d.path else f"synthetic {d.synthetic_kind} n={d.synthetic_n}",
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


class ExportData(TypedDict, total=False):
    """What an exporter checks and calibrates with: the keywords every exporter
    (:func:`kseg.export.export_tflite`, :func:`kseg.export.onnx.export_onnx`) takes and hands to
    :func:`prepare_export` unchanged.

    Args:
        data: calibration and parity data: a folder, a run directory or ``synthetic:KIND[:N]``
            (see :func:`kseg.training.rundir.resolve_data`; default: the model's run).
        seed: splits a folder that is not the model's run (default 42).
        max_dice_drop: parity gate; exceeded -> the file and card are written, card marked failed,
            and :class:`ParityError` is raised (default: the run's ``export.max_dice_drop``;
            a negative value disables the gate).
        representative_samples: calibration images (default: ``export.representative_samples``).
        calibration: calibration images (N, S, S, C) uint8 to use instead of the train split.
    """

    data: str | Path | None
    seed: int
    max_dice_drop: float | None
    representative_samples: int | None
    calibration: np.ndarray | None


def prepare_export(
    model_path: Path,
    model,
    data: str | Path | None = None,
    *,
    seed: int = 42,
    max_dice_drop: float | None = None,
    representative_samples: int | None = None,
    calibration: np.ndarray | None = None,
) -> ExportInputs:
    """Parity data, the gate and calibration images for ``model`` (see the module docstring;
    the arguments after ``model`` are those of :class:`ExportData`).

    The same ``model_path``, ``data`` and ``seed`` give the same calibration images to every
    exporter, so a ``.tflite`` and an ``.onnx`` of one model are calibrated identically.
    """
    from kseg.data.pipeline import grid_tiles, load_splits

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
        native=(patch := str(cfg.data.sampling) == "patch"),
    )
    what = "images"
    if patch:  # trained on native-resolution windows: calibrate and check on such windows
        size = int(model.input_shape[1])
        splits = dataclasses.replace(
            splits, train=grid_tiles(splits.train, size), val=grid_tiles(splits.val, size)
        )
        what = f"native-resolution {size} px windows (data.sampling: patch)"
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
            f"{len(calibration)} {what} from the train split of {resolved.description}"
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


def file_card(path: Path, data: bytes) -> dict[str, Any]:
    """The exported file's fields of its card section: path, sha256, size and gzip size."""
    return {
        "path": str(path),
        "sha256": sha256_bytes(data),
        "size_bytes": len(data),
        "gzip_bytes": gzip_size(data),
    }


def source_card(model_path: Path, model, spec: dict[str, Any]) -> dict[str, Any]:
    """The card's ``source`` section: the Keras model the file was converted from."""
    from kseg.models.complexity import count_macs, count_params

    return {
        "path": str(model_path),
        "sha256": sha256_file(model_path) if model_path.is_file() else None,
        "name": spec.get("name", model.name),
        "options": spec.get("options", {}),
        "params": int(count_params(model)),
        "macs": int(count_macs(model)),
    }


def write_gated_card(
    card: dict[str, Any],
    out: Path,
    parity: dict[str, Any],
    *,
    kind: str,
    max_dice_drop: float | None,
    hint: str,
) -> dict[str, Any]:
    """End ``card`` with the parity figures (``float_dice``, ``KIND_dice``, ``dice_drop``,
    ``size_bytes``, ``parity``), write ``FILE.json``/``FILE.md`` beside ``out``, and apply the
    gate.

    Raises:
        ParityError: the gate failed; the file and its card (marked failed) are kept for review,
            and the message ends with ``hint`` (what to try).
    """
    card.update(
        {
            "float_dice": parity["float_dice"],
            f"{kind}_dice": parity[f"{kind}_dice"],
            "dice_drop": parity["dice_drop"],
            "size_bytes": card[kind]["size_bytes"],
            "parity": parity,
        }
    )
    write_card(card, out)
    if parity["passed"] is False:
        raise ParityError(f"{failure_message(parity, out, max_dice_drop)} ({hint})")
    return card


def _num_classes(model) -> int:
    """Segmentation classes of a kseg model (1 for binary and for denoisers)."""
    from kseg.models import model_spec

    spec = model_spec(model)
    return int(spec.get("num_classes", 1)) if spec.get("task", "segment") == "segment" else 1


__all__ = [
    "ExportData",
    "ExportInputs",
    "file_card",
    "prepare_export",
    "source_card",
    "write_gated_card",
]
