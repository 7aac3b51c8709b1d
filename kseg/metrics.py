"""Stateful Keras segmentation metrics: Dice, IoU, precision, recall.

Predictions are binarized before counting: K = 1 -> ``p > threshold`` (the same rule as
:func:`kseg.scores.binarize`); K > 1 -> ``argmax`` over channels, and the score is the mean over
the foreground classes ``1..K-1``. Integer label masks ``(B, H, W, 1)`` are accepted for K > 1.

Two ways of averaging, both accumulated in ``add_weight`` state variables (so they aggregate
correctly under ``tf.distribute.MirroredStrategy``):

- ``per_image=False`` (default, names ``dice``, ``iou``, ...): TP, FP, FN are summed over all
  pixels of all images seen, and the score is computed once from the totals.
- ``per_image=True`` (names ``dice_mean``, ...): the score is computed for each image and averaged
  over images; small structures weigh as much as large ones.

Empty convention: when TP + FP + FN = 0 (nothing to find and nothing found) the score is 1.0; when
only the denominator of precision (TP + FP) or recall (TP + FN) is 0, that score is 0.0. For
K > 1 a class absent from both truth and prediction of an image is skipped in that image's mean
over classes (the absent-class convention of :mod:`kseg.scores`), and a class absent from all
images seen is skipped in the pixel-total mean.

Per class (K > 1): ``class_id=c`` scores class ``c`` alone (pixel totals);
:func:`default_metrics` with ``class_names`` adds ``dice_NAME`` and ``iou_NAME`` for every
foreground class, next to ``dice``/``iou``, which are the foreground means (over ``1..K-1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kseg._attrs import attrs_dict
from kseg._keras import keras, tf
from kseg.errors import ConfigError
from kseg.losses import prepare
from kseg.scores import class_suffixes

_COUNT_DTYPE = tf.float64  # exact pixel counts far beyond float32's 2**24


def _score(kind: str, tp: tf.Tensor, fp: tf.Tensor, fn: tf.Tensor) -> tf.Tensor:
    """Score from counts (any shape), with the empty convention above."""
    if kind == "dice":
        num, den = 2.0 * tp, 2.0 * tp + fp + fn
    elif kind == "iou":
        num, den = tp, tp + fp + fn
    elif kind == "precision":
        num, den = tp, tp + fp
    elif kind == "recall":
        num, den = tp, tp + fn
    else:  # pragma: no cover - guarded by the subclasses
        raise ValueError(kind)
    empty = tf.equal(tp + fp + fn, 0.0)
    value = tf.math.divide_no_nan(num, den)
    return tf.where(empty, tf.ones_like(value), value)


class _OverlapMetric(keras.metrics.Metric):
    """Base class: counts TP/FP/FN per foreground class; subclasses set ``_kind``."""

    _kind = ""
    #: the constructor arguments ``get_config`` returns besides Keras's ``name`` and ``dtype``
    _CONFIG = ("threshold", "num_classes", "per_image", "class_id")

    def __init__(
        self,
        threshold: float = 0.5,
        num_classes: int = 1,
        per_image: bool = False,
        class_id: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if name is None:
            name = self._kind + ("_mean" if per_image else "")
            name += f"_class_{class_id}" if class_id is not None else ""
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"train.threshold={threshold} is out of range; use a value in [0, 1]")
        if int(num_classes) < 1:
            raise ConfigError(
                f"model.num_classes={num_classes} is invalid; use 1 (sigmoid) or more (softmax)"
            )
        self.threshold = float(threshold)
        self.num_classes = int(num_classes)
        self.per_image = bool(per_image)
        if class_id is not None:
            if not 1 <= int(class_id) < self.num_classes or per_image:
                raise ConfigError(
                    f"class_id={class_id} needs a multi-class metric (num_classes > 1), "
                    f"a foreground class id in 1..{self.num_classes - 1} and per_image=False"
                )
            class_id = int(class_id)
        self.class_id = class_id
        n_fg = max(self.num_classes - 1, 1)
        if self.per_image:
            self.total = self.add_weight(
                name="total", shape=(), initializer="zeros", dtype=_COUNT_DTYPE
            )
            self.count = self.add_weight(
                name="count", shape=(), initializer="zeros", dtype=_COUNT_DTYPE
            )
        else:
            self.tp = self.add_weight(
                name="tp", shape=(n_fg,), initializer="zeros", dtype=_COUNT_DTYPE
            )
            self.fp = self.add_weight(
                name="fp", shape=(n_fg,), initializer="zeros", dtype=_COUNT_DTYPE
            )
            self.fn = self.add_weight(
                name="fn", shape=(n_fg,), initializer="zeros", dtype=_COUNT_DTYPE
            )

    def _binarize(self, y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor]:
        """Return boolean ``(B, H, W, n_fg)`` truth and prediction."""
        y_true, y_pred = prepare(y_true, y_pred)
        k = y_pred.shape[-1]
        if k != self.num_classes:
            raise ValueError(
                f"metric {self.name!r} was built for num_classes={self.num_classes} but the model "
                f"outputs {k} channels; pass num_classes={k}"
            )
        if k == 1:
            return y_true > 0.5, y_pred > self.threshold
        classes = tf.range(1, k)
        true_lbl = tf.argmax(y_true, axis=-1, output_type=tf.int32)[..., None]
        pred_lbl = tf.argmax(y_pred, axis=-1, output_type=tf.int32)[..., None]
        return tf.equal(true_lbl, classes), tf.equal(pred_lbl, classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = self._binarize(y_true, y_pred)
        t = tf.cast(t, _COUNT_DTYPE)
        p = tf.cast(p, _COUNT_DTYPE)
        w = tf.ones_like(t[..., :1])
        if sample_weight is not None:
            sw = tf.cast(sample_weight, _COUNT_DTYPE)
            while sw.shape.rank is not None and sw.shape.rank < 4:
                sw = sw[..., None]  # (B,) -> (B,1,1,1); (B,H,W) -> (B,H,W,1)
            w = w * sw
        tp = tf.reduce_sum(w * t * p, axis=[1, 2])  # (B, n_fg)
        fp = tf.reduce_sum(w * (1.0 - t) * p, axis=[1, 2])
        fn = tf.reduce_sum(w * t * (1.0 - p), axis=[1, 2])
        if self.per_image:
            # mean over the classes present in truth or prediction (none present: 1.0)
            present = tf.cast(tp + fp + fn > 0, _COUNT_DTYPE)
            n_present = tf.reduce_sum(present, axis=-1)
            total = tf.reduce_sum(_score(self._kind, tp, fp, fn) * present, axis=-1)
            scores = tf.where(
                n_present > 0, tf.math.divide_no_nan(total, n_present), tf.ones_like(total)
            )
            # an image counts with its mean pixel weight (a (B,) sample_weight is used as is)
            image_w = tf.reduce_mean(w * tf.ones_like(t[..., :1]), axis=[1, 2, 3])
            self.total.assign_add(tf.reduce_sum(scores * image_w))
            self.count.assign_add(tf.reduce_sum(image_w))
        else:
            self.tp.assign_add(tf.reduce_sum(tp, axis=0))
            self.fp.assign_add(tf.reduce_sum(fp, axis=0))
            self.fn.assign_add(tf.reduce_sum(fn, axis=0))

    def result(self):
        if self.per_image:
            value = tf.math.divide_no_nan(self.total, self.count)
        elif self.class_id is not None:
            c = self.class_id - 1
            value = _score(self._kind, self.tp[c], self.fp[c], self.fn[c])
        else:
            scores = _score(self._kind, self.tp, self.fp, self.fn)
            if self.num_classes > 2:  # classes absent from every image seen are skipped
                present = tf.cast(self.tp + self.fp + self.fn > 0, _COUNT_DTYPE)
                n_present = tf.reduce_sum(present)
                value = tf.where(
                    n_present > 0,
                    tf.math.divide_no_nan(tf.reduce_sum(scores * present), n_present),
                    tf.constant(1.0, _COUNT_DTYPE),
                )
            else:
                value = tf.reduce_mean(scores)
        return tf.cast(value, tf.float32)

    def reset_state(self):
        for v in self.variables:
            v.assign(tf.zeros_like(v))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **attrs_dict(self, self._CONFIG)}


@keras.saving.register_keras_serializable(package="kseg")
class Dice(_OverlapMetric):
    """Dice coefficient ``2 TP / (2 TP + FP + FN)`` (F1 score of the foreground).

    Args:
        threshold: probability above which a pixel is foreground (K = 1).
        num_classes: model output channels K.
        per_image: average per-image scores instead of pooling all pixels.

    Reference:
        Dice, "Measures of the Amount of Ecologic Association Between Species", Ecology 1945.
    """

    _kind = "dice"


@keras.saving.register_keras_serializable(package="kseg")
class IoU(_OverlapMetric):
    """Intersection over union (Jaccard index) ``TP / (TP + FP + FN)``. Args as :class:`Dice`."""

    _kind = "iou"


@keras.saving.register_keras_serializable(package="kseg")
class Precision(_OverlapMetric):
    """Precision ``TP / (TP + FP)``. Args as :class:`Dice`."""

    _kind = "precision"


@keras.saving.register_keras_serializable(package="kseg")
class Recall(_OverlapMetric):
    """Recall (sensitivity) ``TP / (TP + FN)``. Args as :class:`Dice`."""

    _kind = "recall"


def default_metrics(
    threshold: float = 0.5, num_classes: int = 1, class_names: Sequence[str] | None = None
) -> list[keras.metrics.Metric]:
    """Metrics to compile a segmentation model with.

    Pixel-total ``dice``, ``iou``, ``precision``, ``recall`` plus the per-image mean
    ``dice_mean``; Keras logs them as ``val_dice`` etc. on validation data. For K > 1 these are
    foreground means (classes ``1..K-1``); given ``class_names`` (index = class id, see
    :func:`kseg.config.class_names`) each foreground class also gets ``dice_NAME`` and
    ``iou_NAME`` (:func:`kseg.scores.class_suffixes`). One-class models get the same five
    metrics either way.

    Example:
        >>> model.compile(optimizer="adam", loss=get_loss("combo"), metrics=default_metrics(0.5, 1))
    """
    kw = {"threshold": threshold, "num_classes": num_classes}
    metrics = [Dice(**kw), IoU(**kw), Precision(**kw), Recall(**kw), Dice(per_image=True, **kw)]
    if num_classes > 1 and class_names is not None:
        for c, suffix in enumerate(class_suffixes(class_names)[1:], start=1):
            metrics += [
                Dice(class_id=c, name=f"dice_{suffix}", **kw),
                IoU(class_id=c, name=f"iou_{suffix}", **kw),
            ]
    return metrics


@keras.saving.register_keras_serializable(package="kseg")
def psnr(y_true, y_pred):
    """Peak signal-to-noise ratio in dB for images in pixel units (0..255), mean over the batch."""
    return tf.reduce_mean(
        tf.image.psnr(y_true, tf.clip_by_value(y_pred, 0.0, 255.0), max_val=255.0)
    )


@keras.saving.register_keras_serializable(package="kseg")
def ssim(y_true, y_pred):
    """Structural similarity (Wang et al., IEEE TIP 2004) for images in pixel units, batch mean."""
    return tf.reduce_mean(
        tf.image.ssim(y_true, tf.clip_by_value(y_pred, 0.0, 255.0), max_val=255.0)
    )


def denoise_metrics() -> list:
    """PSNR and SSIM against the clean image (logged as ``val_psnr``, ``val_ssim``)."""
    return [psnr, ssim]


__all__ = [
    "Dice",
    "IoU",
    "Precision",
    "Recall",
    "default_metrics",
    "denoise_metrics",
    "psnr",
    "ssim",
]
