"""The runtime applies the model card's filter chain (input.preprocess) without TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np

from kseg.data.io import fit_to_size
from kseg.filters import Chain
from kseg.inference import predict_image

CHAIN = [{"srad": {"iterations": 5}}, {"clahe": {"clip": 2.5}}]


def _with_chain(tiny_tflite, tmp_path, chain):
    src = tiny_tflite["float"]
    dst = tmp_path / "m.tflite"
    shutil.copy(src, dst)
    card = json.loads(src.with_suffix(".json").read_text())
    card["input"]["preprocess"] = chain
    dst.with_suffix(".json").write_text(json.dumps(card))
    return dst


def test_runtime_reads_the_chain_and_filters_before_the_model(tiny_tflite, tmp_path):
    from kseg.runtime import TFLiteModel

    m = TFLiteModel(_with_chain(tiny_tflite, tmp_path, CHAIN))
    assert m.filters.stages == Chain.parse(CHAIN).stages
    bare = TFLiteModel(tiny_tflite["float"])
    assert not bare.filters

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 1)).astype(np.uint8)
    x, _ = fit_to_size(image, m.input_size, "stretch")
    want = bare.predict(Chain.parse(CHAIN)(x)[None].astype(np.float32))
    got = m.predict(x[None].astype(np.float32))
    np.testing.assert_array_equal(got, want)
    assert not np.allclose(got, bare.predict(x[None].astype(np.float32)))  # it did filter
    # whole-image prediction goes through the same path
    full = predict_image(m, image)
    assert full.shape == (50, 70, 1)


def test_bad_chain_in_a_card_is_one_line_error(tiny_tflite, tmp_path):
    import pytest

    from kseg.errors import ConfigError
    from kseg.runtime import TFLiteModel

    with pytest.raises(ConfigError, match="model card input.preprocess: unknown filter 'blur'"):
        TFLiteModel(_with_chain(tiny_tflite, tmp_path, ["blur"]))


def test_runtime_and_preprocess_import_no_tensorflow():
    code = (
        "import sys, kseg.runtime, kseg.preprocess, kseg.preprocess.metrics;"
        "from kseg.filters import Chain; Chain.parse(['lee','nlm','srad'])"
        "(__import__('numpy').zeros((2,16,16,1),'uint8'));"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
