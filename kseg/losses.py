"""Segmentation losses on probability maps: BCE, focal, soft Dice, Tversky, focal-Tversky, combo.

Every loss is a serializable :class:`keras.losses.Loss` registered in :data:`LOSSES` and created by
name with :func:`get_loss`, so ``TrainConfig(loss="tversky", loss_options={"alpha": 0.3})`` maps to
``get_loss("tversky", alpha=0.3)``.

Shapes and conventions (shared by all losses):

- ``y_pred``: probabilities ``(B, H, W, K)``; K = 1 is a sigmoid output, K > 1 a softmax output.
- ``y_true``: ``(B, H, W, 1)`` float ``{0, 1}`` for K = 1; for K > 1 either one-hot
  ``(B, H, W, K)`` or integer labels ``(B, H, W, 1)`` (converted to one-hot). A missing channel axis
  ``(B, H, W)`` is added.
- Probabilities are clipped to ``[eps, 1 - eps]`` only where a logarithm is taken.
- Each loss returns one value per image; Keras averages them over the batch.
- Overlap losses (Dice, Tversky, focal-Tversky) are computed **per image and per class** (sums over
  H and W), then averaged over classes (all K channels for softmax, including background unless
  ``include_background=False``; the one channel for sigmoid). They use additive smoothing ``s`` in numerator and denominator, so an
  image whose truth and prediction are both empty scores ``s / s = 1`` and has loss ~0 (not NaN),
  and an empty truth with a full prediction has loss ``1 - s / (P + s)``, close to 1.
"""

from __future__ import annotations

import math
from typing import Any

from kseg._attrs import attrs_dict, init_arg_names
from kseg._keras import keras, tf
from kseg.errors import ConfigError
from kseg.registry import Registry

LOSSES: Registry = Registry("loss")

_EPS = 1e-7


def get_loss(name: str, **options: Any) -> keras.losses.Loss:
    """Create a registered loss by name.

    Args:
        name: registry name (see ``LOSSES.names()``).
        **options: keyword arguments of that loss; an unknown one is a ``ConfigError`` that lists
            the valid ones.

    Example:
        >>> loss = get_loss("combo", first="bce", second="dice", weight=0.5)
    """
    cls = LOSSES.get(name)
    valid = init_arg_names(cls)  # a loss's options are its constructor's named parameters
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"train.loss_options: unknown option(s) {', '.join(map(repr, unknown))} for loss {name!r}; "
            f"valid: {', '.join(valid) or '(none)'}"
        )
    return cls(**options)


def _check_range(
    loss: str, key: str, value: float, lo: float, hi: float, *, lo_open: bool = False
) -> float:
    value = float(value)
    ok = (value > lo if lo_open else value >= lo) and value <= hi and math.isfinite(value)
    if not ok:
        left = "(" if lo_open else "["
        raise ConfigError(
            f"train.loss_options.{key}={value} for loss {loss!r} is out of range; use a value in {left}{lo}, {hi}]"
        )
    return value


