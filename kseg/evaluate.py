"""Evaluate any predictor (Keras model, TFLite interpreter, ...) on images with ground truth.

:func:`evaluate` scores each image with :mod:`kseg.scores` at the image's own size and writes, in
``out_dir`` (atomically):

- ``metrics.json``: pixel-total ``dice``, ``iou``, ``precision``, ``recall``; per-image means
  ``dice_mean`` ... ``hd95_mean`` (pixels); ``n_images``, ``threshold``, ``num_classes`` and the
  names of the worst cases (lowest Dice first). NaN is written as ``null``.
- ``per_image.csv``: ``name,dice,iou,precision,recall,hd95,tp,fp,fn`` in input order (the pixel
  counts let :func:`compare_evaluations` pair two evaluations).
- ``worst_cases.png``: ``image | truth | prediction`` rows for the ``worst_k`` lowest-Dice images.
- ``contours.png``: the first ``worst_k`` images in input order with the true (dashed) and
  predicted (solid) outlines drawn over them, the quickest look at what the model does.

Multi-class (K > 1): the top-level scores are foreground means (classes ``1..K-1``);
``metrics.json`` adds ``classes`` (names, index = class id), ``per_class`` keyed by class name
(Dice, IoU, precision, recall over all pixels; ``dice_mean``, ``iou_mean``, ``hd95_mean`` over
the images where the class is present; ``n_images``; its ``worst_cases``), ``foreground_mean``
(the mean of each ``per_class`` score over the classes) and ``per_class_convention``: a class
absent from both truth and prediction on an image is skipped there (see :mod:`kseg.scores`).
``per_image.csv`` adds ``dice_NAME,iou_NAME,hd95_NAME`` per class (empty-class cells ``nan``) and
``tp_NAME,fp_NAME,fn_NAME`` in place of ``tp,fp,fn``, and
``worst_cases_NAME.png`` shows each class's lowest-Dice images.

No TensorFlow here: the predictor is a plain callable. :func:`evaluate_model` evaluates a model
file (``.keras``/``.h5`` or ``.tflite``) on its run's data or a folder, at each image's original
size, through :func:`kseg.inference.predict_prob` (the same path and flags as ``kseg predict``).

Example:
    >>> evaluate_model("runs/demo/best.int8.tflite", split="val", out_dir="runs/demo/eval-int8")
"""

from __future__ import annotations

import csv
import heapq
import io
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kseg.atomic import write_json, write_text
from kseg.errors import DataError
from kseg.scores import (
    ABSENT_CLASS_CONVENTION,
    BOOTSTRAP,
    SCORE_KEYS,
    aggregate,
    aggregate_classes,
    binarize,
    bootstrap_dice_difference,
    class_suffixes,
    foreground_mean,
    image_scores,
    label_scores,
    nan_to_none,
    pooled_dice,
)

