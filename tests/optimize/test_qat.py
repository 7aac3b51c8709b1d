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


@pytest.mark.parametrize("name", MODELS.names())
def test_every_architecture_is_fully_quantized(name):
    model, report = qat.quantize_model(tiny(name))
    assert report.left_float == [], report.left_float
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
