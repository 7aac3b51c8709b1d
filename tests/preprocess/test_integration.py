"""One filter chain from the config reaches training, the run config, the model card, the Keras
predictor and the TensorFlow-free runtime, and every one of them filters the same pixels."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # a real (one-epoch) training run and a conversion

CHAIN = [{"lee": {"size": 3}}, {"clahe": {"clip": 3.0, "tiles": 4}}]


@pytest.fixture(scope="module")
def filtered_run(tmp_path_factory):
    from kseg.config import load_config
    from kseg.training import train

    out = tmp_path_factory.mktemp("prep") / "run"
    cfg = load_config(
        None,
        {
            "data.synthetic_n": 16,
            "data.img_size": 32,
            "data.preprocess": CHAIN,
            "data.augment.enabled": False,
            "model.options": {"depth": 2, "filters": 4},
            "train.epochs": 1,
            "train.batch_size": 8,
            "train.seed": 3,
        },
    )
    train(cfg, out, verbose=0)
    return out


def test_chain_is_stored_concrete_in_the_run_config(filtered_run):
    from kseg.config import load_config
    from kseg.filters import parse_chain

    cfg = load_config(filtered_run / "config.yaml")
    assert cfg.data.preprocess == parse_chain(CHAIN)
    assert cfg.data.channels == 1  # auto resolved from the data (grey ultrasound)


def test_training_path_card_and_runtime_filter_identically(filtered_run):
    from kseg.config import load_config
    from kseg.data.pipeline import load_splits
    from kseg.export import export_tflite
    from kseg.filters import Chain
    from kseg.runtime import KerasPredictor, TFLiteModel

    cfg = load_config(filtered_run / "config.yaml")
    card = export_tflite(filtered_run / "best.keras", "float32", max_dice_drop=-1)
    assert card["input"]["preprocess"] == [
        {"lee": {"size": 3, "looks": None}},
        {"clahe": {"clip": 3.0, "tiles": 4}},
    ]
    md = (filtered_run / "best.float32.json").with_suffix(".md").read_text()
    assert "`lee(size=3, looks=None)` -> `clahe(clip=3.0, tiles=4)`" in md

    raw = load_splits(cfg.data, seed=cfg.train.seed, progress=False, preprocess=False).val.images
    trained_on = load_splits(cfg.data, seed=cfg.train.seed, progress=False).val.images
    assert not np.array_equal(raw, trained_on)  # the chain changes the pixels

    runtime = TFLiteModel(card["tflite"]["path"])
    assert runtime.filters.stages == Chain.parse(CHAIN).stages
    # the runtime's filtering of raw pixels is the training array, bit for bit
    np.testing.assert_array_equal(runtime.filters.apply_pixels(raw).astype(np.uint8), trained_on)
    # and its predictions on raw pixels equal the bare model on the training arrays
    got = runtime.predict(raw.astype(np.float32))
    runtime.filters = Chain()
    want = runtime.predict(trained_on.astype(np.float32))
    np.testing.assert_array_equal(got, want)

    keras_pred = KerasPredictor.from_file(filtered_run / "best.keras")
    assert keras_pred.filters.stages == runtime_stages(card)
    np.testing.assert_allclose(
        keras_pred.predict(raw.astype(np.float32)),
        np.asarray(keras_pred.model(trained_on.astype(np.float32), training=False)),
        atol=1e-6,
    )
    np.testing.assert_allclose(got, keras_pred.predict(raw.astype(np.float32)), atol=1e-4)


def runtime_stages(card):
    from kseg.filters import chain_from_card

    return chain_from_card(card).stages
