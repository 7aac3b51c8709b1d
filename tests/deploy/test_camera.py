"""The camera wrapper: RGB -> gray inside the graph (numbers), uint8 input for float modes, and
one clear line for models a bundle cannot hold."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.deploy.camera import RGB_TO_GRAY, camera_model, check_exportable, gray_to_rgb
from kseg.errors import ModelError
from kseg.models import create_model


@pytest.fixture(scope="module")
def gray_model():
    return create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)


def test_rgb_wrapper_applies_bt601_luma_before_the_model(gray_model):
    wrapped = camera_model(gray_model)
    assert wrapped.input_shape == (None, 32, 32, 3)
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    gray = (rgb * np.asarray(RGB_TO_GRAY, np.float32)).sum(-1, keepdims=True)
    np.testing.assert_allclose(
        wrapped.predict(rgb, verbose=0), gray_model.predict(gray, verbose=0), atol=1e-5
    )
    # a gray image repeated into R, G, B comes out as the model's own answer
    g = rgb[..., :1].round()
    np.testing.assert_allclose(
        wrapped.predict(gray_to_rgb(g), verbose=0), gray_model.predict(g, verbose=0), atol=1e-5
    )


def test_rgb_model_is_used_as_it_is():
    m = create_model("unet", input_shape=(32, 32, 3), depth=2, filters=4)
    assert camera_model(m) is m


def test_float_mode_with_uint8_input_casts_inside_the_graph(gray_model, tmp_path):
    from kseg.export import convert_model
    from kseg.runtime import TFLiteModel

    wrapped = camera_model(gray_model)
    path = tmp_path / "m.tflite"
    path.write_bytes(convert_model(wrapped, "float32", io_dtype="uint8"))
    m = TFLiteModel(path, runtime="litert")
    assert m.input_dtype == np.uint8 and m.output_dtype == np.float32
    x = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3)).astype(np.uint8)
    np.testing.assert_allclose(
        m.invoke_raw(x), wrapped.predict(x.astype(np.float32), verbose=0), atol=1e-5
    )
    from kseg.deploy.metadata import read_metadata

    assert read_metadata(path) == {
        "has_metadata": False,
        "metadata_bytes": 0,
        "associated_files": {},
    }
    # without the request a float model keeps its float input (kseg convert is unchanged)
    path.write_bytes(convert_model(wrapped, "float32"))
    assert TFLiteModel(path, runtime="litert").input_dtype == np.float32


def test_multi_output_denoiser_and_odd_shapes_are_refused(gray_model):
    from kseg._keras import keras

    # kseg's UNet++ averages its deep-supervision heads; a model that keeps them apart is refused
    x = keras.Input((32, 32, 1))
    feats = gray_model(x)
    heads = keras.Model(x, [feats, keras.layers.Conv2D(1, 1, activation="sigmoid")(feats)])
    with pytest.raises(ModelError, match="outputs .*deep-supervision"):
        check_exportable(heads, "heads.keras")
    dae = create_model("denoising_ae", input_shape=(32, 32, 1), depth=2, filters=4)
    with pytest.raises(ModelError, match="denoise model .*outputs an image"):
        check_exportable(dae, "dae.keras")
    y = keras.Input((32, 48, 1))  # not square
    odd = keras.Model(y, keras.layers.Conv2D(1, 1, activation="sigmoid")(y))
    with pytest.raises(ModelError, match=r"not \(N, S, S, 1\|3\)"):
        check_exportable(odd, "odd.keras")
