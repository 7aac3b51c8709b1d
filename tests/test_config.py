"""Config parsing: defaults, overrides, and one-line errors that name the key and the fix."""

from __future__ import annotations

import pytest

from kseg.config import (
    Config,
    Optimizer,
    ResizeMode,
    from_dict,
    load_config,
    replace,
    save_config,
    to_dict,
)
from kseg.errors import ConfigError


def test_defaults_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  optimizer: adamw\ndata:\n  img_size: 64\n")
    path.write_text(
        "train:\n  epochs: 7\n  optimizer: adamw\n  time_limit_minutes: 9\ndata:\n  img_size: 64\n"
    )
    cfg = load_config(
        path, {"train.epochs": 3, "model.name": "unet", "train.time_limit_minutes": None}
    )
    assert cfg.train.epochs == 3  # the flag wins over the file
    assert cfg.train.optimizer is Optimizer.ADAMW
    assert cfg.data.img_size == 64
    assert cfg.train.time_limit_minutes is None  # --set key=null clears a value from the file
    assert cfg.data.resize is ResizeMode.STRETCH


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(
        None,
        {
            "model.options": {"depth": 3, "filters": 8},
            "data.mean": [0.5],
            "data.augment.crop_scale": [0.6, 1.0],
        },
    )
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert to_dict(again)["data"]["augment"]["crop_scale"] == [0.6, 1.0]
    assert again.model.options == {"depth": 3, "filters": 8}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"train": {"epoch": 3}}, "unknown key 'train.epoch' (did you mean 'epochs'?)"),
        ({"trian": {}}, "unknown key 'trian' (did you mean 'train'?)"),
        ({"train": {"epochs": "many"}}, "train.epochs must be a whole number"),
        ({"train": {"epochs": 2.5}}, "train.epochs must be a whole number"),
        ({"train": {"optimizer": "adagrad"}}, "use one of: adam, adamw, sgd"),
        (
            {"data": {"augment": {"hflip": 0.5}}},
            "unknown key 'data.augment.hflip' (did you mean 'hflip_p'?)",
        ),
        ({"data": {"augment": {"crop_scale": [0.5]}}}, "data.augment.crop_scale needs 2 values"),
        ({"data": {"cache": "sometimes"}}, "data.cache must be true or false"),
        ({"model": {"options": [1, 2]}}, "model.options must be a mapping"),
        ({"data": 5}, "data must be a mapping"),
    ],
)
def test_bad_values_name_the_key(raw, needle):
    with pytest.raises(ConfigError) as err:
        from_dict(raw, source="my.yaml")
    msg = str(err.value)
    assert needle in msg
    assert msg.startswith("my.yaml")
    assert "\n" not in msg


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_replace_validates():
    cfg = replace(Config(), train={"epochs": 2})
    assert cfg.train.epochs == 2
    with pytest.raises(ConfigError):
        replace(Config(), train={"epochz": 2})


def test_shipped_configs_parse():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/*.yaml missing"
    for path in configs:
        load_config(path)
