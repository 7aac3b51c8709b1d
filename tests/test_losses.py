"""Losses against values computed by hand with plain numpy formulas on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kseg._keras import keras
from kseg.errors import ConfigError
from kseg.losses import LOSSES, get_loss

# two 2x2 images, K = 1
Y = np.array([[[1, 0], [0, 0]], [[1, 1], [0, 1]]], dtype=np.float32)[..., None]
P = np.array([[[0.9, 0.2], [0.1, 0.4]], [[0.6, 0.8], [0.3, 0.5]]], dtype=np.float32)[..., None]


def _val(loss, y=Y, p=P) -> float:
    return float(loss(y, p).numpy())


def _sums(y, p):
    """Soft tp, fp, fn per image (K = 1)."""
    y = y.reshape(len(y), -1).astype(np.float64)
    p = p.reshape(len(p), -1).astype(np.float64)
    return (y * p).sum(1), ((1 - y) * p).sum(1), (y * (1 - p)).sum(1)


def test_registry_names():
    assert set(LOSSES.names()) == {"bce", "focal", "dice", "tversky", "focal_tversky", "combo"}


def test_bce_matches_hand_formula():
    # image 1: -(log .9 + log .8 + log .9 + log .6)/4 ; image 2: -(log .6 + log .8 + log .7 + log .5)/4
    img1 = -(math.log(0.9) + math.log(0.8) + math.log(0.9) + math.log(0.6)) / 4
    img2 = -(math.log(0.6) + math.log(0.8) + math.log(0.7) + math.log(0.5)) / 4
    assert _val(get_loss("bce")) == pytest.approx((img1 + img2) / 2, rel=1e-5)
    # agrees with Keras' own binary cross-entropy
    ref = float(keras.losses.BinaryCrossentropy()(Y, P).numpy())
    assert _val(get_loss("bce")) == pytest.approx(ref, rel=1e-4)


def test_focal_matches_hand_formula():
    g, a = 2.0, 0.25
    y, p = Y.ravel().astype(np.float64), P.ravel().astype(np.float64)
    pt = np.where(y == 1, p, 1 - p)
    at = np.where(y == 1, a, 1 - a)
    per_pixel = -at * (1 - pt) ** g * np.log(pt)
    expected = per_pixel.reshape(2, 4).mean(1).mean()
    assert _val(get_loss("focal", gamma=g, alpha=a)) == pytest.approx(expected, rel=1e-5)
    # gamma=0, alpha=0.5 -> half the cross-entropy
    assert _val(get_loss("focal", gamma=0.0, alpha=0.5)) == pytest.approx(
        _val(get_loss("bce")) / 2, rel=1e-5
    )


def test_dice_loss_matches_hand_formula():
    # image 1: tp = .9, sum p = 1.6, sum y = 1 -> dice = (1.8 + 1)/(2.6 + 1)
    # image 2: tp = .6+.8+.5 = 1.9, sum p = 2.2, sum y = 3 -> dice = (3.8 + 1)/(5.2 + 1)
    d1 = (1.8 + 1) / (2.6 + 1)
    d2 = (3.8 + 1) / (5.2 + 1)
    assert _val(get_loss("dice")) == pytest.approx(1 - (d1 + d2) / 2, rel=1e-5)
    tp, fp, fn = _sums(Y, P)
    s = 0.1
    expected = np.mean(1 - (2 * tp + s) / (2 * tp + fp + fn + s))
    assert _val(get_loss("dice", smooth=s)) == pytest.approx(expected, rel=1e-5)


def test_tversky_and_focal_tversky_match_hand_formula():
    tp, fp, fn = _sums(Y, P)
    a, b, s = 0.3, 0.7, 1.0
    ti = (tp + s) / (tp + a * fp + b * fn + s)
    assert _val(get_loss("tversky", alpha=a, beta=b)) == pytest.approx(np.mean(1 - ti), rel=1e-5)
    g = 0.75
    assert _val(get_loss("focal_tversky", alpha=a, beta=b, gamma=g)) == pytest.approx(
        np.mean((1 - ti) ** g), rel=1e-5
    )
    # alpha = beta = 0.5 is the Dice loss (smoothing s in Tversky is 2s in Dice's form)
    assert _val(get_loss("tversky", alpha=0.5, beta=0.5, smooth=0.5)) == pytest.approx(
        _val(get_loss("dice", smooth=1.0)), rel=1e-6
    )
    # under-segmentation (only false negatives) costs more when beta > alpha
    y, p = np.ones((1, 4, 4, 1), np.float32), np.full((1, 4, 4, 1), 0.5, np.float32)
    recall_heavy = _val(get_loss("tversky", alpha=0.1, beta=0.9), y, p)
    assert recall_heavy == pytest.approx(1 - (8 + 1) / (8 + 0.9 * 8 + 1), rel=1e-5)
    assert recall_heavy > _val(get_loss("tversky", alpha=0.9, beta=0.1), y, p)


def test_combo_is_weighted_sum():
    bce, dice, focal, tv = (
        _val(get_loss("bce")),
        _val(get_loss("dice")),
        _val(get_loss("focal")),
        _val(get_loss("tversky", alpha=0.2, beta=0.8)),
    )
    assert _val(get_loss("combo")) == pytest.approx(0.5 * bce + 0.5 * dice, rel=1e-5)
    combo = get_loss(
        "combo",
        first="focal",
        second="tversky",
        weight=0.3,
        second_options={"alpha": 0.2, "beta": 0.8},
    )
    assert _val(combo) == pytest.approx(0.3 * focal + 0.7 * tv, rel=1e-5)


def test_empty_masks():
    empty = np.zeros((1, 8, 8, 1), np.float32)
    full = np.ones((1, 8, 8, 1), np.float32)
    for name in ("dice", "tversky", "focal_tversky"):
        value = _val(get_loss(name), empty, empty)
        assert np.isfinite(value) and value < 1e-3, name
    # empty truth, full prediction: dice = s/(64+s) -> loss ~ 1
    assert _val(get_loss("dice"), empty, full) == pytest.approx(1 - 1 / 65, rel=1e-5)
    assert np.isfinite(_val(get_loss("bce"), empty, full))  # clipped log, no inf
    assert np.isfinite(_val(get_loss("combo"), empty, empty))


def test_multiclass_softmax_onehot_and_integer_labels():
    # one 1x3 image, K = 3; labels 0, 1, 2
    labels = np.array([[[0, 1, 2]]], np.int32)[..., None]
    onehot = np.eye(3, dtype=np.float32)[labels[..., 0]]
    p = np.array([[[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]]], np.float32)
    ce = -(math.log(0.7) + math.log(0.6) + math.log(0.6)) / 3
    assert _val(get_loss("bce"), onehot, p) == pytest.approx(ce, rel=1e-5)
    assert _val(get_loss("bce"), labels.astype(np.float32), p) == pytest.approx(ce, rel=1e-5)
    # per-class soft dice, s = 1, averaged over the 3 classes
    dices = []
    for k in range(3):
        y, q = onehot[..., k].ravel(), p[..., k].ravel()
        dices.append((2 * (y * q).sum() + 1) / (y.sum() + q.sum() + 1))
    assert _val(get_loss("dice"), labels, p) == pytest.approx(1 - np.mean(dices), rel=1e-5)


def test_multiclass_foreground_only_overlap_and_class_weighted_ce():
    labels = np.array([[[0, 1, 2]]], np.int32)[..., None]
    onehot = np.eye(3, dtype=np.float32)[labels[..., 0]]
    p = np.array([[[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]]], np.float32)
    dices, tis = [], []
    for k in range(3):
        y, q = onehot[..., k].ravel(), p[..., k].ravel()
        tp, fp, fn = (y * q).sum(), ((1 - y) * q).sum(), (y * (1 - q)).sum()
        dices.append((2 * tp + 1) / (2 * tp + fp + fn + 1))
        tis.append((tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1))
    # include_background=False: the mean over classes 1 and 2 only
    fg = get_loss("dice", include_background=False)
    assert _val(fg, labels, p) == pytest.approx(1 - np.mean(dices[1:]), rel=1e-5)
    assert _val(fg, labels, p) != pytest.approx(_val(get_loss("dice"), labels, p), rel=1e-3)
    tv = get_loss("tversky", include_background=False)
    assert _val(tv, labels, p) == pytest.approx(1 - np.mean(tis[1:]), rel=1e-5)
    ft = get_loss("focal_tversky", include_background=False)
    want = np.mean([(1 - t) ** 0.75 for t in tis[1:]])
    assert _val(ft, labels, p) == pytest.approx(want, rel=1e-5)
    # one sigmoid channel has no background channel to leave out
    assert _val(get_loss("dice", include_background=False)) == pytest.approx(
        _val(get_loss("dice")), rel=1e-6
    )
    # class weights multiply each pixel's term by its true class's weight
    wce = get_loss("bce", class_weights=[1.0, 2.0, 4.0])
    ce = -(math.log(0.7) + 2 * math.log(0.6) + 4 * math.log(0.6)) / 3
    assert _val(wce, labels, p) == pytest.approx(ce, rel=1e-5)
    with pytest.raises(ConfigError, match="class_weights has 2 value"):
        _val(get_loss("bce", class_weights=[1.0, 2.0]), labels, p)
    with pytest.raises(ConfigError, match="class_weights"):
        get_loss("bce", class_weights=[1.0, -2.0, 1.0])
    # as the planner writes it for several classes
    combo = get_loss(
        "combo",
        first_options={"class_weights": [1.0, 2.0, 4.0]},
        second_options={"include_background": False},
    )
    assert _val(combo, labels, p) == pytest.approx(
        0.5 * ce + 0.5 * (1 - np.mean(dices[1:])), rel=1e-5
    )
    clone = keras.losses.deserialize(keras.losses.serialize(combo))
    assert _val(clone, labels, p) == pytest.approx(_val(combo, labels, p), rel=1e-6)


def test_missing_channel_axis_is_added():
    assert _val(get_loss("dice"), Y[..., 0], P) == pytest.approx(_val(get_loss("dice")), rel=1e-6)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"'gama'.*valid: gamma, alpha"):
        get_loss("focal", gama=2)
    with pytest.raises(ConfigError, match="did you mean 'dice'"):
        get_loss("dise")
    with pytest.raises(ConfigError, match="weight"):
        get_loss("combo", weight=1.5)
    with pytest.raises(ConfigError, match="unknown loss"):
        get_loss("combo", second="nope")


def test_gradients_are_finite_for_perfect_prediction():
    from kseg._keras import tf

    y = tf.constant(np.ones((1, 4, 4, 1), np.float32))
    p = tf.Variable(np.ones((1, 4, 4, 1), np.float32))
    for name in LOSSES.names():
        with tf.GradientTape() as tape:
            value = get_loss(name)(y, p)
        grad = tape.gradient(value, p)
        assert np.all(np.isfinite(grad.numpy())), name


@pytest.mark.parametrize("name", ["focal", "tversky", "combo"])
def test_serialization_roundtrip(name):
    opts = {
        "focal": {"gamma": 1.5},
        "tversky": {"alpha": 0.4, "beta": 0.6},
        "combo": {"weight": 0.2},
    }[name]
    loss = get_loss(name, **opts)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(clone) is type(loss)
    assert clone.get_config() == loss.get_config()
    assert _val(clone) == pytest.approx(_val(loss), rel=1e-6)


#: get_config of every loss with its defaults, as .keras files written before the configs came
#: from the constructor's parameters hold them (keys and order must not change)
SAVED_CONFIGS = {
    "bce": {"reduction": "auto", "name": "bce", "class_weights": None},
    "combo": {
        "reduction": "auto",
        "name": "combo",
        "first": "bce",
        "second": "dice",
        "weight": 0.5,
        "first_options": {},
        "second_options": {},
    },
    "dice": {"reduction": "auto", "name": "dice", "smooth": 1.0, "include_background": True},
    "focal": {"reduction": "auto", "name": "focal", "gamma": 2.0, "alpha": 0.25},
    "focal_tversky": {
        "reduction": "auto",
        "name": "focal_tversky",
        "alpha": 0.3,
        "beta": 0.7,
        "gamma": 0.75,
        "smooth": 1.0,
        "include_background": True,
    },
    "tversky": {
        "reduction": "auto",
        "name": "tversky",
        "alpha": 0.3,
        "beta": 0.7,
        "smooth": 1.0,
        "include_background": True,
    },
}


def test_every_loss_config_keeps_the_saved_keys_and_loads_from_them():
    assert sorted(SAVED_CONFIGS) == LOSSES.names()
    for name, saved in SAVED_CONFIGS.items():
        loss = get_loss(name)
        assert list(loss.get_config().items()) == list(saved.items()), name
        clone = type(loss).from_config(dict(saved))
        assert clone.get_config() == saved
    weighted = get_loss("bce", class_weights=[1, 3]).get_config()
    assert weighted["class_weights"] == [1.0, 3.0]
    combo = get_loss("combo", second_options={"smooth": 2.0})
    config = combo.get_config()
    config["second_options"]["smooth"] = 9.0  # a copy: the loss keeps its options
    assert combo.second_options == {"smooth": 2.0}