PredictFn = Callable[[np.ndarray], np.ndarray]
CSV_COLUMNS = ("name", *SCORE_KEYS, "hd95")
COUNT_KEYS = ("tp", "fp", "fn")
#: one ``kseg evaluate`` output folder, or the folders of several runs of one recipe
Folders = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def evaluate(
    predict_fn: PredictFn,
    items: Iterable[tuple[str, np.ndarray, np.ndarray]],
    out_dir: str | os.PathLike[str],
    *,
    threshold: float = 0.5,
    worst_k: int = 8,
    spacing: float = 1.0,
    postprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    sweep_thresholds: bool = True,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score ``predict_fn`` on ``items`` and write the evaluation files.

    Args:
        predict_fn: ``image (H, W[, C]) uint8 -> probabilities (H, W)`` or ``(H, W, K)`` at the
            image's own size (K = 1 sigmoid, K > 1 softmax, then the truth holds labels 0..K-1).
        items: ``(name, image, true_mask)`` with ``true_mask`` uint8 ``(H, W)``.
        out_dir: folder for ``metrics.json``, ``per_image.csv``, ``worst_cases.png``,
            ``contours.png``.
        threshold: foreground probability threshold (``p > threshold``) for K = 1.
        worst_k: rows in ``worst_cases.png`` and images in ``contours.png`` (0: no figures).
        spacing: pixel spacing for HD95 (1.0: pixels).
        postprocess: ``label mask -> label mask`` applied after thresholding (the options of
            :func:`kseg.inference.postprocess`), so scores match what ``kseg predict`` writes.
        sweep_thresholds: for one-class models, also report the threshold with the best Dice on
            these images (``threshold_selection``, raw probabilities, no postprocessing).
        class_names: K names, index = class id (:func:`kseg.config.class_names`) for the
            per-class results of a K > 1 predictor; default ``background, class_1, ...``.

    Returns:
        The contents of ``metrics.json`` (with NaN kept as float NaN).
    """
    out = Path(out_dir)
    rows: list[dict[str, Any]] = []
    worst: list[tuple[float, int, str, np.ndarray, np.ndarray, np.ndarray]] = []
    worst_by_class: dict[int, list[tuple[float, int, str, np.ndarray, np.ndarray, np.ndarray]]] = {}
    num_classes: int | None = None
    sweep = None
    first: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []  # for contours.png
    for index, (name, image, true) in enumerate(items):
        true = np.asarray(true)
        if true.ndim == 3 and true.shape[-1] == 1:
            true = true[..., 0]
        prob = np.asarray(predict_fn(image))
        if prob.shape[:2] != true.shape[:2]:
            raise DataError(
                f"{name}: prediction size {prob.shape[:2]} != mask size {true.shape[:2]}; "
                "predict_fn must return probabilities at the image's own size (see resized_predictor)"
            )
        k = int(prob.shape[-1]) if prob.ndim == 3 else 1
        if num_classes is None:
            num_classes = k
        elif k != num_classes:
            raise DataError(
                f"{name}: predictor returned {k} channels, earlier images {num_classes}"
            )
        pred = binarize(prob, threshold)
        if postprocess is not None:
            pred = postprocess(np.asarray(pred, np.uint8))
        if sweep_thresholds and k == 1:
            if sweep is None:
                from kseg.inference.threshold import ThresholdSweep

                sweep = ThresholdSweep(default=threshold)
            sweep.add(prob, true)
        if k == 1:
            scores = image_scores(pred, true > 0, spacing)
        else:
            scores = label_scores(pred, true, k, spacing)
        rows.append({"name": str(name), **scores})
        if worst_k > 0:
            pred8 = np.asarray(pred, np.uint8)
            if len(first) < worst_k:
                first.append((f"{name}  dice={scores['dice']:.3f}", np.asarray(image), true, pred8))
            _keep_worst(worst, worst_k, scores["dice"], index, str(name), image, true, pred8)
            for c, cs in enumerate(scores.get("per_class", ()), start=1):
                if not math.isnan(cs["dice"]):  # a class absent here is not one of its worst
                    heap = worst_by_class.setdefault(c, [])
                    _keep_worst(heap, worst_k, cs["dice"], index, str(name), image, true, pred8)
    if not rows:
        raise DataError(f"nothing to evaluate for {out}: no images with masks were given")

    k = int(num_classes or 1)
    result = aggregate(rows)
    worst_sorted = _sorted_worst(worst)
    result.update(
        {
            "threshold": float(threshold),
            "num_classes": k,
            "worst_cases": [e[2] for e in worst_sorted],
        }
    )
    names: list[str] = []
    if k > 1:
        names = list(class_names) if class_names is not None and len(class_names) == k else []
        names = names or ["background", *(f"class_{c}" for c in range(1, k))]
        per_class = aggregate_classes(rows, names)
        for c, name in enumerate(names[1:], start=1):
            per_class[name]["worst_cases"] = [
                e[2] for e in _sorted_worst(worst_by_class.get(c, []))
            ]
        result.update(
            {
                "decision": "argmax",
                "classes": names,
                "per_class": per_class,
                "foreground_mean": foreground_mean(per_class),
                "per_class_convention": ABSENT_CLASS_CONVENTION,
            }
        )
    if sweep is not None:
        result["threshold_selection"] = sweep.best().to_dict()
    write_json(out / "metrics.json", nan_to_none(result))
    write_text(out / "per_image.csv", _csv(rows, names))
    figures = [(out / "worst_cases.png", worst_sorted, "dice")]
    for c, suffix in enumerate(class_suffixes(names)[1:], start=1):
        figures.append(
            (out / f"worst_cases_{suffix}.png", _sorted_worst(worst_by_class.get(c, [])), suffix)
        )
    for path, cases, label in figures:
        if cases:
            from kseg.plots import plot_prediction_grid  # matplotlib only when a figure is wanted

            plot_prediction_grid(
                [e[3] for e in cases],
                [e[4] for e in cases],
                [e[5] for e in cases],
                path,
                names=[
                    f"{e[2]}  {'' if label == 'dice' else 'dice_'}{label}={-e[0]:.3f}"
                    for e in cases
                ],
            )
    if first:
        from kseg.plots import plot_contours

        plot_contours(
            [e[1] for e in first],
            [e[2] for e in first],
            [e[3] for e in first],
            out / "contours.png",
            names=[e[0] for e in first],
        )
    return result


_Worst = tuple[float, int, str, np.ndarray, np.ndarray, np.ndarray]


def _keep_worst(
    heap: list[_Worst], k: int, dice: float, index: int, name: str, image, true, pred
) -> None:
    """Keep the ``k`` lowest Dice (ties: earlier first) without holding every image."""
    entry = (-dice, -index, name, np.asarray(image), true, pred)
    if len(heap) < k:
        heapq.heappush(heap, entry)
    elif entry > heap[0]:
        heapq.heapreplace(heap, entry)


def _sorted_worst(heap: list[_Worst]) -> list[_Worst]:
    return sorted(heap, key=lambda e: (-e[0], -e[1]))


def _csv(rows: list[dict[str, Any]], class_names: Sequence[str] = ()) -> str:
    """``CSV_COLUMNS``, then ``dice_NAME,iou_NAME,hd95_NAME`` per foreground class (K > 1), then
    the pixel counts the pooled scores come from: ``tp,fp,fn`` (K = 1) or ``tp_NAME,fp_NAME,
    fn_NAME`` per class (what :func:`compare_evaluations` pairs)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    suffixes = class_suffixes(class_names)[1:] if class_names else []
    extra = [f"{key}_{s}" for s in suffixes for key in ("dice", "iou", "hd95")]
    counts = [f"{key}_{s}" for s in suffixes for key in COUNT_KEYS] or list(COUNT_KEYS)
    writer.writerow([*CSV_COLUMNS, *extra, *counts])
    for r in rows:
        cells = [_fmt(r[k]) for k in CSV_COLUMNS[1:]]
        for cs in r.get("per_class", ())[: len(suffixes)]:
            cells += [_fmt(cs[key]) for key in ("dice", "iou", "hd95")]
        if suffixes:
            cells += [str(int(r[key][j])) for j in range(len(suffixes)) for key in COUNT_KEYS]
        else:
            cells += [str(int(r[key])) for key in COUNT_KEYS]
        writer.writerow([r["name"], *cells])
    return buf.getvalue()


def compare_evaluations(current: Folders, baseline: Folders) -> dict[str, Any]:
    """The pooled Dice of one evaluation against another on the same images, with the paired
    bootstrap interval of the difference (:func:`kseg.scores.bootstrap_dice_difference`).

    Args:
        current, baseline: ``kseg evaluate`` output folders (their ``per_image.csv``) of two
            models on the same images (same names; the order may differ) and the same classes.
            Either may be a list of folders, the runs of one recipe (e.g. training seeds): their
            pixel counts are summed per image, so the Dice is pooled over the runs as well, and
            each draw of images counts every run of both recipes on it.

    Returns:
        ``{baseline, n_images, method, dice: [difference, low, high] (the foreground mean for
        several classes), per_class: {name: {dice, baseline_dice, difference, difference_ci95}}}``
        (``per_class`` only for several classes); a difference is the current minus the baseline.

    Raises:
        DataError: a folder without ``per_image.csv`` or without pixel counts in it (written
            before kseg kept them), other images or other classes.
    """
    cur_names, cur_classes, cur = _read_runs(current)
    base_names, base_classes, base = _read_runs(baseline)
    if cur_classes != base_classes:
        raise DataError(
            f"{baseline}: classes {base_classes or ['foreground']} are not those of this "
            f"evaluation {cur_classes or ['foreground']}; compare models of the same classes"
        )
    if sorted(cur_names) != sorted(base_names):
        missing = sorted(set(cur_names) ^ set(base_names))
        raise DataError(
            f"{baseline}: scored other images ({len(missing)} in one evaluation only, e.g. "
            f"{', '.join(missing[:3])}); evaluate both models on the same split and data"
        )
    base = _in_order(base, base_names, cur_names)
    per_class, mean = bootstrap_dice_difference(cur, base)
    dice, base_dice = pooled_dice(*cur), pooled_dice(*base)
    out: dict[str, Any] = {
        "baseline": str(baseline)
        if isinstance(baseline, (str, os.PathLike))
        else [str(b) for b in baseline],
        "n_images": len(cur_names),
        "method": f"paired {BOOTSTRAP['method']}",
        "dice": [float(v) for v in mean],
    }
    if cur_classes:
        out["per_class"] = {
            name: {
                "dice": float(dice[j]),
                "baseline_dice": float(base_dice[j]),
                "difference": float(per_class[j, 0]),
                "difference_ci95": [float(per_class[j, 1]), float(per_class[j, 2])],
            }
            for j, name in enumerate(cur_classes)
        }
    return out


def _read_runs(folders: Folders) -> tuple[list[str], list[str], tuple[np.ndarray, ...]]:
    """:func:`_read_counts` of one folder, or of several runs on the same images and classes with
    their counts summed per image."""
    if isinstance(folders, (str, os.PathLike)):
        return _read_counts(Path(folders))
    folders = [Path(f) for f in folders]
    if not folders:
        raise DataError("compare_evaluations(): no evaluation folder given")
    names, classes, total = _read_counts(folders[0])
    for folder in folders[1:]:
        other_names, other_classes, counts = _read_counts(folder)
        if other_classes != classes or sorted(other_names) != sorted(names):
            raise DataError(
                f"{folder}: other images or classes than {folders[0]}; the runs of one recipe "
                "must be evaluated on the same split"
            )
        counts = _in_order(counts, other_names, names)
        total = tuple(t + c for t, c in zip(total, counts, strict=True))
    return names, classes, total


def _in_order(counts: tuple[np.ndarray, ...], names: list[str], order: list[str]) -> tuple:
    """Per-image ``counts`` listed by ``names``, rearranged to the image order ``order``."""
    where = {n: i for i, n in enumerate(names)}
    rows = [where[n] for n in order]
    return tuple(a[rows] for a in counts)


def _read_counts(folder: Path) -> tuple[list[str], list[str], tuple[np.ndarray, ...]]:
    """Names, class suffixes (``[]``: one class) and ``(tp, fp, fn)`` ``(N, C)`` of an
    evaluation folder's ``per_image.csv``."""
    path = folder / "per_image.csv" if folder.is_dir() else folder
    if not path.is_file():
        raise DataError(f"{folder}: no per_image.csv; give a kseg evaluate output folder")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0]) if rows else []
    classes = [h[len("tp_") :] for h in header if h.startswith("tp_")]
    columns = [[f"{k}_{c}" for c in classes] or [k] for k in COUNT_KEYS]
    if not rows or any(c not in header for cols in columns for c in cols):
        raise DataError(
            f"{path}: no pixel counts (tp, fp, fn) per image; evaluate that model again with "
            "this kseg version to compare with it"
        )
    counts = tuple(
        np.array([[float(r[c]) for c in cols] for r in rows], np.float64) for cols in columns
    )
    return [r["name"] for r in rows], classes, counts


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.6f}"


