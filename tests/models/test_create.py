"""create_model's common path: option validation, input checks, normalization, head, load errors."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.errors import ConfigError, ModelError
from kseg.models import (
    create_model,
    custom_objects,
    load_model,
    model_spec,
    register_custom_objects,
)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown model 'unet3'.*did you mean.*valid: .*segnet"):
        create_model("unet3")


def test_unknown_option_lists_the_models_options():
    with pytest.raises(ConfigError) as err:
        create_model("unet", filter=8)
    msg = str(err.value)
    assert "model 'unet' has no option 'filter'" in msg
    assert "did you mean 'filters'" in msg
    assert "valid options: activation, depth, dropout, filters, groups, norm, upsampling" in msg
    assert "\n" not in msg


def test_option_only_valid_for_another_model_is_rejected():
    with pytest.raises(ConfigError, match="no option 'deep_supervision'"):
        create_model("unet", deep_supervision=True)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (
            {"norm": "batchnorm"},
            "option norm = 'batchnorm' use one of: batch, group, instance, none",
        ),
        ({"activation": "gelu"}, "relu, relu6, leaky_relu, hard_swish"),
        ({"upsampling": "cubic"}, "transpose, bilinear, nearest"),
        ({"depth": 0}, "option depth = 0 must be between 1 and 6"),
        ({"depth": 2.5}, "must be a whole number"),
        ({"dropout": 1.0}, "must be in [0.0, 1.0)"),
        ({"filters": "many"}, "must be a whole number"),
    ],
)
def test_bad_option_values_say_what_is_valid(options, fragment):
    with pytest.raises(ConfigError) as err:
        create_model("unet", input_shape=(64, 64, 1), **options)
    assert fragment in str(err.value)


def test_input_size_not_divisible_names_the_sizes_that_work():
    with pytest.raises(ConfigError) as err:
        create_model("unet", input_shape=(250, 250, 1), depth=4)
    assert str(err.value) == "input size 250 is not a multiple of 16 (depth 4); use 240 or 256"
    with pytest.raises(
        ConfigError, match=r"input size 8 is not a multiple of 16 \(depth 4\); use 16$"
    ):
        create_model("unet", input_shape=(8, 8, 1))


def test_channels_must_be_1_or_3_and_mean_must_match():
    with pytest.raises(ConfigError, match="input channels = 2: use 1"):
        create_model("unet", input_shape=(32, 32, 2), depth=2)
    with pytest.raises(ConfigError, match="data.mean has 2 values for 3 channels"):
        create_model("unet", input_shape=(32, 32, 3), depth=2, mean=(0.1, 0.2))
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("unet", input_shape=(32, 32, 1), depth=2, num_classes=0)


def test_normalize_layer_applies_per_channel_mean_and_std():
    model = create_model(
        "unet",
        input_shape=(32, 32, 3),
        depth=2,
        filters=4,
        mean=(0.5, 0.25, 0.0),
        std=(0.25, 0.5, 2.0),
    )
    layer = model.get_layer("normalize")
    pixels = np.full((1, 2, 2, 3), 255.0, np.float32)
    out = layer(pixels).numpy()[0, 0, 0]
    # (1 - 0.5) / 0.25 = 2, (1 - 0.25) / 0.5 = 1.5, (1 - 0) / 2 = 0.5
    np.testing.assert_allclose(out, [2.0, 1.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(
        layer(np.zeros((1, 1, 1, 3), np.float32)).numpy().ravel(), [-2.0, -0.5, 0.0]
    )
    spec = model_spec(model)
    assert spec["mean"] == [0.5, 0.25, 0.0] and spec["std"] == [0.25, 0.5, 2.0]
    assert spec["options"] == {
        "depth": 2, "filters": 4, "norm": "batch", "groups": 8, "activation": "relu",
        "upsampling": "transpose", "dropout": 0.0,
    }  # fmt: skip


def test_single_mean_is_expanded_to_every_channel():
    model = create_model("unet", input_shape=(32, 32, 3), depth=2, filters=4, mean=0.5, std=0.5)
    assert model_spec(model)["mean"] == [0.5, 0.5, 0.5]


def test_multiclass_head_is_softmax_and_binary_is_sigmoid():
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 1)).astype(np.float32)
    multi = create_model("unet", input_shape=(32, 32, 1), num_classes=3, depth=2, filters=4)
    probs = multi.predict(x, verbose=0)
    assert probs.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert multi.get_layer("mask").get_config()["activation"] == "softmax"
    binary = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    assert binary.get_layer("mask").get_config()["activation"] == "sigmoid"
    assert binary.get_layer("mask").dtype == "float32"


def test_deep_supervision_averages_one_head_per_full_resolution_node():
    model = create_model(
        "unet_pp", input_shape=(32, 32, 1), depth=3, filters=4, deep_supervision=True
    )
    heads = [layer.name for layer in model.layers if layer.name.startswith("logits_")]
    assert heads == ["logits_1", "logits_2", "logits_3"]
    assert model.output_shape == (None, 32, 32, 1)


def test_load_model_errors_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(ModelError, match=r"missing\.keras: model file not found$"):
        load_model(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ModelError) as err:
        load_model(bad)
    assert str(err.value).startswith(f"{bad}: cannot load model")
    assert "\n" not in str(err.value)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model format"):
        load_model(other)
    with pytest.raises(ModelError, match="not a SavedModel"):
        load_model(tmp_path)


def test_h5_round_trip_keeps_outputs_and_spec(tmp_path):
    model = create_model("segnet", input_shape=(32, 32, 1), depth=2, filters=4, norm="instance")
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 1)).astype(np.float32)
    model.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert model_spec(loaded)["options"]["norm"] == "instance"


def test_custom_objects_hook_merges_registered_providers():
    objects = custom_objects()
    assert {"kseg>GroupNorm", "kseg>MaxUnpool2D", "kseg>Normalize"} <= set(objects)
    sentinel = object()
    provider = register_custom_objects(lambda: {"TestOnlyObject": sentinel})
    try:
        assert custom_objects()["TestOnlyObject"] is sentinel
    finally:
        from kseg.models import _EXTRA_OBJECTS

        _EXTRA_OBJECTS.remove(provider)


def test_spec_of_a_foreign_model_is_read_from_the_graph():
    from kseg._keras import keras

    inp = keras.Input((16, 16, 1))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp), name="foreign")
    spec = model_spec(model)
    assert spec["name"] == "foreign" and spec["num_classes"] == 2 and spec["options"] == {}


def test_mobile_unet_loads_a_user_encoder_weights_file_and_checks_it(tmp_path):
    from kseg._keras import keras

    backbone = keras.applications.MobileNetV3Small(
        input_shape=(64, 64, 1), include_top=False, weights=None, include_preprocessing=False
    )
    weights = tmp_path / "mnv3.weights.h5"
    backbone.save_weights(str(weights))
    model = create_model(
        "mobile_unet", input_shape=(64, 64, 1), depth=3, encoder="mobilenet_v3_small",
        encoder_weights=str(weights),
    )  # fmt: skip
    want = backbone.get_layer("Conv").get_weights()[0]
    np.testing.assert_array_equal(model.get_layer("Conv").get_weights()[0], want)
    with pytest.raises(ConfigError, match=r"encoder_weights .*missing\.h5: file not found"):
        create_model(
            "mobile_unet", input_shape=(64, 64, 1), encoder="mobilenet_v3_small",
            encoder_weights=str(tmp_path / "missing.h5"),
        )  # fmt: skip
    with pytest.raises(ConfigError, match="encoder_weights needs a keras.applications encoder"):
        create_model("mobile_unet", input_shape=(64, 64, 1), encoder_weights=str(weights))


def test_mobile_unet_skips_are_the_expanded_activations_and_it_fits_the_edge_budget():
    from kseg.models.complexity import count_macs

    model = create_model("mobile_unet", input_shape=(256, 256, 1))
    # issue targets for the edge model at 256x256 with default options
    assert model.count_params() <= 500_000
    assert count_macs(model) <= 1.0e9
    for k in (1, 2, 3):
        concat = model.get_layer(f"dec{k}_concat")
        inputs = [t.node.layer.name for t in concat.input]
        assert inputs[1] == f"enc{k + 1}_0_expand_relu6", inputs
        # the skip is at this level's resolution: stride 2**k
        assert concat.input[1].shape[1] == 256 // 2**k
        assert concat.input[1].shape[-1] == 6 * model.get_layer(f"enc{k}_0_project_conv").filters


def test_unet_variants_declare_their_options_docs_and_switches():
    from kseg.models import MODELS
    from kseg.models.options import option_defaults

    shared = ["depth", "filters", "norm", "groups", "activation", "upsampling", "dropout"]
    assert list(option_defaults(MODELS.get("unet"))) == shared
    dilated = option_defaults(MODELS.get("dilated_unet"))
    assert list(dilated) == [*shared, "dilation"]
    assert (dilated["upsampling"], dilated["dilation"], dilated["depth"]) == ("nearest", 2, 4)
    assert option_defaults(MODELS.get("res_attention_unet"))["attention"] == "se"
    assert "Yu and Koltun" in MODELS.get("dilated_unet").__doc__
    assert MODELS.get("unet2").__name__ == "unet2"
    # the switches: unet2 down-samples with strided convs, res_unet has residual shortcuts
    unet2 = create_model("unet2", input_shape=(32, 32, 1), depth=2, filters=4)
    assert "enc0_down_conv" in {layer.name for layer in unet2.layers}
    unet = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    assert "enc0_pool" in {layer.name for layer in unet.layers}


def test_architectures_declare_their_options_once_and_get_one_style():
    from kseg.models import MODELS
    from kseg.models.options import ENCODER_DECODER, option_defaults

    shared = list(ENCODER_DECODER)
    assert option_defaults(MODELS.get("denoising_ae")) == {**ENCODER_DECODER, "depth": 3}
    assert list(option_defaults(MODELS.get("segnet"))) == [k for k in shared if k != "upsampling"]
    assert list(option_defaults(MODELS.get("unet_pp"))) == [*shared, "deep_supervision"]
    segnet = MODELS.get("segnet")
    assert segnet.__name__ == "segnet" and "Badrinarayanan" in segnet.__doc__
    # norm, groups and activation reach every block as one Style
    model = create_model(
        "segnet", input_shape=(32, 32, 1), depth=2, filters=4, norm="group", groups=2,
        activation="leaky_relu",
    )  # fmt: skip
    assert model.get_layer("enc1_a_gn").groups == 2
    assert model.get_layer("dec0_b_lrelu") is not None
    assert not [layer for layer in model.layers if layer.name.endswith(("_bn", "_relu"))]
