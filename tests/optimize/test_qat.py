"""QAT: every zoo architecture is fully quantized (nothing left in float), converts to an
all-integer graph with int8 input and output, and a QAT model reloads from .h5."""

from __future__ import annotations

import kseg_optimize_helpers as H
import numpy as np
import pytest

from kseg._keras import keras, tf
from kseg.errors import ModelError
from kseg.models import MODELS, create_model, load_model
from kseg.optimize import qat
from kseg.optimize._convert import float_ops, io_dtypes, tflite_predict
from kseg.optimize._train import fit


def tiny(name: str) -> keras.Model:
    opts = {"depth": 2, "width": 0.25} if name == "mobile_unet" else {"depth": 2, "filters": 4}
    return create_model(name, input_shape=(32, 32, 1), **opts)


def _inbound(model: keras.Model) -> dict[str, list[str]]:
    """Layer name (without tfmot's ``quant_`` prefix) -> names of its inputs, in order."""
    out = {}
    for layer in model.get_config()["layers"]:
        names = [n[0].removeprefix("quant_") for node in layer["inbound_nodes"] for n in node]
        out[layer["name"].removeprefix("quant_")] = names
    return out


@pytest.mark.parametrize("name", MODELS.names())
def test_every_architecture_is_fully_quantized(name):
    float_model = tiny(name)
    model, report = qat.quantize_model(float_model)
    assert report.left_float == [], report.left_float
    # tfmot's transforms reorder multi-input layers (Concatenate) unless kseg keeps the order
    before, after = _inbound(float_model), _inbound(model)
    multi = {n: ins for n, ins in before.items() if len(ins) > 1}
    assert multi
    assert {n: after[n] for n in multi} == multi
    assert qat.is_qat_model(model)
    # the pixel-contract normalization is a Rescaling: quantized at its output by kseg's config
    assert report.output_only.get("normalize") == "Normalize"
    if name in ("attention_unet", "res_attention_unet"):
        assert any(cls == "Multiply" for cls in report.output_only.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS.names())
def test_every_architecture_converts_to_integer_only(name, tiny_data):
    model, _ = qat.quantize_model(tiny(name))
    fit(
        model,
        tiny_data,
        epochs=1,
        batch_size=8,
        loss=keras.losses.BinaryCrossentropy(),
        run_eagerly=True,
    )
    flat = H.to_int8_tflite(model, tiny_data.x_train)
    assert io_dtypes(flat) == ("int8", "int8")
    assert float_ops(flat) == []


def test_attention_groupnorm_qat_converts_reloads_and_agrees(tiny_data, tmp_path):
    model = create_model(
        "attention_unet", input_shape=(32, 32, 1), depth=2, filters=4, norm="group", groups=2
    )
    q, report = qat.quantize_model(model)
    assert report.fully_quantized
    assert {"GroupNorm", "Multiply", "Normalize"} <= set(report.output_only.values())
    fit(
        q,
        tiny_data,
        epochs=1,
        batch_size=8,
        loss=keras.losses.BinaryCrossentropy(),
        run_eagerly=True,
    )
    with pytest.raises(ModelError, match=r"\.h5"):
        qat.save_qat_model(q, tmp_path / "m.keras")
    path = qat.save_qat_model(q, tmp_path / "qat.h5")
    # the zoo's loader knows the tfmot quantize scope
    again = load_model(path)
    x = tiny_data.x_val
    np.testing.assert_allclose(again.predict(x, verbose=0), q.predict(x, verbose=0), atol=1e-6)
    flat = H.to_int8_tflite(again, tiny_data.x_train)
    assert io_dtypes(flat) == ("int8", "int8")
    assert float_ops(flat) == []
    # The integer graph computes the same function as the QAT model within a few output steps
    # (scale 1/256). Measured after 1 QAT epoch: mean 0.023 with tf.lite's reference kernels,
    # 0.033 with LiteRT/XNNPACK (GroupNorm's int8 MEAN/RSQRT and the gates add rounding); a wrong
    # scale or a float island shows up as 0.3 and more.
    diff = np.abs(tflite_predict(flat, x) - q.predict(x, verbose=0))
    assert float(np.mean(diff)) < 0.05


