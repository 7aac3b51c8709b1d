"""Custom layers and blocks against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from kseg._keras import keras
from kseg.models import blocks
from kseg.models.layers import GroupNorm, MaxUnpool2D


def test_group_norm_matches_numpy_and_keras_group_normalization():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (2, 4, 5, 6)).astype(np.float32)
    layer = GroupNorm(groups=3, epsilon=1e-5)
    layer.build(x.shape)
    gamma = rng.uniform(0.5, 2.0, 6).astype(np.float32)
    beta = rng.normal(0, 1, 6).astype(np.float32)
    layer.set_weights([gamma, beta])
    got = layer(x).numpy()
    xr = x.reshape(2, 20, 3, 2)
    mean = xr.mean(axis=(1, 3), keepdims=True)
    var = xr.var(axis=(1, 3), keepdims=True)
    want = ((xr - mean) / np.sqrt(var + 1e-5)).reshape(x.shape) * gamma + beta
    np.testing.assert_allclose(got, want, atol=1e-5)
    ref = keras.layers.GroupNormalization(groups=3, epsilon=1e-5)
    ref.build(x.shape)
    ref.set_weights([gamma, beta])
    np.testing.assert_allclose(got, ref(x).numpy(), atol=1e-4)


def test_group_norm_rejects_groups_that_do_not_divide_channels():
    with pytest.raises(ValueError, match="6 channels cannot be split into 4 groups"):
        GroupNorm(groups=4)(np.zeros((1, 2, 2, 6), np.float32))


def test_group_norm_config_round_trip():
    layer = GroupNorm(groups=2, epsilon=1e-3, name="gn")
    clone = GroupNorm.from_config(layer.get_config())
    assert (clone.groups, clone.epsilon, clone.name) == (2, 1e-3, "gn")


def test_max_unpool_places_values_at_the_window_maximum():
    x = np.array(
        [[1, 5, 0, 2],
         [3, 2, 7, 1],
         [0, 0, 4, 4],
         [9, 1, 4, 2]], np.float32,
    )[None, ..., None]  # fmt: skip
    pooled = np.array([[5, 7], [9, 4]], np.float32)[None, ..., None]
    y = np.array([[10, 20], [30, 40]], np.float32)[None, ..., None]
    out = MaxUnpool2D()([x, pooled, y]).numpy()[0, ..., 0]
    want = np.array(
        [[0, 10, 0, 0],
         [0, 0, 20, 0],
         [0, 0, 40, 40],   # tie: both 4s of the window keep the value
         [30, 0, 40, 0]], np.float32,
    )  # fmt: skip
    np.testing.assert_array_equal(out, want)


def test_hard_swish_block_equals_formula():
    inp = keras.Input((5,))
    model = keras.Model(inp, blocks.activation(inp, "hard_swish", "t"))
    x = np.array([[-4.0, -3.0, -1.0, 1.0, 4.0]], np.float32)
    want = x * np.clip(x + 3, 0, 6) / 6
    np.testing.assert_allclose(model(x).numpy(), want, atol=1e-6)


def test_make_divisible_rounds_channels_to_multiples_of_8():
    assert blocks.make_divisible(16 * 0.25) == 8
    assert blocks.make_divisible(24 * 0.75) == 24  # 18 -> 16 loses >10%, so 24
    assert blocks.make_divisible(96 * 1.0) == 96
