"""Every registered architecture, checked the same way (timm ``tests/test_models.py`` style).

Models are tiny (32x32, depth 2, 4 filters or width 0.25) so the whole registry runs in the
default suite. Tolerances of the INT8 parity check, on the dequantized output of a random-init
model for a fixed synthetic image (probabilities; pixel units for ``denoising_ae``):

- mean |int8 - keras| <= 0.03 (denoise: 3.0 pixel levels),
- max  |int8 - keras| <= 0.25 (denoise: 25 pixel levels).

The max bound is loose because a random-init model sits near the decision surface everywhere;
SegNet's unpooling also keeps every position tied at the window maximum, and int8 creates ties
float does not.
"""

from __future__ import annotations

import numpy as np
import pytest

from kseg._keras import keras, tf
from kseg.models import MODELS, create_model, load_model, model_spec, model_task
from kseg.models.complexity import int8_problems, tflite_report

NAMES = MODELS.names()


def _build(zoo, name: str, channels: int = 1, **extra):
    keras.utils.set_random_seed(0)
    return create_model(
        name, input_shape=(zoo.SIZE, zoo.SIZE, channels), **{**zoo.tiny_options(name), **extra}
    )


def _loss_fn(name: str):
    if model_task(name) == "denoise":
        return lambda y, p: tf.reduce_mean(tf.square((y - p) / 255.0))
    return keras.losses.BinaryCrossentropy()


def test_registry_lists_the_ten_architectures():
    assert NAMES == sorted(
        [
            "attention_unet", "denoising_ae", "dilated_unet", "mobile_unet", "res_attention_unet",
            "res_unet", "segnet", "unet", "unet2", "unet_pp",
        ]
    )  # fmt: skip
    for name in NAMES:
        assert MODELS.description(name)
        assert "https://arxiv.org/" in (MODELS.get(name).__doc__ or ""), f"{name}: cite the paper"


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_builds_with_input_shape_and_finite_output(zoo, name, channels):
    model = _build(zoo, name, channels)
    images, _, _ = zoo.disks(2, channels=channels)
    out = model.predict(images, verbose=0)
    expected_k = channels if model_task(name) == "denoise" else 1
    assert model.name == name
    assert model.input.name.startswith("image")
    assert model.get_layer("normalize") is not None
    assert out.shape == (2, zoo.SIZE, zoo.SIZE, expected_k)
    assert np.isfinite(out).all()
    if model_task(name) == "denoise":
        assert model.output.name.startswith("denoised")
        assert 0.0 <= out.min() and out.max() <= 255.0
    else:
        assert model.output.name.startswith("mask")
        assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_lowers_the_loss(zoo, name):
    model = _build(zoo, name)
    images, masks, clean = zoo.disks(4)
    target = clean if model_task(name) == "denoise" else masks
    loss_fn = _loss_fn(name)
    optimizer = keras.optimizers.Adam(1e-3)
    x = tf.constant(images)

    def loss_now():
        return float(loss_fn(target, model(x, training=True)))

    before = loss_now()
    with tf.GradientTape() as tape:
        loss = loss_fn(target, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads), f"{name}: some weights get no gradient"
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    after = loss_now()
    assert np.isfinite(before) and after < before, f"{name}: loss {before:.5f} -> {after:.5f}"


@pytest.mark.parametrize("name", NAMES)
def test_keras_save_load_gives_identical_outputs(zoo, name, tmp_path):
    model = _build(zoo, name, 3, norm="group", groups=2)
    images, _, _ = zoo.disks(2, channels=3)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(
        model.predict(images, verbose=0), loaded.predict(images, verbose=0)
    )
    spec = model_spec(loaded)
    assert spec["name"] == name
    assert spec["options"]["norm"] == "group"
    assert spec["input_shape"] == [zoo.SIZE, zoo.SIZE, 3]
    assert spec == model_spec(model)


# INT8 conversion takes 5-15 s per model: the default suite converts one model of each op
# family (max-unpool, attention + residual, depthwise); `-m slow` converts the whole registry.
FAST_INT8 = {"segnet", "res_attention_unet", "mobile_unet"}
INT8_CASES = [
    pytest.param(name, {}, marks=() if name in FAST_INT8 else pytest.mark.slow, id=name)
    for name in NAMES
] + [
    pytest.param(
        "unet",
        {"norm": "group", "groups": 2, "activation": "hard_swish", "upsampling": "bilinear"},
        id="unet-groupnorm-hardswish-bilinear",
    ),
    pytest.param(
        "res_attention_unet",
        {"attention": "self", "norm": "instance", "activation": "leaky_relu", "upsampling": "nearest"},
        id="res_attention_unet-self-instance-leaky-nearest",
    ),
    pytest.param(
        "unet_pp", {"deep_supervision": True, "activation": "relu6"}, id="unet_pp-deep-supervision",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "mobile_unet", {"encoder": "mobilenet_v3_small", "width": 1.0}, id="mobile_unet-mobilenet_v3",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "mobile_unet", {"encoder": "efficientnet_v2_b0", "width": 1.0}, id="mobile_unet-efficientnet",
        marks=pytest.mark.slow,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "options"), INT8_CASES)
def test_int8_conversion_is_builtin_integer_and_agrees_with_keras(zoo, name, options):
    from kseg.export.convert import convert_model

    model = _build(zoo, name, **options)
    calib, _, _ = zoo.disks(8, seed=1)
    test_images, _, _ = zoo.disks(2, seed=2)
    int8 = convert_model(model, "int8", representative=calib)
    report = tflite_report(int8)
    assert int8_problems(report) == [], f"{name}: {int8_problems(report)} ops={report['ops']}"
    assert report["input_dtype"] == "int8" and report["output_dtype"] == "int8"
    assert report["input_shape"] == [1, zoo.SIZE, zoo.SIZE, 1]
    assert report["output_shape"][:3] == [1, zoo.SIZE, zoo.SIZE]
    # the op each special block must become (fused, integer)
    expected = {
        "hard_swish": "HARD_SWISH", "group": "RSQRT", "instance": "RSQRT", "self": "BATCH_MATMUL",
        "segnet": "SELECT_V2", "bilinear": "RESIZE_BILINEAR", "nearest": "RESIZE_NEAREST_NEIGHBOR",
    }  # fmt: skip
    for key in [name, *map(str, options.values())]:
        if key in expected:
            assert expected[key] in report["ops"], f"{key}: no {expected[key]} in {report['ops']}"
    got = zoo.run_tflite(int8, test_images)
    want = model.predict(test_images, verbose=0)
    diff = np.abs(got - want)
    unit = 100.0 if model_task(name) == "denoise" else 1.0  # pixel levels vs probabilities
    assert diff.mean() <= 0.03 * unit, f"{name}: mean |int8 - keras| = {diff.mean():.4f}"
    assert diff.max() <= 0.25 * unit, f"{name}: max |int8 - keras| = {diff.max():.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_float_conversion_matches_keras(zoo, name):
    from kseg.export.convert import convert_model

    model = _build(zoo, name, 3)
    images, _, _ = zoo.disks(2, channels=3)
    flat = convert_model(model, "float32")
    report = tflite_report(flat)
    assert report["custom_ops"] == [] and report["dynamic_shape_ops"] == []
    np.testing.assert_allclose(
        zoo.run_tflite(flat, images), model.predict(images, verbose=0), atol=1e-4, rtol=1e-4
    )