def test_custom_layer_with_kernel_is_reported_left_float():
    @keras.utils.register_keras_serializable(package="kseg_tests")
    class Gain(keras.layers.Layer):
        def build(self, shape):
            self.k = self.add_weight(name="k", shape=(int(shape[-1]), int(shape[-1])))

        def call(self, x):
            return tf.einsum("...i,ij->...j", x, self.k)

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", name="c")(inp)
    x = Gain(name="gain")(x)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="logits")(x)
    _, report = qat.quantize_model(keras.Model(inp, out))
    assert [item["name"] for item in report.left_float] == ["gain"]
    assert "no QuantizeConfig" in report.left_float[0]["reason"]
    assert not report.fully_quantized


def test_leave_float_pattern_is_reported():
    _, report = qat.quantize_model(tiny("unet"), leave_float=("dec0_b_*",))
    names = {item["name"] for item in report.left_float}
    assert names and all(n.startswith("dec0_b_") for n in names)


def test_concatenate_inputs_keep_their_order_and_the_qat_model_computes_the_float_function():
    # attention_unet concatenates [up-sampled decoder, gated skip] and builds the skip last;
    # tfmot 0.8 swapped the two (tensorflow/model-optimization#1179), so the QAT model's next conv
    # read its channels in the wrong order.
    keras.utils.set_random_seed(3)
    model = create_model("attention_unet", input_shape=(32, 32, 1), depth=2, filters=8)
    x = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 1)).astype(np.float32)
    ref = model(x, training=False).numpy().ravel()
    q, report = qat.quantize_model(model, calibration=x)
    assert report.calibration_batches == 2
    out = q(x, training=False).numpy().ravel()
    assert np.corrcoef(ref, out)[0, 1] > 0.95
    with qat.quantize_scope():  # the same model without the order fix: tfmot's bug is real
        import contextlib
        from unittest import mock

        with mock.patch.object(qat, "_inputs_in_order", contextlib.nullcontext):
            swapped, _ = qat.quantize_model(model, calibration=x)
    assert _inbound(swapped)["dec1_concat"] == ["dec1_ag_gate", "dec1_up_relu"]
    wrong = swapped(x, training=False).numpy().ravel()
    assert np.corrcoef(ref, wrong)[0, 1] < np.corrcoef(ref, out)[0, 1] - 0.1


def test_calibrate_ranges_sets_ranges_from_the_data_and_keeps_every_other_variable():
    model = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    q, _ = qat.quantize_model(model)
    ranges = {v.name: float(v.numpy()) for v in q.weights if v.name.endswith("output_max:0")}
    assert set(ranges.values()) == {6.0}  # tfmot's initial [-6, 6]
    others = {v.name: v.numpy().copy() for v in q.weights if not qat._is_range_variable(v)}
    x = np.random.default_rng(1).uniform(0, 255, (10, 32, 32, 1)).astype(np.float32)
    assert qat.calibrate_ranges(q, x, batch_size=4) == 3
    weights = {v.name: v for v in q.weights}
    # the in-model normalization maps 0..255 to 0..1: its output range now says so
    assert 0.97 < float(weights["quant_normalize/output_max:0"].numpy()) <= 1.0
    assert all(float(weights[n].numpy()) != 6.0 for n in ranges)
    for name, value in others.items():
        np.testing.assert_array_equal(weights[name].numpy(), value, err_msg=name)
    # and the calibrated model agrees with the float model better than tfmot's starting ranges
    fresh, _ = qat.quantize_model(model)
    ref = model(x, training=False).numpy()
    err = np.abs(q(x, training=False).numpy() - ref).mean()
    assert err <= np.abs(fresh(x, training=False).numpy() - ref).mean()


def test_calibration_images_are_a_seeded_subset():
    images = np.arange(100)[:, None]
    a = qat.calibration_images(images, 10, seed=0)
    assert len(a) == 10 and np.all(np.diff(a[:, 0]) > 0)
    np.testing.assert_array_equal(a, qat.calibration_images(images, 10, seed=0))
    assert len(qat.calibration_images(images[:5], 10)) == 5


def test_report_dict_keeps_the_keys_and_order_of_qat_report_json():
    report = qat.QATReport(
        default=["conv"], output_only={"normalize": "Normalize"}, scheme="default"
    )
    report.left_float.append({"name": "gain", "class": "Lambda", "reason": "no QuantizeConfig"})
    out = report.to_dict()
    assert list(out.items()) == [
        ("scheme", "default"),
        ("calibration_batches", 0),
        ("fully_quantized", False),
        ("default", ["conv"]),
        ("output_only", {"normalize": "Normalize"}),
        ("left_float", [{"name": "gain", "class": "Lambda", "reason": "no QuantizeConfig"}]),
        ("sparsity_not_preserved", []),
    ]
    out["default"].append("x")  # a copy
    assert report.default == ["conv"]
