"""Filter chains from the config: validation, defaults, round trip, application."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from kseg.errors import ConfigError
from kseg.filters import Chain, parse_chain
from kseg.filters.pixel import clahe, lee


def test_parse_fills_defaults_and_accepts_every_form():
    full = ({"lee": {"size": 5, "looks": None}}, {"clahe": {"clip": 2.0, "tiles": 8}})
    assert parse_chain([{"lee": {"size": 5}}, {"clahe": {"clip": 2.0}}]) == full
    assert parse_chain(["lee", "clahe"]) == full
    assert parse_chain([{"lee": None}, "clahe"]) == full
    assert parse_chain("lee:size=5+clahe:clip=2.0") == full
    assert parse_chain(None) == () and parse_chain([]) == ()


def test_round_trip_through_yaml():
    chain = Chain.parse([{"frost": {"size": 7, "damping": 1.5}}, "median"])
    again = Chain.parse(yaml.safe_load(yaml.safe_dump(chain.to_list())))
    assert again.stages == chain.stages


def test_errors_name_the_key_and_list_valid_values():
    with pytest.raises(
        ConfigError,
        match=r"unknown filter 'leee' \(did you mean 'lee'\?\); valid: bilateral, clahe",
    ):
        parse_chain(["leee"])
    with pytest.raises(ConfigError, match="lee has no parameter 'window'; valid: size, looks"):
        parse_chain([{"lee": {"window": 5}}])
    with pytest.raises(ConfigError, match="data.preprocess: .*median.size = 4"):
        parse_chain([{"median": {"size": 4}}])
    with pytest.raises(ConfigError, match="must be a number"):
        parse_chain([{"clahe": {"clip": "high"}}])
    with pytest.raises(ConfigError, match="denoising_ae needs exactly one parameter, model"):
        parse_chain(["denoising_ae"])


def test_chain_equals_the_stages_applied_in_order():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, 32, 32, 1)).astype(np.uint8)
    chain = Chain.parse("lee:size=3+clahe:clip=3")
    want = np.stack([clahe(lee(im, size=3), clip=3.0) for im in batch])
    np.testing.assert_array_equal(chain(batch), want)
    np.testing.assert_array_equal(chain(batch[1]), want[1])  # one image, no batch axis
    assert chain(batch).dtype == np.uint8


def test_empty_chain_is_identity():
    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    assert Chain.parse(None)(x) is not None
    np.testing.assert_array_equal(Chain.parse(None)(x), x)
    assert not Chain.parse([]) and Chain.parse(["lee"]).describe() == "lee(size=5, looks=None)"


def test_load_splits_applies_the_chain_exactly_once():
    from kseg.config import DataConfig
    from kseg.data.pipeline import load_splits

    cfg = DataConfig(synthetic_n=8, img_size=32, preprocess=parse_chain(["lee", "clahe"]))
    raw = load_splits(cfg, 0, preprocess=False)
    pre = load_splits(cfg, 0)
    np.testing.assert_array_equal(pre.train.images, Chain.parse(cfg.preprocess)(raw.train.images))
    np.testing.assert_array_equal(pre.val.clean, raw.val.clean)  # the clean target is untouched
    np.testing.assert_array_equal(pre.val.masks, raw.val.masks)


def test_denoising_ae_stage_runs_the_model_and_keeps_dtype(tmp_path):
    from kseg.models import create_model
    from kseg.runtime import open_model

    model = create_model("denoising_ae", input_shape=(32, 32, 1), num_classes=1, depth=1, filters=4)
    path = tmp_path / "dae.keras"
    model.save(path)
    chain = Chain.parse([{"denoising_ae": {"model": str(path)}}, "median"], open_model=open_model)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, 32, 32, 1)).astype(np.uint8)
    out = chain(batch)
    assert out.shape == batch.shape and out.dtype == np.uint8
    want_ae = np.clip(np.rint(model.predict(batch.astype(np.float32), verbose=0)), 0, 255)
    from kseg.filters.pixel import median

    want = np.stack([median(im) for im in want_ae.astype(np.uint8)])
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1
    # an image of another size is resized to the model input and back
    assert chain(batch[0, :20, :24]).shape == (20, 24, 1)
    with pytest.raises(Exception, match="denoising_ae model file not found"):
        Chain.parse([{"denoising_ae": {"model": str(tmp_path / "nope.keras")}}])(batch)


class _Halver:
    """A fake denoiser model: halves the pixels (no TensorFlow)."""

    input_size = 16
    opened: list = []

    def __init__(self, path):
        self.opened.append(Path(path).name)

    def predict(self, x):
        return x / 2


def test_denoiser_stage_is_opened_by_the_opener_it_is_given(tmp_path):
    (tmp_path / "dae.tflite").write_bytes(b"x")
    spec = [{"denoising_ae": {"model": str(tmp_path / "dae.tflite")}}]
    batch = np.full((3, 16, 16, 1), 200, np.uint8)
    _Halver.opened.clear()
    out = Chain.parse(spec, open_model=_Halver)(batch)
    assert out.dtype == np.uint8 and np.all(out == 100)
    assert _Halver.opened == ["dae.tflite"]  # opened once, reused for every image
    bound = Chain.parse(spec).bind(_Halver)
    assert np.all(bound(batch[:1]) == 100) and bound == Chain.parse(spec)


def test_denoiser_stage_without_an_opener_is_one_clear_error(tmp_path, monkeypatch):
    import kseg.filters.chain as chain_mod
    from kseg.errors import ModelError

    (tmp_path / "dae.tflite").write_bytes(b"x")
    monkeypatch.setattr(chain_mod, "_default_opener", [])
    chain = Chain.parse([{"denoising_ae": {"model": str(tmp_path / "dae.tflite")}}])
    with pytest.raises(ModelError, match="no model opener for the denoising_ae stage"):
        chain(np.zeros((1, 16, 16, 1), np.uint8))


def test_runtime_sets_the_default_opener():
    import kseg.filters.chain as chain_mod
    from kseg.runtime import open_model

    assert chain_mod._default_opener == [open_model]
