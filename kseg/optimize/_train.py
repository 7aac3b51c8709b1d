"""Short fine-tuning runs and Dice/IoU scoring shared by the optimize steps.

Data are numpy arrays in the pixel contract: images float32/uint8 ``(N, S, S, C)`` in [0, 255],
masks ``(N, S, S)`` or ``(N, S, S, 1)`` in {0, 1}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kseg._keras import keras, tf


@dataclasses.dataclass
class FitData:
    """Training and validation arrays for a fine-tune."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    #: where the split came from (:meth:`kseg.training.rundir.ModelData.provenance` of ``val``)
    provenance: dict[str, Any] | None = None

    @classmethod
    def from_splits(cls, splits: Any) -> FitData:
        """From ``kseg.data.pipeline.Splits`` (uint8 images and masks)."""
        return cls(
            _images(splits.train.images),
            _masks(splits.train.masks),
            _images(splits.val.images),
            _masks(splits.val.masks),
        )

    def __post_init__(self) -> None:
        self.x_train, self.x_val = _images(self.x_train), _images(self.x_val)
        self.y_train, self.y_val = _masks(self.y_train), _masks(self.y_val)

    def describe(self) -> dict[str, Any]:
        return {
            "train": int(len(self.x_train)),
            "val": int(len(self.x_val)),
            "shape": list(self.x_train.shape[1:]),
            **({"provenance": self.provenance} if self.provenance else {}),
        }


def _images(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32)


def _masks(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, np.float32)
    return y[..., None] if y.ndim == 3 else y


def resolve_loss(
    loss: str | Callable[..., Any] | None, options: dict[str, Any] | None = None
) -> Any:
    """A Keras loss: a ``kseg.losses`` name (default ``combo``) or a callable passed through."""
    if loss is None or isinstance(loss, str):
        from kseg.losses import get_loss

        return get_loss(loss or "combo", **(options or {}))
    return loss


