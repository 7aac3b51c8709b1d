"""Keras metrics against pixel counts done by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kseg._keras import keras, tf
from kseg.errors import ConfigError
from kseg.metrics import Dice, IoU, Precision, Recall, default_metrics


def _batch(seed: int, n: int = 3, size: int = 8):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, size, size, 1)) > 0.6).astype(np.float32)
    p = rng.random((n, size, size, 1)).astype(np.float32)
    return y, p


def _counts(y, p, thr=0.5):
    t, q = y > 0.5, p > thr
    return int((t & q).sum()), int((~t & q).sum()), int((t & ~q).sum())


def _result(metric, *batches) -> float:
    metric.reset_state()
    for y, p in batches:
        metric.update_state(y, p)
    return float(metric.result().numpy())


def test_names_for_keras_logs():
    names = [m.name for m in default_metrics()]
    assert names == ["dice", "iou", "precision", "recall", "dice_mean"]


def test_accumulation_over_two_batches_equals_pixel_totals():
    b1, b2 = _batch(0), _batch(1)
    y = np.concatenate([b1[0], b2[0]])
    p = np.concatenate([b1[1], b2[1]])
    tp, fp, fn = _counts(y, p)
    assert tp > 0 and fp > 0 and fn > 0
    expected = {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
    }
    for cls in (Dice, IoU, Precision, Recall):
        m = cls()
        two = _result(m, b1, b2)
        one = _result(m, (y, p))
        assert two == pytest.approx(expected[m.name], rel=1e-6)
        assert one == pytest.approx(two, rel=1e-6)


def test_threshold_is_strictly_greater():
    y = np.ones((1, 1, 2, 1), np.float32)
    p = np.array([[[[0.5], [0.7]]]], np.float32)
    assert _result(Recall(threshold=0.5), (y, p)) == pytest.approx(0.5)
    assert _result(Recall(threshold=0.8), (y, p)) == pytest.approx(0.0)


def test_empty_conventions():
    empty = np.zeros((2, 4, 4, 1), np.float32)
    full = np.ones((2, 4, 4, 1), np.float32)
    for cls in (Dice, IoU, Precision, Recall):
        assert _result(cls(), (empty, empty)) == 1.0
        assert _result(cls(per_image=True), (empty, empty)) == 1.0
    assert _result(Dice(), (empty, full)) == 0.0
    assert _result(Dice(per_image=True), (empty, full)) == 0.0
    assert _result(Precision(), (full, empty)) == 0.0  # nothing predicted, something missed


def test_per_image_mean_differs_from_pixel_total():
    # image 1: large object found perfectly (tp=12); image 2: small object missed (fn=1, fp=1)
    y = np.zeros((2, 4, 4, 1), np.float32)
    p = np.zeros((2, 4, 4, 1), np.float32)
    y[0, :3] = 1
    p[0, :3] = 1
    y[1, 0, 0] = 1
    p[1, 3, 3] = 1
    pixel = 2 * 12 / (2 * 12 + 1 + 1)
    per_image = (1.0 + 0.0) / 2
    assert _result(Dice(), (y, p)) == pytest.approx(pixel, rel=1e-6)
    assert _result(Dice(per_image=True), (y, p)) == pytest.approx(per_image, rel=1e-6)
    assert _result(IoU(per_image=True), (y, p)) == pytest.approx(0.5, rel=1e-6)


def test_multiclass_argmax_mean_over_foreground():
    # 1x4 image, K = 3; truth labels 0 1 2 2, prediction argmax 0 1 1 2
    labels = np.array([0, 1, 2, 2]).reshape(1, 1, 4, 1)
    p = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]].reshape(1, 1, 4, 3) * 0.8 + 0.2 / 3
    # class 1: tp 1, fp 1, fn 0 -> dice 2/3 ; class 2: tp 1, fp 0, fn 1 -> dice 2/3
    # precision: class1 1/2, class2 1 -> 0.75 ; recall: class1 1, class2 1/2 -> 0.75
    onehot = np.eye(3, dtype=np.float32)[labels[..., 0]]
    for y in (labels.astype(np.float32), onehot):
        assert _result(Dice(num_classes=3), (y, p)) == pytest.approx(2 / 3, rel=1e-6)
        assert _result(Precision(num_classes=3), (y, p)) == pytest.approx(0.75, rel=1e-6)
        assert _result(Recall(num_classes=3), (y, p)) == pytest.approx(0.75, rel=1e-6)
        assert _result(IoU(num_classes=3), (y, p)) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ValueError, match="num_classes=3"):
        Dice(num_classes=1).update_state(labels, p)


def test_sample_weight_per_image():
    y, p = _batch(3, n=2)
    m = Dice()
    m.update_state(y, p, sample_weight=np.array([1.0, 0.0], np.float32))
    assert float(m.result()) == pytest.approx(_result(Dice(), (y[:1], p[:1])), rel=1e-6)
    m = Dice(per_image=True)
    m.update_state(y, p, sample_weight=np.array([0.0, 1.0], np.float32))
    assert float(m.result()) == pytest.approx(_result(Dice(), (y[1:], p[1:])), rel=1e-6)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="threshold"):
        Dice(threshold=1.5)


def test_config_roundtrip_and_mirrored_strategy():
    m = Dice(threshold=0.3, num_classes=1, per_image=True)
    clone = keras.metrics.deserialize(keras.metrics.serialize(m))
    assert type(clone) is Dice and clone.get_config() == m.get_config()
    # the keys .keras files hold, in order
    assert list(IoU(num_classes=3, class_id=2).get_config().items()) == [
        ("name", "iou_class_2"),
        ("dtype", "float32"),
        ("threshold", 0.5),
        ("num_classes", 3),
        ("per_image", False),
        ("class_id", 2),
    ]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        metric = Dice()
    y, p = _batch(4)

    @tf.function
    def step(a, b):
        strategy.run(metric.update_state, args=(a, b))

    step(tf.constant(y), tf.constant(p))
    tp, fp, fn = _counts(y, p)
    assert float(metric.result()) == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-6)


def test_compile_fit_save_load(tmp_path):
    from kseg.losses import get_loss

    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.float32)
    inp = keras.Input((8, 8, 1))
    out = keras.layers.Conv2D(1, 1, activation="sigmoid")(inp)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss=get_loss("combo"), metrics=default_metrics())
    hist = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0)
    assert {"val_dice", "val_iou", "val_precision", "val_recall", "val_dice_mean"} <= set(
        hist.history
    )
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
    logs = loaded.evaluate(x, y, verbose=0, return_dict=True)
    tp, fp, fn = _counts(y, model(x).numpy())
    assert logs["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-5)


def test_per_class_metrics_and_the_absent_class_convention():
    # K = 3, two 1x4 images. A: truth 0 1 1 2, argmax 0 1 2 2; B: truth 0 1 1 1, argmax 0 1 0 0
    labels = np.array([[0, 1, 1, 2], [0, 1, 1, 1]]).reshape(2, 1, 4, 1).astype(np.float32)
    arg = np.array([[0, 1, 2, 2], [0, 1, 0, 0]])
    p = np.eye(3, dtype=np.float32)[arg].reshape(2, 1, 4, 3) * 0.8 + 0.2 / 3
    # nerve pixel totals tp 2 fp 0 fn 3 -> 4/7, IoU 2/5; vessel tp 1 fp 1 fn 0 -> 2/3, IoU 1/2
    assert _result(Dice(num_classes=3, class_id=1), (labels, p)) == pytest.approx(4 / 7, rel=1e-6)
    assert _result(Dice(num_classes=3, class_id=2), (labels, p)) == pytest.approx(2 / 3, rel=1e-6)
    assert _result(IoU(num_classes=3, class_id=1), (labels, p)) == pytest.approx(0.4, rel=1e-6)
    assert _result(IoU(num_classes=3, class_id=2), (labels, p)) == pytest.approx(0.5, rel=1e-6)
    # per image: A (2/3 + 2/3) / 2, B only nerve 1/2 (vessel absent from both: skipped, not 1.0)
    per_image = Dice(num_classes=3, per_image=True)
    assert _result(per_image, (labels, p)) == pytest.approx((2 / 3 + 1 / 2) / 2, rel=1e-6)
    # image B alone: vessel is absent from every image seen -> skipped in the pixel-total mean
    assert _result(Dice(num_classes=3), (labels[1:], p[1:])) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ConfigError, match="class_id"):
        Dice(num_classes=1, class_id=1)
    m = Dice(num_classes=3, class_id=2, name="dice_vessel")
    clone = keras.metrics.deserialize(keras.metrics.serialize(m))
    assert clone.class_id == 2 and clone.name == "dice_vessel"


def test_default_metrics_names_binary_unchanged_multiclass_per_class():
    names = [m.name for m in default_metrics(0.5, 1, class_names=("background", "foreground"))]
    assert names == ["dice", "iou", "precision", "recall", "dice_mean"]
    names = [m.name for m in default_metrics(0.5, 3, class_names=("background", "nerve", "Vessel"))]
    assert names == [
        "dice", "iou", "precision", "recall", "dice_mean",
        "dice_nerve", "iou_nerve", "dice_vessel", "iou_vessel",
    ]  # fmt: skip
