"""Pruning: the policy's targets are reached within 1 %, named layers stay dense, the encoder is
pruned harder than the decoder, 2:4 blocks hold, and pruning-preserving QAT keeps the zeros in the
INT8 file."""

from __future__ import annotations

import kseg_optimize_helpers as H
import pytest

from kseg._keras import keras
from kseg.errors import ConfigError
from kseg.models import MODELS, create_model
from kseg.optimize import prune, qat
from kseg.optimize._convert import float_ops, io_dtypes, tflite_weight_sparsity
from kseg.optimize._train import fit, steps_per_epoch


def tiny(name: str) -> keras.Model:
    opts = {"depth": 2, "width": 0.25} if name == "mobile_unet" else {"depth": 2, "filters": 4}
    return create_model(name, input_shape=(32, 32, 1), **opts)


def _prune(model, data, sparsity=0.5, **kw):
    epochs = kw.pop("epochs", 1)
    total = epochs * steps_per_epoch(data, 8)
    wrapped, plan = prune.prune_model(model, sparsity, total_steps=total, **kw)
    fit(
        wrapped,
        data,
        epochs=epochs,
        batch_size=8,
        loss=keras.losses.BinaryCrossentropy(),
        callbacks=prune.pruning_callbacks(),
        run_eagerly=True,
    )
    return prune.strip(wrapped), plan


@pytest.mark.parametrize("name", MODELS.names())
def test_every_architecture_reaches_policy_targets(name, tiny_data):
    model = tiny(name)
    stripped, plan = _prune(model, tiny_data, 0.5, schedule="constant")
    report = prune.sparsity_report(stripped, plan)
    assert not any("prune_low_magnitude" in layer.name for layer in stripped.layers)
    for row in report["layers"]:
        # within 1 %, or one weight for layers too small to hit the target more closely
        assert abs(row["achieved"] - row["target"]) <= max(0.01, 1.0 / row["weights"]), row
    assert abs(report["overall_pruned"] - 0.5) <= 0.01
    # default policy: first conv and the 1x1 head stay dense
    rows = {r["layer"]: r for r in report["layers"]}
    assert rows["logits"]["achieved"] == 0.0
    assert report["layers"][0]["achieved"] == 0.0


def test_default_policy_prunes_encoder_harder_and_balances_to_target():
    model = tiny("unet")
    plan = prune.PrunePolicy().plan(model, 0.5)
    enc = {v for k, v in plan.items() if k.startswith(("enc", "bottleneck")) and v > 0}
    dec = {v for k, v in plan.items() if k.startswith("dec")}
    assert len(enc) == 1 and len(dec) == 1
    (s_enc,), (s_dec,) = enc, dec
    assert s_enc == pytest.approx(1.25 * s_dec)
    sizes = {layer.name: prune._kernel_size(layer) for layer in model.layers}
    pruned = {k: v for k, v in plan.items() if v > 0}
    mean = sum(sizes[k] * v for k, v in pruned.items()) / sum(sizes[k] for k in pruned)
    assert mean == pytest.approx(0.5, abs=1e-6)
    assert plan["logits"] == 0.0 and plan["enc0_a_conv"] == 0.0


def test_policy_file_patterns_and_overrides(tmp_path, tiny_data):
    path = tmp_path / "policy.yaml"
    path.write_text("dense: ['@head', 'dec0_*']\noverrides: {'bottleneck_*': 0.8}\n")
    policy = prune.PrunePolicy.from_file(path)
    stripped, plan = _prune(tiny("unet"), tiny_data, 0.5, policy=policy, schedule="constant")
    rows = {r["layer"]: r for r in prune.sparsity_report(stripped, plan)["layers"]}
    assert all(
        r["achieved"] == 0.0 for n, r in rows.items() if n.startswith("dec0_") or n == "logits"
    )
    assert rows["enc0_a_conv"]["achieved"] > 0.4  # first conv no longer protected by this policy
    assert rows["bottleneck_a_conv"]["achieved"] == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ConfigError, match="unknown pruning policy key 'dens'"):
        prune.PrunePolicy.from_dict({"dens": []})


def test_polynomial_schedule_fires_within_a_short_run(tiny_data):
    # tfmot's default frequency (100 steps) would leave this 3-step run unpruned
    stripped, plan = _prune(tiny("unet"), tiny_data, 0.6, epochs=3, schedule="polynomial")
    assert prune.sparsity_report(stripped, plan)["overall_pruned"] == pytest.approx(0.6, abs=0.01)
    sched = prune.make_schedule("polynomial", 0.6, 3)
    assert sched.get_config()["config"]["end_step"] <= 2


def test_two_four_structured(tiny_data):
    stripped, plan = _prune(tiny("unet"), tiny_data, 0.5, m_by_n=(2, 4), schedule="constant")
    report = prune.sparsity_report(stripped, plan, m_by_n=(2, 4))
    pruned = [r for r in report["layers"] if r["target"] > 0]
    assert pruned and all(r["m_by_n_ok"] for r in pruned)
    assert all(r["achieved"] == pytest.approx(0.5, abs=0.01) for r in pruned)


@pytest.mark.slow
def test_prune_preserving_qat_keeps_sparsity_in_int8(tiny_data):
    model = tiny("unet")
    stripped, plan = _prune(model, tiny_data, 0.5, schedule="constant")
    before = prune.sparsity_report(stripped, plan)["overall"]
    q, report = qat.quantize_model(stripped, scheme="prune_preserve")
    assert report.fully_quantized
    fit(
        q,
        tiny_data,
        epochs=1,
        batch_size=8,
        loss=keras.losses.BinaryCrossentropy(),
        run_eagerly=True,
    )
    flat = H.to_int8_tflite(q, tiny_data.x_train)
    assert io_dtypes(flat) == ("int8", "int8") and float_ops(flat) == []
    kept = tflite_weight_sparsity(flat)["overall"]
    assert before > 0.45
    assert kept == pytest.approx(before, abs=0.01)


def test_tflite_weight_entropy_counts_bits_of_the_int8_filter_values():
    """Per-channel int8 quantization maps +-0.5 to +-127 and 0 to 0, so hand-set kernels give
    known entropies: two equally common values 1 bit, {0: 1/2, +127: 1/4, -127: 1/4} 1.5 bits."""
    import numpy as np

    from kseg.optimize._convert import convert_int8, tflite_weight_entropy

    inp = keras.Input((8, 8, 1))
    model = keras.Model(inp, keras.layers.Conv2D(2, 2, padding="same")(inp))
    kernel = np.zeros((2, 2, 1, 2), np.float32)
    kernel[..., 0], kernel[..., 1] = 0.5, -0.5
    model.layers[-1].set_weights([kernel, np.zeros(2, np.float32)])
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 1)).astype(np.float32)
    got = tflite_weight_entropy(convert_int8(model, images))
    assert got["weights"] == 8 and got["bits_per_weight"] == pytest.approx(1.0)
    assert got["ideal_bytes"] == pytest.approx(1.0)
    kernel[0] = 0.0  # half of each channel pruned
    model.layers[-1].set_weights([kernel, np.zeros(2, np.float32)])
    got = tflite_weight_entropy(convert_int8(model, images))
    assert got["bits_per_weight"] == pytest.approx(1.5)