__all__ = [
    "evaluate",
    "evaluate_model",
    "compare_evaluations",
    "store_model_threshold",
    "CSV_COLUMNS",
]


def evaluate_model(
    model_path: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    split: str = "val",
    out_dir: str | os.PathLike[str],
    runtime: str = "auto",
    worst_k: int = 8,
    options=None,
    store_threshold: bool = False,
    baseline: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Evaluate a saved model on a split of its data (see :func:`kseg.training.rundir.resolve_data`).

    Folder data is scored at each image's original size (HD95 in original pixels); synthetic data at
    its generated size. ``split`` is ``val``, ``test`` or ``all``. Images go through the same path
    as ``kseg predict`` (:func:`kseg.inference.predict_prob` with ``options``: tiling, flips; then
    the threshold and postprocessing of ``options``).

    ``store_threshold`` (``split="val"`` only) stores the threshold with the best validation Dice
    for the model: in the card of a ``.tflite``, in ``MODEL.threshold.json`` beside a Keras model;
    ``kseg predict`` and ``kseg serve`` then use it by default.

    ``baseline``: an earlier ``kseg evaluate`` folder of another model on the same images; the
    result's ``baseline`` then holds the pooled Dice difference with its paired bootstrap
    interval (:func:`compare_evaluations`).
    """
    from kseg.data.folder import scan_folder
    from kseg.data.io import read_image, read_mask
    from kseg.data.pipeline import load_splits
    from kseg.inference import InferenceOptions, load_predictor, predict_prob
    from kseg.inference.postprocess import needs_postprocess
    from kseg.inference.postprocess import postprocess as clean
    from kseg.inference.segment import model_threshold
    from kseg.runtime import resolve_model_path
    from kseg.training.rundir import resolve_data

    model_path = Path(model_path)
    if not model_path.exists():
        raise DataError(f"{model_path}: model file not found")
    model_path = resolve_model_path(model_path)[0]  # a run directory: its best.keras and config
    if store_threshold and split != "val":
        raise DataError(
            f"--store-threshold chooses the threshold on held-out validation data; use --split val "
            f"(not {split!r})"
        )
    if baseline is not None:
        _read_counts(Path(baseline))  # a bad baseline fails before the images are scored
    opts = options or InferenceOptions()
    predictor = load_predictor(model_path, runtime=runtime, num_threads=None)
    resolved = resolve_data(model_path, predictor.input_size, predictor.channels, data)
    cfg = resolved.config
    # raw images: the predictor applies the run's filter chain (data.preprocess) itself
    splits = load_splits(
        cfg.data,
        seed=resolved.seed,
        split_file=resolved.split_file,
        progress=False,
        preprocess=False,
        num_classes=predictor.num_classes,
    )
    parts = {
        "val": [splits.val],
        "test": [splits.test],
        "all": [splits.train, splits.val, splits.test],
    }
    chosen = [p for p in parts[split] if p is not None and len(p)]
    if not chosen:
        raise DataError(
            f"{resolved.description}: the {split!r} split is empty; use --split val or all"
        )

    def predict_fn(image: np.ndarray) -> np.ndarray:
        return predict_prob(predictor, image, opts)[0]

    if cfg.data.path is not None:
        samples = {
            s.name: s
            for s in scan_folder(
                cfg.data.path, cfg.data.group_regex, group_column=cfg.data.group_column
            )
        }
        names = [n for part in chosen for n in part.names]
        items = (
            (
                n,
                read_image(samples[n].image, predictor.channels, max_pixels=cfg.data.max_pixels),
                read_mask(
                    samples[n].mask,
                    predictor.num_classes,
                    classes=cfg.data.classes or None,
                    max_pixels=cfg.data.max_pixels,
                ),
            )
            for n in names
        )
    else:
        items = (
            (n, img, mask)
            for part in chosen
            for n, img, mask in zip(part.names, part.images, part.masks, strict=True)
        )
    threshold = opts.threshold if opts.threshold is not None else model_threshold(predictor)
    result = evaluate(
        predict_fn,
        items,
        out_dir,
        threshold=threshold,
        worst_k=worst_k,
        postprocess=(lambda m: clean(m, opts)) if needs_postprocess(opts) else None,
        class_names=_model_class_names(predictor, cfg),
    )
    result["model"] = str(model_path)
    result["data"] = resolved.description
    result["split"] = split
    result["provenance"] = resolved.provenance(splits, split)
    result["inference"] = opts.to_dict()
    result["threshold_source"] = (
        "option"
        if opts.threshold is not None
        else getattr(predictor, "threshold_source", "default")
    )
    if store_threshold:
        sel = result.get("threshold_selection")
        if sel is None:
            raise DataError(f"{model_path}: a multi-class model has no threshold to store")
        sel["split"] = f"val of {resolved.description}"
        result["threshold_stored"] = str(store_model_threshold(model_path, sel))
    if baseline is not None:
        result["baseline"] = compare_evaluations(out_dir, baseline)
    write_json(Path(out_dir) / "metrics.json", nan_to_none(result))
    return result


def _model_class_names(predictor, cfg) -> list[str] | None:
    """The model's class names: its run's ``class_names(cfg)``, else its card's
    ``output.classes``, else None (``background, class_1, ...``)."""
    from kseg.config import class_names

    k = predictor.num_classes
    if cfg.model.num_classes == k:
        return list(class_names(cfg))
    names = ((predictor.card or {}).get("output") or {}).get("classes")
    return list(names) if names and len(names) == k else None


def store_model_threshold(model_path: str | os.PathLike[str], selection: dict[str, Any]) -> Path:
    """Record a validated threshold for a model; returns the file written.

    ``.tflite``: its card's ``output.threshold`` (``threshold_source: validation``) and
    ``threshold_selection``; Keras: ``MODEL.threshold.json`` beside it (read by
    :meth:`kseg.runtime.KerasPredictor.from_file`).
    """
    import json

    p = Path(model_path)
    if p.suffix == ".tflite":
        card_path = p.with_suffix(".json")
        if not card_path.is_file():
            raise DataError(
                f"{card_path}: no model card to store the threshold in; convert with kseg convert"
            )
        card = json.loads(card_path.read_text(encoding="utf-8"))
        card.setdefault("output", {})["threshold"] = selection["threshold"]
        card["output"]["threshold_source"] = "validation"
        card["threshold_selection"] = selection
        write_json(card_path, card)
        return card_path
    path = p.with_suffix(".threshold.json")
    write_json(
        path,
        {
            "format": "kseg-threshold/1",
            "threshold": selection["threshold"],
            "source": "validation",
            "selection": selection,
        },
    )
    return path