def augment_pair(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Light on-line augmentation of one image/mask pair in the pixel contract (0..255).

    Horizontal flip (image and mask together), contrast x0.8-1.2 about the image mean and
    brightness +-20 grey levels (image only), clipped to 0..255. Used by :func:`fit` and the
    distiller with ``augment=True``, so a distilled student and its baseline see the same kind of
    views (the teacher labels each augmented view: "consistent teaching").
    """
    flip = tf.random.uniform(()) < 0.5
    x = tf.cond(flip, lambda: tf.reverse(x, [1]), lambda: x)
    y = tf.cond(flip, lambda: tf.reverse(y, [1]), lambda: y)
    mean = tf.reduce_mean(x)
    x = (x - mean) * tf.random.uniform((), 0.8, 1.2) + mean + tf.random.uniform((), -20.0, 20.0)
    return tf.clip_by_value(x, 0.0, 255.0), y


def fit_inputs(data: FitData, batch_size: int, *, augment: bool, seed: int) -> dict[str, Any]:
    """Keyword arguments for ``Model.fit``: the training arrays, or with ``augment`` a shuffled,
    augmented, batched dataset."""
    if not augment:
        return {"x": data.x_train, "y": data.y_train, "batch_size": batch_size, "shuffle": True}
    return {"x": _shuffled(data.x_train, data.y_train, batch_size, augment=True, seed=seed)}


def _shuffled(
    x: np.ndarray,
    y: np.ndarray | None,
    batch_size: int,
    *,
    augment: bool,
    seed: int,
    forever: bool = False,
) -> tf.data.Dataset:
    """Reshuffled each epoch, optionally augmented (:func:`augment_pair`), batched; images only
    when ``y`` is ``None``; ``forever`` repeats before batching, so every batch is full."""
    ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y)).shuffle(
        len(x), seed=seed, reshuffle_each_iteration=True
    )
    if forever:
        ds = ds.repeat()
    if augment:
        if y is None:
            ds = ds.map(lambda im: augment_pair(im, im)[0], num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(augment_pair, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size)


def with_unlabeled(
    data: FitData, unlabeled: np.ndarray, batch_size: int, *, augment: bool, seed: int
) -> dict[str, Any]:
    """``Model.fit`` inputs of ``((x, y), x_unlabeled)`` batches: one pass over the labeled
    training set per epoch, each batch paired with a batch of the (repeated, reshuffled)
    unlabeled images, so the number of steps is that of a plain run."""
    labeled = _shuffled(data.x_train, data.y_train, batch_size, augment=augment, seed=seed)
    transfer = _shuffled(
        _images(unlabeled), None, batch_size, augment=augment, seed=seed + 1, forever=True
    )
    return {"x": tf.data.Dataset.zip((labeled, transfer)).prefetch(tf.data.AUTOTUNE)}


SCHEDULES = ("constant", "cosine")


def adam(
    learning_rate: float, *, schedule: str = "constant", total_steps: int = 1
) -> keras.optimizers.Optimizer:
    """Adam at ``learning_rate``, constant or cosine-decayed to 0 over ``total_steps``."""
    if schedule not in SCHEDULES:
        from kseg.errors import ConfigError

        raise ConfigError(
            f"learning-rate schedule '{schedule}' is not one of {', '.join(SCHEDULES)}"
        )
    if schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, max(1, int(total_steps)))
        return keras.optimizers.Adam(rate)
    return keras.optimizers.Adam(learning_rate)


@dataclasses.dataclass(frozen=True)
class FitBudget:
    """How a model is fine-tuned: the settings that :func:`fit`, the distiller and the optimize
    steps share, as keyword arguments of the same names.

    Args:
        epochs: passes over the training set; 0 only compiles (e.g. QAT that just records ranges
            at conversion, or a dry run of a recipe).
        batch_size: images per step.
        learning_rate: Adam's learning rate (its start, with a schedule).
        lr_schedule: ``constant`` or ``cosine`` (decay to 0 over the run, see :func:`adam`).
        loss: a ``kseg.losses`` name or a Keras loss (``None``: ``combo``).
        seed: Keras' global seed, set before compiling; also shuffles the batches.
        augment: :func:`augment_pair` on line.
        verbose: Keras' ``fit`` verbosity.
        run_eagerly: skip graph tracing, which dominates one- or two-step runs (tests).

    Example:
        >>> budget = FitBudget(epochs=3, learning_rate=1e-3)
        >>> history = budget.fit(model, data)  # the same as fit(model, data, epochs=3, ...)
    """

    epochs: int
    batch_size: int = 8
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    loss: Any = None
    seed: int = 0
    augment: bool = False
    verbose: int = 0
    run_eagerly: bool = False

    @classmethod
    def of(cls, fit: dict[str, Any], **defaults: Any) -> FitBudget:
        """The budget given by keyword in ``fit``; a field it leaves out comes from ``defaults``,
        then from the class. An unknown name is a ``TypeError``, as for any keyword argument."""
        return cls(**{**defaults, **fit})

    @classmethod
    def split(cls, options: dict[str, Any], **defaults: Any) -> tuple[FitBudget, dict[str, Any]]:
        """:meth:`of` the budget fields among ``options``, and the other options."""
        names = {f.name for f in dataclasses.fields(cls)}
        budget = cls.of({k: v for k, v in options.items() if k in names}, **defaults)
        return budget, {k: v for k, v in options.items() if k not in names}

    def keywords(self) -> dict[str, Any]:
        """The fields by name, to pass the budget on as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def optimizer(self, data: FitData) -> keras.optimizers.Optimizer:
        """:func:`adam`, a schedule running over the whole budget (at least one epoch's steps)."""
        total = max(1, self.epochs) * steps_per_epoch(data, self.batch_size)
        return adam(self.learning_rate, schedule=self.lr_schedule, total_steps=total)

    def inputs(self, data: FitData, unlabeled: np.ndarray | None = None) -> dict[str, Any]:
        """``Model.fit`` inputs: :func:`fit_inputs`, or :func:`with_unlabeled` when there are
        ``unlabeled`` images."""
        if unlabeled is not None and len(unlabeled):
            return with_unlabeled(
                data, unlabeled, self.batch_size, augment=self.augment, seed=self.seed
            )
        return fit_inputs(data, self.batch_size, augment=self.augment, seed=self.seed)

    def fit(
        self,
        model: keras.Model,
        data: FitData,
        callbacks: Sequence[keras.callbacks.Callback] = (),
    ) -> dict[str, list[float]]:
        """Compile ``model`` with Adam and train it; returns the Keras history."""
        keras.utils.set_random_seed(self.seed)
        model.compile(
            optimizer=self.optimizer(data),
            loss=resolve_loss(self.loss),
            run_eagerly=self.run_eagerly,
        )
        if self.epochs <= 0:
            return {}
        hist = model.fit(
            **self.inputs(data), epochs=self.epochs, callbacks=list(callbacks), verbose=self.verbose
        )
        return history(hist)


def fit(
    model: keras.Model,
    data: FitData,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    **budget: Any,
) -> dict[str, list[float]]:
    """Compile with Adam and train for the :class:`FitBudget` given by keyword (``epochs`` is
    required); returns the Keras history."""
    return FitBudget(**budget).fit(model, data, callbacks)


def history(hist: keras.callbacks.History) -> dict[str, list[float]]:
    """A Keras ``History`` as plain floats (JSON-ready)."""
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def steps_per_epoch(data: FitData, batch_size: int) -> int:
    return int(np.ceil(len(data.x_train) / batch_size))


def predict(model: keras.Model, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    return model.predict(_images(images), batch_size=batch_size, verbose=0)


def dice_iou(probs: np.ndarray, masks: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Mean per-image Dice and IoU of thresholded sigmoid (or argmax softmax) outputs.

    An image with an empty prediction and an empty truth scores 1.
    """
    probs = np.asarray(probs)
    true = _masks(masks)[..., 0] > 0.5
    pred = probs[..., 0] > threshold if probs.shape[-1] == 1 else np.argmax(probs, -1) > 0
    axes = tuple(range(1, pred.ndim))
    inter = np.sum(pred & true, axis=axes).astype(np.float64)
    ps, ts = np.sum(pred, axis=axes), np.sum(true, axis=axes)
    union = ps + ts - inter
    dice = np.where(ps + ts == 0, 1.0, 2 * inter / np.maximum(ps + ts, 1))
    iou = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return {"dice": float(dice.mean()), "iou": float(iou.mean()), "per_image_dice": dice.tolist()}


def evaluate(
    model: keras.Model, images: np.ndarray, masks: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    scores = dice_iou(predict(model, images), masks, threshold)
    return {"dice": scores["dice"], "iou": scores["iou"]}


def count_params(model: keras.Model) -> int:
    return int(model.count_params())
