"""Parameter and MAC counts against hand computations; TFLite graph report on known graphs."""

from __future__ import annotations

from kseg._keras import keras
from kseg.models import create_model
from kseg.models.complexity import count_macs, count_params, int8_problems, tflite_report

L = keras.layers


def test_one_conv_model_by_hand():
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, L.Conv2D(4, 3, padding="same")(inp))
    assert count_params(model) == 4 * 3 * 3 * 3 + 4  # kernel + bias = 112
    assert count_macs(model) == 8 * 8 * 4 * (3 * 3 * 3)  # 6912


def test_strided_depthwise_transposed_dense_and_matmul_by_hand():
    inp = keras.Input((16, 16, 4))
    x = L.Conv2D(8, 3, strides=2, padding="same")(inp)  # 8*8*8*36 = 18432
    x = L.DepthwiseConv2D(3, padding="same")(x)  # 8*8*8*9 = 4608
    x = L.Conv2DTranspose(2, 2, strides=2, padding="same")(x)  # 8*8*8 * 2*2 * 2 = 4096
    x = L.Dense(5)(x)  # 16*16*5 * 2 = 2560
    flat = L.Reshape((256, 5))(x)
    scores = L.Dot(axes=(2, 2))([flat, flat])  # 256*256 * 5 = 327680
    model = keras.Model(inp, scores)
    assert count_macs(model) == 18432 + 4608 + 4096 + 2560 + 327680


def test_batch_norm_statistics_count_as_parameters():
    inp = keras.Input((4, 4, 2))
    model = keras.Model(inp, L.BatchNormalization()(inp))
    assert count_params(model) == 4 * 2  # gamma, beta, moving mean, moving variance


def test_unet_macs_at_256_scale_with_area_and_filters_squared():
    small = count_macs(create_model("unet", input_shape=(128, 128, 1), depth=3, filters=8))
    big = count_macs(create_model("unet", input_shape=(256, 256, 1), depth=3, filters=8))
    wide = count_macs(create_model("unet", input_shape=(128, 128, 1), depth=3, filters=16))
    assert big == 4 * small
    # first conv (1 input channel) and head (1 output) scale linearly, the rest quadratically
    assert 3.9 * small < wide < 4.0 * small


def test_tflite_report_of_a_float_graph_lists_ops_and_float_tensors():
    from kseg.export.convert import convert_model

    inp = keras.Input((8, 8, 1))
    model = keras.Model(inp, L.Conv2D(2, 3, padding="same", activation="sigmoid")(inp))
    report = tflite_report(convert_model(model, "float32"))
    assert "CONV_2D" in report["ops"] and "LOGISTIC" in report["ops"]
    assert report["input_shape"] == [1, 8, 8, 1] and report["output_shape"] == [1, 8, 8, 2]
    assert report["input_dtype"] == "float32"
    assert any(op.startswith("CONV_2D(") for op in report["float_ops"])
    assert int8_problems(report)[0].startswith("float ops: ")
