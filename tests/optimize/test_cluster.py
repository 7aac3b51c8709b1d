"""Weight clustering: every segmentation model clusters and strips with at most N distinct values
per clustered kernel and its dense-pattern layers untouched; after pruning the zeros survive
clustering and INT8 conversion, and the clustered INT8 file gzips smaller than the pruned one; bad
values are one-line errors; a prune -> cluster -> convert recipe records the cluster settings in the
model card."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kseg._keras import keras
from kseg.errors import ConfigError
from kseg.models import MODELS, create_model, model_task
from kseg.optimize import cluster, prune
from kseg.optimize._convert import convert_int8, gzip_size, tflite_weight_sparsity
from kseg.optimize._train import fit, steps_per_epoch
from kseg.optimize.cli import optimize

SEGMENTATION = [n for n in MODELS.names() if model_task(n) == "segment"]


def tiny(name: str, **kw) -> keras.Model:
    opts = {"depth": 2, "width": 0.25} if name == "mobile_unet" else {"depth": 2, "filters": 8}
    return create_model(name, input_shape=(32, 32, 1), **{**opts, **kw})


def _unique(layer: keras.layers.Layer) -> int:
    return max(
        len(np.unique(getattr(layer, w).numpy()))
        for w in cluster.CLUSTERED_WEIGHTS[type(layer).__name__]
    )


def _fit(model, data, callbacks=()):
    fit(
        model,
        data,
        epochs=1,
        batch_size=8,
        loss=keras.losses.BinaryCrossentropy(),
        callbacks=callbacks,
        run_eagerly=True,
    )


@pytest.mark.parametrize(
    "name, options",
    [(n, {}) for n in SEGMENTATION] + [("unet", {"norm": "group", "groups": 2})],
    ids=[*SEGMENTATION, "unet-groupnorm"],
)
def test_every_segmentation_model_clusters_and_strips(name, options):
    model = tiny(name, **options)
    original = [w.copy() for w in model.get_weights()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. tfmot's "does not have enough weights" must not leak
        wrapped, plan = cluster.cluster_model(model, 8)
        stripped = cluster.strip(wrapped)
    assert any(type(layer).__name__ == "ClusterWeights" for layer in wrapped.layers)
    assert not any(type(layer).__name__ == "ClusterWeights" for layer in stripped.layers)
    assert [layer.name for layer in stripped.layers] == [layer.name for layer in model.layers]
    _, skipped = cluster.plan_clusters(model, 8)
    clustered = [k for k, v in plan.items() if v > 0]
    assert clustered and set(clustered).isdisjoint(skipped)
    for layer_name in clustered:
        assert _unique(stripped.get_layer(layer_name)) <= 8, layer_name
    for layer_name in skipped:  # dense patterns, depthwise kernels, too-small kernels: untouched
        for a, b in zip(
            model.get_layer(layer_name).get_weights(),
            stripped.get_layer(layer_name).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
    assert skipped["logits"] == "dense pattern '@head'"
    report = cluster.cluster_report(stripped, plan)
    assert report["max_unique"] <= 8 and report["clustered_layers"] == len(clustered)
    # the input model is not wired into the wrappers: its weights are unchanged
    for a, b in zip(original, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_plan_reasons_and_dense_patterns():
    model = tiny("attention_unet")
    plan, skipped = cluster.plan_clusters(model, 16, dense=("@first_conv", "dec0_*"))
    assert skipped["enc0_a_conv"] == "dense pattern '@first_conv'"
    assert all(plan[n] == 0 for n in plan if n.startswith("dec0_"))
    assert skipped["dec0_ag_psi"] == "dense pattern 'dec0_*'"
    # 1x1 convolutions to one channel from 8: too few weights for 16 clusters
    assert skipped["dec1_ag_psi"] == "8 weights <= 16 clusters"
    assert skipped["logits"] == "8 weights <= 16 clusters"
    assert plan["enc1_a_conv"] == 16 and plan["dec1_a_conv"] == 16
    mobile, mskipped = cluster.plan_clusters(tiny("mobile_unet"), 16)
    dw = [n for n in mobile if n.endswith("_dw")]
    assert dw and all(mskipped[n] == "tfmot clusters no weights of DepthwiseConv2D" for n in dw)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_clusters": 1}, r"clusters = 1 must be in \[3, 256\] with preserve_sparsity"),
        ({"n_clusters": 2}, r"clusters = 2 must be in \[3, 256\]"),
        ({"n_clusters": 2, "preserve_sparsity": False, "init": "kmeans"}, r"init = 'kmeans'"),
        ({"n_clusters": 1, "preserve_sparsity": False}, r"clusters = 1 must be in \[2, 256\], "),
        ({"n_clusters": 257}, r"must be in \[3, 256\]"),
        ({"n_clusters": 16.0}, "must be a whole number"),
        ({"init": "kmeans"}, "valid: kmeans_plus_plus, density_based, linear, random"),
    ],
)
def test_bad_values_are_one_line_config_errors(kwargs, message):
    model = tiny("unet")
    with pytest.raises(ConfigError, match=message) as info:
        cluster.cluster_model(model, **kwargs)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def pruned_and_clustered(tiny_data):
    """A tiny U-Net pruned to 50 % (1 epoch), then clustered to 16 values (1 epoch), stripped."""
    model = tiny("unet")
    total = steps_per_epoch(tiny_data, 8)
    wrapped, pplan = prune.prune_model(model, 0.5, total_steps=total, schedule="constant")
    _fit(wrapped, tiny_data, prune.pruning_callbacks())
    pruned = prune.strip(wrapped)
    wrapped, plan = cluster.cluster_model(pruned, 16, preserve_sparsity=True)
    _fit(wrapped, tiny_data)
    return pruned, cluster.strip(wrapped), plan


def test_prune_then_cluster_keeps_every_zero(pruned_and_clustered):
    pruned, clustered, plan = pruned_and_clustered
    # (unclustered layers are fine-tuned with the rest; that clustering leaves them as they are
    # is checked without training above)
    for name in (n for n, k in plan.items() if k):
        before = pruned.get_layer(name).get_weights()[0]
        after = clustered.get_layer(name).get_weights()[0]
        assert _unique(clustered.get_layer(name)) <= 16, name
        assert np.all(after[before == 0] == 0), name  # every pruned zero is still zero
    s_pruned = prune.sparsity_report(pruned)["overall"]
    s_clustered = prune.sparsity_report(clustered)["overall"]
    assert s_pruned > 0.45
    assert s_clustered == pytest.approx(s_pruned, abs=0.01)
    report = cluster.cluster_report(clustered, plan)
    assert report["max_unique"] <= 16 and report["clustered_share"] > 0.9
    assert report["sparsity"] == pytest.approx(s_clustered, abs=1e-6)


def test_clustered_int8_keeps_sparsity_and_gzips_smaller(pruned_and_clustered, tiny_data):
    pruned, clustered, _ = pruned_and_clustered
    int8_pruned = convert_int8(pruned, tiny_data.x_train)
    int8_clustered = convert_int8(clustered, tiny_data.x_train)
    assert tflite_weight_sparsity(int8_clustered)["overall"] == pytest.approx(
        tflite_weight_sparsity(int8_pruned)["overall"], abs=0.01
    )
    # measured on this model: 21.6 KB vs 24.8 KB gzip (0.87x); the unpruned INT8 is 33.0 KB
    assert gzip_size(int8_clustered) < 0.95 * gzip_size(int8_pruned)


def test_cli_bad_clusters_is_one_line_error(tmp_path):
    for args, text in (
        (["--clusters", "1"], "clusters = 1 must be in [3, 256]"),
        (["--init", "kmeans"], "valid: kmeans_plus_plus"),
    ):
        result = CliRunner().invoke(
            optimize, ["cluster", "--model", str(tmp_path / "m.keras"), *args]
        )
        assert result.exit_code == 2, result.output
        assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
        assert result.output.startswith("error: ") and text in result.output


def test_cli_cluster_writes_model_and_report(tmp_path):
    from kseg.models import load_model

    model = tmp_path / "m.keras"
    tiny("unet").save(model)
    out = tmp_path / "cl"
    result = CliRunner().invoke(
        optimize,
        [
            "cluster",
            "--model",
            str(model),
            "--data",
            "synthetic:ultrasound:12",
            "--clusters",
            "8",
            "--epochs",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "at most 8 distinct values" in result.output
    assert "not clustered: enc0_a_conv (dense pattern '@first_conv')" in result.output
    report = json.loads((out / "clusters.json").read_text())
    assert report["max_unique"] <= 8
    assert {"layer": "logits", "reason": "dense pattern '@head'"} in report["not_clustered"]
    reloaded = load_model(out / "clustered.h5")
    for row in report["layers"]:
        if row["clusters"]:
            assert _unique(reloaded.get_layer(row["layer"])) <= 8
    record = json.loads((out / "metrics.json").read_text())
    assert record["settings"]["clusters"] == 8 and record["settings"]["init"] == "kmeans_plus_plus"
    assert 0.0 <= record["metrics"]["after"]["dice"] <= 1.0


@pytest.mark.slow
def test_recipe_prune_cluster_convert_keeps_zeros_and_records_settings(tmp_path):
    model = tmp_path / "m.keras"
    tiny("unet").save(model)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: tiny\ndata: synthetic:ultrasound:16\nsteps:\n"
        "  - {step: prune, sparsity: 0.5, epochs: 1, schedule: constant}\n"
        "  - {step: cluster, clusters: 16, epochs: 1}\n"
        "  - {step: convert, mode: int8, max_dice_drop: 1.0}\n"
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(
        optimize, ["--recipe", str(recipe), "--model", str(model), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [s["step"] for s in summary["steps"]] == ["prune", "cluster", "convert"]
    prune_rec, cluster_rec, conv = summary["steps"]
    assert (out / "02_cluster" / "clustered.h5").is_file()
    assert cluster_rec["clustering"]["max_unique"] <= 16
    assert cluster_rec["sparsity"]["overall"] == pytest.approx(
        prune_rec["sparsity"]["overall"], abs=0.01
    )
    assert conv["float_ops"] == []
    assert conv["tflite_sparsity"] == pytest.approx(prune_rec["sparsity"]["overall"], abs=0.01)
    card = json.loads(Path(conv["card"]).read_text())
    step = next(s for s in card["steps"] if s["step"] == "cluster")
    assert step["settings"]["clusters"] == 16 and step["settings"]["preserve_sparsity"] is True
    assert step["clustering"]["max_unique"] <= 16
    assert "| 2 | cluster |" in (out / "summary.md").read_text()


def test_wrapped_or_fully_dense_model_is_refused():
    from kseg.errors import ModelError
    from kseg.optimize import qat

    model = tiny("unet")
    q, _ = qat.quantize_model(model)
    with pytest.raises(ModelError, match="cluster a plain or stripped pruned model, before qat"):
        cluster.cluster_model(q, 16)
    with pytest.raises(ConfigError, match="no layer of model 'unet' to cluster"):
        cluster.cluster_model(model, 16, dense=("*",))