def prepare(y_true: tf.Tensor, y_pred: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Bring ``y_true`` and ``y_pred`` to float32 ``(B, H, W, K)``; integer labels become one-hot.

    Shared with :mod:`kseg.metrics`.
    """
    y_pred = tf.convert_to_tensor(y_pred)
    y_pred = tf.cast(y_pred, tf.float32)
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank is not None and y_pred.shape.rank is not None:
        if y_true.shape.rank == y_pred.shape.rank - 1:
            y_true = tf.expand_dims(y_true, -1)
    k = y_pred.shape[-1]
    if k is None:
        raise ValueError("y_pred must have a static channel dimension (number of classes)")
    if k > 1 and y_true.shape[-1] == 1:
        labels = tf.cast(tf.round(tf.cast(y_true[..., 0], tf.float32)), tf.int32)
        y_true = tf.one_hot(labels, k, dtype=tf.float32)
    else:
        y_true = tf.cast(y_true, tf.float32)
    return y_true, y_pred


def _overlap_sums(y_true: tf.Tensor, y_pred: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Soft TP, FP, FN per image and class: shape ``(B, K)``."""
    axes = [1, 2]
    tp = tf.reduce_sum(y_true * y_pred, axis=axes)
    fp = tf.reduce_sum((1.0 - y_true) * y_pred, axis=axes)
    fn = tf.reduce_sum(y_true * (1.0 - y_pred), axis=axes)
    return tp, fp, fn


def _class_mean(per_class: tf.Tensor, include_background: bool) -> tf.Tensor:
    """Mean over the class axis of ``(B, K)`` scores; without background (K > 1) over 1..K-1."""
    if not include_background and per_class.shape[-1] is not None and per_class.shape[-1] > 1:
        per_class = per_class[:, 1:]
    return tf.reduce_mean(per_class, axis=-1)


class _SegLoss(keras.losses.Loss):
    """Base: converts inputs, then ``per_image(y_true, y_pred) -> (B,)``.

    A subclass stores each constructor argument (its options) under the argument's own name;
    ``get_config`` returns them after Keras's ``name`` and ``reduction``, so a saved loss is
    rebuilt by ``cls(**config)``.
    """

    def call(self, y_true, y_pred):
        y_true, y_pred = prepare(y_true, y_pred)
        return self.per_image(y_true, y_pred)

    def per_image(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **attrs_dict(self, init_arg_names(type(self)))}


@LOSSES.register("bce", description="binary (K=1) or categorical (K>1) cross-entropy")
@keras.saving.register_keras_serializable(package="kseg")
class CrossEntropy(_SegLoss):
    """Pixel-wise cross-entropy, averaged over pixels.

    K = 1: ``-(y log p + (1 - y) log(1 - p))``; K > 1: ``-sum_k w_k y_k log p_k``.

    Args:
        class_weights: K > 1 only: weight ``w_k`` of each class's pixels, background first
            (``None``: all 1). Weights above 1 for rare classes make each of their pixels count
            more (as ``kseg plan`` sets them from the classes' pixel shares).

    Example:
        >>> get_loss("bce")(y_true, y_pred)
        >>> get_loss("bce", class_weights=[1.0, 3.0, 3.0])  # background, nerve, vessel
    """

    def __init__(self, class_weights: list[float] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("name", "bce")
        super().__init__(**kwargs)
        self.class_weights = (
            None
            if class_weights is None
            else [_check_range("bce", "class_weights", w, 0.0, 1e3) for w in class_weights]
        )

    def per_image(self, y_true, y_pred):
        p = tf.clip_by_value(y_pred, _EPS, 1.0 - _EPS)
        k = y_pred.shape[-1]
        if k == 1:
            ce = -(y_true * tf.math.log(p) + (1.0 - y_true) * tf.math.log(1.0 - p))[..., 0]
        else:
            terms = y_true * tf.math.log(p)
            if self.class_weights is not None:
                if len(self.class_weights) != k:
                    raise ConfigError(
                        f"train.loss_options: class_weights has {len(self.class_weights)} value(s) "
                        f"but the model has {k} classes (background first); give {k}"
                    )
                terms = terms * tf.constant(self.class_weights, tf.float32)
            ce = -tf.reduce_sum(terms, axis=-1)
        return tf.reduce_mean(ce, axis=[1, 2])


@LOSSES.register("focal", description="focal loss (Lin et al. 2017)")
@keras.saving.register_keras_serializable(package="kseg")
class FocalLoss(_SegLoss):
    """Focal loss: cross-entropy down-weighted on easy pixels.

    K = 1: ``-a_t (1 - p_t)^gamma log p_t`` with ``p_t = p`` and ``a_t = alpha`` on foreground,
    ``p_t = 1 - p`` and ``a_t = 1 - alpha`` on background. K > 1:
    ``-sum_k alpha y_k (1 - p_k)^gamma log p_k``. Averaged over pixels. ``gamma = 0`` and
    ``alpha = 0.5`` give half the cross-entropy.

    Args:
        gamma: focusing exponent (>= 0).
        alpha: foreground weight in [0, 1].

    Reference:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, **kwargs: Any) -> None:
        kwargs.setdefault("name", "focal")
        super().__init__(**kwargs)
        self.gamma = _check_range("focal", "gamma", gamma, 0.0, 10.0)
        self.alpha = _check_range("focal", "alpha", alpha, 0.0, 1.0)

    def per_image(self, y_true, y_pred):
        p = tf.clip_by_value(y_pred, _EPS, 1.0 - _EPS)
        if y_pred.shape[-1] == 1:
            p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
            a_t = y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)
            fl = (-a_t * tf.pow(1.0 - p_t, self.gamma) * tf.math.log(p_t))[..., 0]
        else:
            fl = -tf.reduce_sum(
                self.alpha * y_true * tf.pow(1.0 - p, self.gamma) * tf.math.log(p), axis=-1
            )
        return tf.reduce_mean(fl, axis=[1, 2])


@LOSSES.register("dice", description="soft Dice loss (Milletari et al. 2016)")
@keras.saving.register_keras_serializable(package="kseg")
class DiceLoss(_SegLoss):
    """Soft Dice loss per image and class: ``1 - (2 TP + s) / (2 TP + FP + FN + s)``.

    With soft ``TP = sum y p``, ``FP = sum (1 - y) p``, ``FN = sum y (1 - p)`` (so the denominator
    is ``sum y + sum p``). Empty truth and empty prediction give loss 0.

    Args:
        smooth: additive smoothing ``s`` (> 0).
        include_background: softmax outputs (K > 1): average over all K classes (``True``) or
            over the foreground classes only (``False``, as nnU-Net does), so that a background
            that is easy to get right does not dilute the loss of small, rare classes.

    Reference:
        Milletari, Navab, Ahmadi, "V-Net: Fully Convolutional Neural Networks for Volumetric
        Medical Image Segmentation", 3DV 2016. arXiv:1606.04797
    """

    def __init__(self, smooth: float = 1.0, include_background: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("name", "dice")
        super().__init__(**kwargs)
        self.smooth = _check_range("dice", "smooth", smooth, 0.0, 1e6, lo_open=True)
        self.include_background = bool(include_background)

    def per_image(self, y_true, y_pred):
        tp, fp, fn = _overlap_sums(y_true, y_pred)
        dice = (2.0 * tp + self.smooth) / (2.0 * tp + fp + fn + self.smooth)
        return 1.0 - _class_mean(dice, self.include_background)


def _tversky_index(y_true, y_pred, alpha: float, beta: float, smooth: float) -> tf.Tensor:
    tp, fp, fn = _overlap_sums(y_true, y_pred)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


@LOSSES.register("tversky", description="Tversky loss (Salehi et al. 2017)")
@keras.saving.register_keras_serializable(package="kseg")
class TverskyLoss(_SegLoss):
    """Tversky loss per image and class: ``1 - (TP + s) / (TP + alpha FP + beta FN + s)``.

    ``alpha`` weights false positives, ``beta`` false negatives; ``alpha = beta = 0.5`` is the
    Dice loss. ``beta > alpha`` favours recall on small structures.

    Args:
        alpha: false-positive weight (>= 0).
        beta: false-negative weight (>= 0).
        smooth: additive smoothing ``s`` (> 0).
        include_background: as :class:`DiceLoss`.

    Reference:
        Salehi, Erdogmus, Gholipour, "Tversky loss function for image segmentation using 3D fully
        convolutional deep networks", MLMI 2017. arXiv:1706.05721
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1.0,
        include_background: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "tversky")
        super().__init__(**kwargs)
        self.alpha = _check_range("tversky", "alpha", alpha, 0.0, 1e3)
        self.beta = _check_range("tversky", "beta", beta, 0.0, 1e3)
        self.smooth = _check_range("tversky", "smooth", smooth, 0.0, 1e6, lo_open=True)
        self.include_background = bool(include_background)

    def per_image(self, y_true, y_pred):
        ti = _tversky_index(y_true, y_pred, self.alpha, self.beta, self.smooth)
        return 1.0 - _class_mean(ti, self.include_background)


@LOSSES.register("focal_tversky", description="focal Tversky loss (Abraham & Khan 2019)")
@keras.saving.register_keras_serializable(package="kseg")
class FocalTverskyLoss(_SegLoss):
    """Focal Tversky loss per image: ``mean_k (1 - TI_k)^gamma`` with TI the Tversky index.

    ``gamma < 1`` (the paper's ``1/gamma`` with ``gamma = 4/3``, i.e. 0.75) raises the loss of
    nearly-correct images relative to plain Tversky. ``1 - TI`` is floored at 1e-7 before the power
    so the gradient stays finite at a perfect prediction.

    Args:
        alpha: false-positive weight (>= 0).
        beta: false-negative weight (>= 0).
        gamma: exponent applied to ``1 - TI`` (> 0).
        smooth: additive smoothing (> 0).
        include_background: as :class:`DiceLoss`.

    Reference:
        Abraham, Khan, "A Novel Focal Tversky Loss Function with Improved Attention U-Net for
        Lesion Segmentation", ISBI 2019. arXiv:1810.07842
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        smooth: float = 1.0,
        include_background: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "focal_tversky")
        super().__init__(**kwargs)
        self.alpha = _check_range("focal_tversky", "alpha", alpha, 0.0, 1e3)
        self.beta = _check_range("focal_tversky", "beta", beta, 0.0, 1e3)
        self.gamma = _check_range("focal_tversky", "gamma", gamma, 0.0, 10.0, lo_open=True)
        self.smooth = _check_range("focal_tversky", "smooth", smooth, 0.0, 1e6, lo_open=True)
        self.include_background = bool(include_background)

    def per_image(self, y_true, y_pred):
        ti = _tversky_index(y_true, y_pred, self.alpha, self.beta, self.smooth)
        return _class_mean(tf.pow(tf.maximum(1.0 - ti, _EPS), self.gamma), self.include_background)


@LOSSES.register("combo", description="weighted sum of two losses (default 0.5 bce + 0.5 dice)")
@keras.saving.register_keras_serializable(package="kseg")
class ComboLoss(_SegLoss):
    """``weight * first + (1 - weight) * second`` for any two registered losses.

    The default (cross-entropy + Dice) is the combo loss of Taghanaki et al.: cross-entropy gives
    smooth pixel-wise gradients, Dice counters class imbalance.

    Args:
        first: name of the first loss.
        second: name of the second loss.
        weight: weight of the first loss in [0, 1].
        first_options: keyword arguments of the first loss.
        second_options: keyword arguments of the second loss.

    Example:
        >>> get_loss("combo", first="focal", second="tversky", weight=0.3,
        ...          second_options={"alpha": 0.3, "beta": 0.7})

    Reference:
        Taghanaki et al., "Combo loss: Handling input and output imbalance in multi-organ
        segmentation", Computerized Medical Imaging and Graphics 2019. arXiv:1805.02798
    """

    def __init__(
        self,
        first: str = "bce",
        second: str = "dice",
        weight: float = 0.5,
        first_options: dict[str, Any] | None = None,
        second_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "combo")
        super().__init__(**kwargs)
        self.first = str(first)
        self.second = str(second)
        self.weight = _check_range("combo", "weight", weight, 0.0, 1.0)
        self.first_options = dict(first_options or {})
        self.second_options = dict(second_options or {})
        self._first = get_loss(self.first, **self.first_options)
        self._second = get_loss(self.second, **self.second_options)

    def per_image(self, y_true, y_pred):
        return self.weight * self._first.per_image(y_true, y_pred) + (
            1.0 - self.weight
        ) * self._second.per_image(y_true, y_pred)


__all__ = [
    "LOSSES",
    "get_loss",
    "prepare",
    "CrossEntropy",
    "FocalLoss",
    "DiceLoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "ComboLoss",
]
