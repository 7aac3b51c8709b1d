"""Config parsing: defaults, overrides, and one-line errors that name the key and the fix."""

from __future__ import annotations

import pytest

from kseg.config import (
    Config,
    Optimizer,
    ResizeMode,
    from_dict,
    load_config,
    load_run_config,
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


def test_run_config_leaves_out_keys_of_another_version(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    save_config(load_config(None, {"train.epochs": 4}), path)
    path.write_text(
        path.read_text().replace("train:\n", "train:\n  ema: 0.99\n") + "extra:\n  a: 1\n"
    )
    cfg = load_run_config(path)
    assert cfg.train.epochs == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'train.ema', 'extra'" in err and str(path) in err
    with pytest.raises(ConfigError, match="unknown key 'extra'"):
        load_config(path)  # a user's own config stays strict
    path.write_text(path.read_text().replace("epochs: 4", "epochs: many"))
    with pytest.raises(ConfigError, match="train.epochs must be a whole number"):
        load_run_config(path)  # only unknown keys are forgiven


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


# ---------------------------------------------------------------------------- data.classes


def test_classes_set_num_classes_and_round_trip(tmp_path):
    from kseg.config import class_names

    path = tmp_path / "c.yaml"
    path.write_text("data:\n  classes: {nerve: 1, vessel: 2}\n")
    cfg = load_config(path)
    assert cfg.model.num_classes == 3  # follows the names (default 1 left alone)
    assert class_names(cfg) == ("background", "nerve", "vessel")
    save_config(cfg, tmp_path / "run.yaml")
    assert "classes:\n    nerve: 1\n    vessel: 2\n" in (tmp_path / "run.yaml").read_text()
    assert load_config(tmp_path / "run.yaml") == cfg
    # --set, whole mapping (YAML flow style) or one dotted key per class
    a = load_config(None, {"data.classes": {"nerve": 1, "vessel": 2}})
    b = load_config(None, {"data.classes.nerve": 1, "data.classes.vessel": 2})
    assert a == b == cfg
    # colours, list form, explicit consistent num_classes
    c = load_config(None, {"data.classes": {"tumour": [255, 0, 0]}})
    assert c.data.classes == {"tumour": (255, 0, 0)} and c.model.num_classes == 1
    assert to_dict(c)["data"]["classes"] == {"tumour": [255, 0, 0]}
    assert class_names(c) == ("background", "tumour")
    d = load_config(None, {"data.classes": ["liver", "lesion"], "model.num_classes": 3})
    assert d.data.classes == {"liver": 1, "lesion": 2}
    # replace() with new names: num_classes follows them again
    e = replace(cfg, data={"classes": {"a": 1, "b": 2, "c": 3}})
    assert e.model.num_classes == 4 and class_names(e)[3] == "c"
    assert replace(cfg, data={"channels": 1}).model.num_classes == 3


def test_class_names_without_names():
    from kseg.config import class_names

    assert class_names(Config()) == ("background", "foreground")
    four = load_config(None, {"model.num_classes": 4})
    assert class_names(four) == ("background", "class_1", "class_2", "class_3")
    merged = load_config(None, {"data.classes": ["a", "b"], "data.merge_classes": True})
    assert merged.model.num_classes == 1
    assert class_names(merged) == ("background", "foreground")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (
            {"data": {"classes": {"nerve": 1, "vessel": 2}}, "model": {"num_classes": 5}},
            "model.num_classes = 5 but data.classes names 2 class(es) (nerve, vessel), which "
            "needs model.num_classes = 3",
        ),
        (
            {"data": {"classes": {"nerve": 1, "vessel": 2}}, "model": {"num_classes": 1}},
            "(or data.merge_classes: true to train them as one foreground)",
        ),
        (
            {"data": {"classes": ["a", "b"], "merge_classes": True}, "model": {"num_classes": 3}},
            "data.merge_classes trains one foreground (binary) but model.num_classes = 3",
        ),
        ({"data": {"classes": {"a": 0}}}, "data.classes.a = 0 is not valid; use an id 1..65535"),
        ({"data": {"classes": {"a": [0, 0, 0]}}}, "or a colour [R, G, B] other than black"),
        ({"data": {"classes": {"a": [300, 0, 0]}}}, "data.classes.a = [300, 0, 0] is not valid"),
        ({"data": {"classes": {"a": 1, "b": [1, 2, 3]}}}, "data.classes mixes ids and colours"),
        ({"data": {"classes": {"a": 2, "b": 2}}}, "data.classes: a and b both have 2"),
        ({"data": {"classes": {"background": 1}}}, "'background' is reserved for id 0"),
        ({"data": {"classes": {"a,b": 1}}}, "class name 'a,b' is not valid"),
        ({"data": {"classes": "nerve"}}, "data.classes must map class names to ids or colours"),
        ({"model": {"num_classes": 0}}, "model.num_classes = 0 is not valid"),
    ],
)
def test_classes_errors_name_both_keys(raw, needle):
    with pytest.raises(ConfigError) as err:
        from_dict(raw, source="my.yaml")
    msg = str(err.value)
    assert needle in msg and msg.startswith("my.yaml") and "\n" not in msg
