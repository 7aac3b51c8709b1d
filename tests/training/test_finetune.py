"""Fine-tuning (``kseg train --init MODEL [--freeze-encoder [--unfreeze-after N]]``): weights are
really copied by name and shape, the first conv crosses gray/RGB with the stated math, mismatches
are listed, the encoder is frozen (weights unchanged) and trains again after N epochs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kseg._keras import keras
from kseg.config import TrainConfig
from kseg.errors import ConfigError
from kseg.models import create_model, load_model
from kseg.models.parts import encoder_layers, is_encoder_layer
from kseg.training.finetune import (
    UnfreezeEncoder,
    convert_first_kernel,
    load_matching_weights,
    prepare,
)


def _conv_at(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """One output pixel of a valid convolution: image (kh, kw, c), kernel (kh, kw, c, k)."""
    return np.einsum("hwc,hwck->k", image, kernel)


def test_rgb_to_gray_sums_and_gray_to_rgb_repeats_over_three():
    rng = np.random.default_rng(0)
    rgb = rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
    gray = convert_first_kernel(rgb, 1)
    np.testing.assert_allclose(gray[:, :, 0], rgb.sum(axis=2), rtol=1e-6)
    g = rng.uniform(size=(3, 3, 1)).astype(np.float32)
    # a gray image seen as (g, g, g) by the RGB kernel = g through the summed kernel
    np.testing.assert_allclose(_conv_at(np.repeat(g, 3, -1), rgb), _conv_at(g, gray), rtol=1e-5)
    k1 = rng.normal(size=(3, 3, 1, 4)).astype(np.float32)
    k3 = convert_first_kernel(k1, 3)
    assert k3.shape == (3, 3, 3, 4)
    np.testing.assert_allclose(k3[:, :, 2], k1[:, :, 0] / 3, rtol=1e-6)
    np.testing.assert_allclose(_conv_at(np.repeat(g, 3, -1), k3), _conv_at(g, k1), rtol=1e-5)
    with pytest.raises(ValueError, match="2-channel"):
        convert_first_kernel(np.zeros((3, 3, 2, 4)), 1)


def test_encoder_rule_on_the_zoos_names():
    assert all(map(is_encoder_layer, ["enc0_a_conv", "enc1_pool", "stem_conv", "bottleneck_b_bn"]))
    assert all(map(is_encoder_layer, ["x00_a_conv", "x30_b_bn", "expanded_conv_project"]))
    assert not any(map(is_encoder_layer, ["dec0_a_conv", "dec1_ag_psi", "x01_a_conv", "x12_b_bn"]))
    assert not any(map(is_encoder_layer, ["logits", "mask", "normalize", "image"]))
    model = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    names = {layer.name for layer in encoder_layers(model)}
    assert "enc0_a_conv" in names and "bottleneck_b_bn" in names
    assert not {n for n in names if n.startswith(("dec", "logits"))}


def test_matching_layers_are_copied_and_the_rest_listed():
    src = create_model("unet", input_shape=(32, 32, 3), depth=2, filters=4, num_classes=1)
    dst = create_model("unet", input_shape=(48, 48, 1), depth=2, filters=4, num_classes=2)
    before = {layer.name: layer.get_weights() for layer in dst.layers if layer.weights}
    report = load_matching_weights(dst, src)
    for name in report.loaded:
        for a, b in zip(
            dst.get_layer(name).get_weights(), src.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    assert "enc0_b_conv" in report.loaded and "dec0_b_bn" in report.loaded
    assert report.converted == [{"name": "enc0_a_conv", "from": 3, "to": 1}]
    (k_dst,) = dst.get_layer("enc0_a_conv").get_weights()  # no bias: BatchNorm follows
    (k_src,) = src.get_layer("enc0_a_conv").get_weights()
    np.testing.assert_allclose(k_dst, k_src.sum(axis=2, keepdims=True), rtol=1e-6)
    assert [s["name"] for s in report.skipped] == ["logits"]
    assert "shape" in report.skipped[0]["reason"]
    # the skipped head keeps its own initialization
    for a, b in zip(dst.get_layer("logits").get_weights(), before["logits"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert "logits" in report.unused


def test_deeper_model_skips_what_does_not_exist_in_the_source():
    src = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    dst = create_model("unet", input_shape=(32, 32, 1), depth=3, filters=4)
    report = load_matching_weights(dst, src)
    reasons = {s["name"]: s["reason"] for s in report.skipped}
    assert reasons["enc2_a_conv"] == "not in the source model"
    assert reasons["bottleneck_a_conv"].startswith("shape")  # 16 vs 32 filters at depth 3
    assert "enc1_b_conv" in report.loaded


def _tiny_data(n: int = 16, size: int = 32):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, size=(n, size, size, 1)).astype(np.float32)
    y = (x[..., :1] > 128).astype(np.float32)
    return x, y


def test_frozen_encoder_stays_fixed_then_trains_after_n_epochs():
    keras.utils.set_random_seed(0)
    model = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    report = prepare(
        model,
        TrainConfig(freeze_encoder=True, unfreeze_after=1),
        lambda: model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy"),
    )
    enc = [model.get_layer(n) for n in report.encoder]
    assert enc and all(not layer.trainable for layer in enc)
    assert all(model.get_layer(n).trainable for n in ("dec0_a_conv", "logits"))
    start = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    seen: dict[int, dict[str, list[np.ndarray]]] = {}
    trainable: dict[int, bool] = {}

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = {layer.name: layer.get_weights() for layer in model.layers}
            trainable[epoch] = all(layer.trainable for layer in enc)

    x, y = _tiny_data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[UnfreezeEncoder(1), Record()])
    for layer in enc:  # epoch 0: kernels and BatchNorm statistics untouched
        for a, b in zip(seen[0][layer.name], start[layer.name], strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(seen[0]["dec0_a_conv"][0], start["dec0_a_conv"][0])
    assert trainable == {0: False, 1: True}
    changed = [
        layer.name
        for layer in enc
        if not np.array_equal(seen[1][layer.name][0], start[layer.name][0])
    ]
    assert len(changed) == len(enc)  # epoch 1: every encoder layer trained


def test_unfreeze_after_needs_freeze_encoder():
    model = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    with pytest.raises(ConfigError, match="needs train.freeze_encoder"):
        prepare(model, TrainConfig(unfreeze_after=2), lambda: None)


def test_train_cli_init_writes_init_json(tmp_path):
    from kseg.cli import main

    src = create_model("unet", input_shape=(40, 40, 3), depth=2, filters=4)
    src.save(tmp_path / "src.keras")
    run = tmp_path / "run"
    args = ["train", "--init", str(tmp_path / "src.keras"), "--freeze-encoder"]
    args += ["--epochs", "1", "--img-size", "32", "--batch-size", "8", "--out", str(run)]
    args += ["--set", "data.synthetic_n=24", "--set", "model.options={depth: 2, filters: 4}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    init = json.loads((run / "init.json").read_text())
    assert init["source"] == str(tmp_path / "src.keras") and init["freeze_encoder"] is True
    assert init["converted"] == [{"name": "enc0_a_conv", "from": 3, "to": 1}]
    assert "enc1_b_conv" in init["loaded"] and "logits" in init["loaded"]
    assert "init: loaded" in result.stderr
    trained = load_model(run / "best.keras")
    # the frozen encoder is still the source's (RGB kernel summed), the decoder has trained
    np.testing.assert_array_equal(
        trained.get_layer("enc1_b_conv").get_weights()[0],
        src.get_layer("enc1_b_conv").get_weights()[0],
    )
    assert not np.array_equal(
        trained.get_layer("dec0_b_conv").get_weights()[0],
        src.get_layer("dec0_b_conv").get_weights()[0],
    )
    bad = CliRunner().invoke(main, ["train", "--unfreeze-after", "1", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "needs train.freeze_encoder" in bad.output
    assert not Path(tmp_path / "x").exists()
