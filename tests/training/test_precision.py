"""train.precision: the choice follows the CPU flags, a bfloat16-trained run saves float32 models
that convert to INT8 and pass parity, and losses/metrics stay float32 under the policy."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from kseg.config import load_config
from kseg.errors import ConfigError
from kseg.training.precision import cpu_flags, precision_policy, resolve_precision


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(info) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    ("flags", "policy"),
    [
        ({"amx_bf16", "amx_tile"}, "mixed_bfloat16"),
        ({"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
        ({"avx512f", "avx2"}, "float32"),
        (set(), "float32"),
    ],
)
def test_auto_follows_bf16_units(flags, policy):
    choice = resolve_precision("auto", flags=flags, gpus=0)
    assert choice.policy == policy
    assert choice.reason  # the run directory says why


def test_explicit_choices_and_gpu_rules():
    assert resolve_precision("float32", flags={"amx_bf16"}, gpus=0).policy == "float32"
    assert resolve_precision("mixed_bfloat16", flags=set(), gpus=0).policy == "mixed_bfloat16"
    assert resolve_precision("mixed_float16", flags=set(), gpus=1).policy == "mixed_float16"
    assert resolve_precision("auto", flags={"amx_bf16"}, gpus=2).policy == "float32"
    with pytest.raises(ConfigError, match="mixed_float16 needs a GPU"):
        resolve_precision("mixed_float16", flags={"amx_bf16"}, gpus=0)
    with pytest.raises(ConfigError, match="train.precision = 'bf16' is not valid"):
        load_config(None, {"train.precision": "bf16"})


@pytest.mark.parametrize(
    ("gpus", "policy", "says"),
    [
        ([("NVIDIA A100", (8, 0))], "mixed_float16", "tensor cores"),
        ([("Tesla V100", (7, 0)), ("Tesla V100", (7, 0))], "mixed_float16", "2 GPU(s)"),
        ([("Tesla P100", (6, 0))], "float32", "no tensor cores"),
        (
            [("NVIDIA A100", (8, 0)), ("GTX 1080", (6, 1))],
            "float32",
            "GTX 1080",
        ),  # the slowest rules
        ([("AMD MI100", None)], "float32", "compute capability unknown"),
    ],
)
def test_auto_on_gpus_follows_tensor_cores(gpus, policy, says):
    from kseg.training.precision import GpuInfo

    devices = [GpuInfo(name, cc) for name, cc in gpus]
    choice = resolve_precision(
        "auto", flags={"amx_bf16"}, gpus=devices
    )  # the GPU decides, not the CPU
    assert choice.policy == policy
    assert says in choice.reason


def test_gpu_devices_reads_capability_from_tensorflow(monkeypatch):
    from kseg._keras import tf
    from kseg.training import precision

    fake = [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: fake)
    monkeypatch.setattr(
        tf.config.experimental,
        "get_device_details",
        lambda d: {"device_name": "NVIDIA L4", "compute_capability": (8, 9)},
    )
    assert precision.gpu_devices() == [precision.GpuInfo("NVIDIA L4", (8, 9))]
    assert resolve_precision("auto", flags=set()).policy == "mixed_float16"


def test_mixed_float16_model_compiles_with_loss_scaling():
    # what auto picks on a tensor-core GPU: Keras wraps the optimizer in dynamic loss scaling
    from kseg._keras import keras
    from kseg.config import load_config
    from kseg.training.budget import schedule_of
    from kseg.training.loop import build_model, compile_model

    cfg = load_config(
        None,
        {
            "data.img_size": 32,
            "data.channels": 1,
            "train.schedule": "cosine",
            "model.options": {"depth": 2, "filters": 4},
        },
    )
    with precision_policy("mixed_float16"):
        model = build_model(cfg)
    compile_model(model, cfg, steps_per_epoch=4)
    assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert schedule_of(model.optimizer) is not None  # a budget run can still re-size the curve
    assert model.layers[-1].compute_dtype == "float32"  # the head stays float32
    assert model.layers[3].compute_dtype == "float16"


def test_loss_and_dice_stay_float32_under_bfloat16():
    from kseg._keras import tf
    from kseg.losses import get_loss
    from kseg.metrics import Dice

    rng = np.random.default_rng(0)
    y = (rng.random((2, 16, 16, 1)) > 0.5).astype(np.float32)
    p32 = rng.random((2, 16, 16, 1)).astype(np.float32)
    p16 = tf.cast(p32, tf.bfloat16)
    with precision_policy("mixed_bfloat16"):
        loss = get_loss("combo")(y, p16)
        dice = Dice()
        dice.update_state(y, p16)
    assert loss.dtype == tf.float32 and dice.result().dtype == tf.float32
    exact = get_loss("combo")(y, tf.cast(p16, tf.float32))
    assert float(loss) == pytest.approx(float(exact), rel=1e-6)


def _saved_dtypes(path) -> set[str]:
    with zipfile.ZipFile(path) as zf:
        cfg = json.loads(zf.read("config.json"))
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if "dtype" in node:
                d = node["dtype"]
                found.add(d if isinstance(d, str) else json.dumps(d, sort_keys=True))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(cfg["config"]["layers"])
    return found


def test_to_float32_keeps_weights_and_outputs():
    from kseg.models import create_model
    from kseg.training.precision import is_mixed, to_float32

    with precision_policy("mixed_bfloat16"):
        mixed = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    assert is_mixed(mixed)
    plain = to_float32(mixed)
    assert not is_mixed(plain) and plain.name == mixed.name
    for a, b in zip(mixed.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 1)).astype(np.float32)
    p_mixed = mixed.predict(x, verbose=0)
    p_plain = plain.predict(x, verbose=0)
    assert p_plain.dtype == np.float32
    # bfloat16 has 8 mantissa bits: the float32 rebuild differs by rounding only
    assert np.abs(p_mixed - p_plain).max() < 0.05


@pytest.mark.slow
def test_bfloat16_run_saves_float32_models_that_convert(tmp_path):
    from kseg.export import export_tflite
    from kseg.models import load_model
    from kseg.training import train

    overrides = {
        "data.synthetic_n": 64,
        "data.img_size": 64,
        "train.epochs": 4,
        "train.steps_per_epoch": 12,
        "train.batch_size": 8,
        "train.learning_rate": 0.003,
        "train.seed": 7,
        "train.precision": "mixed_bfloat16",
        "model.options": {"depth": 3, "filters": 8},
    }
    out = tmp_path / "bf16"
    metrics = train(load_config(None, overrides), out, verbose=0)
    recorded = json.loads((out / "precision.json").read_text())
    assert recorded["policy"] == "mixed_bfloat16" and recorded["requested"] == "mixed_bfloat16"
    assert metrics["train_precision"] == "mixed_bfloat16"
    for name in ("best.keras", "last.keras"):
        dtypes = _saved_dtypes(out / name)
        assert dtypes and not any("bfloat16" in d for d in dtypes), dtypes
    model = load_model(out / "best.keras")
    assert {w.dtype.name for w in model.weights} == {"float32"}
    card = export_tflite(out / "best.keras", "int8", out=out / "m.int8.tflite")
    assert card["parity"]["passed"] is True
    assert card["tflite"]["builtin_only"] and not card["tflite"]["float_ops"]
    assert card["float_dice"] > 0.3  # it learned: parity on an untrained model proves little
