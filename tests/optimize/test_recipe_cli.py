"""Recipes and the ``kseg optimize`` CLI: validation errors name the key, every shipped recipe
parses, the CLI writes its artifacts, and a full chain writes every step into one run dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kseg.errors import ConfigError
from kseg.optimize.cli import optimize
from kseg.optimize.recipe import load_recipe, validate_recipe

REPO = Path(__file__).resolve().parents[2]


def test_cli_module_imports_without_tensorflow():
    code = "import sys, kseg.optimize.cli; print('tensorflow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "path", sorted((REPO / "configs" / "recipes").glob("*.yaml")), ids=lambda p: p.stem
)
def test_shipped_recipes_are_valid(path):
    recipe = load_recipe(path, {"model": "runs/x/best.keras"})
    assert recipe["steps"] and recipe["steps"][-1]["step"] == "convert"


def test_recipe_errors_name_the_key():
    with pytest.raises(
        ConfigError, match="steps\\[0\\] \\(prune\\) has no option 'sparsty'.*sparsity"
    ):
        validate_recipe({"model": "m.keras", "steps": [{"step": "prune", "sparsty": 0.5}]})
    with pytest.raises(ConfigError, match="valid: train, distill, prune, cluster, qat, convert"):
        validate_recipe({"model": "m.keras", "steps": [{"step": "shrink"}]})
    with pytest.raises(ConfigError, match="\\(cluster\\) has no option 'n_clusters'.*clusters"):
        validate_recipe({"model": "m.keras", "steps": [{"step": "cluster", "n_clusters": 16}]})
    with pytest.raises(ConfigError, match="no model"):
        validate_recipe({"steps": [{"step": "qat"}]})


def test_cli_help_lists_commands():
    result = CliRunner().invoke(optimize, ["--help"])
    assert result.exit_code == 0
    for name in ("qat", "prune", "cluster", "distill", "--recipe"):
        assert name in result.output


def test_cli_bad_data_is_one_line_error(tmp_path):
    from kseg.models import create_model

    model = tmp_path / "m.keras"
    create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4).save(model)
    result = CliRunner().invoke(
        optimize, ["qat", "--model", str(model), "--data", str(tmp_path / "nope")]
    )
    assert result.exit_code == 2
    assert "folder not found" in result.output


def test_cli_qat_writes_reloadable_model_and_report(tmp_path):
    from kseg.models import create_model, load_model

    model = tmp_path / "m.keras"
    create_model("attention_unet", input_shape=(32, 32, 1), depth=2, filters=4).save(model)
    out = tmp_path / "qat"
    result = CliRunner().invoke(
        optimize,
        [
            "qat",
            "--model",
            str(model),
            "--data",
            "synthetic:ultrasound:12",
            "--epochs",
            "0",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "qat_report.json").read_text())
    assert report["fully_quantized"] is True and report["left_float"] == []
    assert "Multiply" in report["output_only"].values()
    assert any(
        type(layer).__name__ == "QuantizeWrapperV2" for layer in load_model(out / "qat.h5").layers
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["metrics"]["after"]["dice"] <= 1.0


@pytest.mark.slow
def test_recipe_chain_writes_every_step(tmp_path):
    from kseg._keras import keras
    from kseg.models import create_model

    # the tiny model's starting weights come from the global generator: seeded, so the chain sees
    # the same model whichever tests ran before in this process
    keras.utils.set_random_seed(0)
    model = tmp_path / "m.keras"
    create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4).save(model)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: tiny\ndata: synthetic:ultrasound:16\nsteps:\n"
        "  - {step: prune, sparsity: 0.5, epochs: 1, schedule: constant}\n"
        "  - {step: qat, epochs: 1, preserve_sparsity: true}\n"
        # a 4-filter net after one epoch: its INT8 Dice moves by ~0.02 on a few validation images, so
        # the gate here only catches a broken conversion (the gate itself: tests/export)
        "  - {step: convert, mode: int8, max_dice_drop: 0.1}\n"
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(
        optimize, ["--recipe", str(recipe), "--model", str(model), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [s["step"] for s in summary["steps"]] == ["prune", "qat", "convert"]
    assert (out / "01_prune" / "pruned.h5").is_file() and (out / "02_qat" / "qat.h5").is_file()
    conv = summary["steps"][2]
    assert Path(conv["model"]).is_file() and conv["float_ops"] == []
    assert conv["tflite_sparsity"] == pytest.approx(
        summary["steps"][0]["sparsity"]["overall"], abs=0.01
    )
    assert "| 3 | convert |" in (out / "summary.md").read_text()


def test_load_unlabeled_reads_folders_and_synthetic_and_names_bad_input(tmp_path):
    import cv2
    import numpy as np

    from kseg.errors import DataError
    from kseg.optimize.steps import load_unlabeled

    folder = tmp_path / "scans" / "images"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), np.full((40, 60), 200, np.uint8))
    cv2.imwrite(str(folder / "b.jpg"), np.zeros((30, 30, 3), np.uint8))
    (folder / "notes.txt").write_text("not an image")
    images, text = load_unlabeled(tmp_path / "scans", 32, 1)  # finds images/ inside
    assert images.shape == (2, 32, 32, 1) and images.dtype == np.uint8
    assert images[0].min() == 200 and images[1].max() == 0  # sorted: a.png, then b.jpg
    assert "n=2" in text

    syn, text = load_unlabeled("synthetic:ultrasound:6", 64, 1, seed=42)
    assert syn.shape == (6, 64, 64, 1) and "synthetic ultrasound n=6" in text
    from kseg.data.synthetic import synthesize

    labeled = synthesize("ultrasound", 6, 64, 42).images
    assert not any(np.array_equal(s, lab) for s in syn for lab in labeled)  # another stream

    with pytest.raises(DataError, match="nope: no such folder"):
        load_unlabeled(tmp_path / "nope", 32, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no image files"):
        load_unlabeled(tmp_path / "empty", 32, 1)
    (folder / "c.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="c.png"):
        load_unlabeled(folder, 32, 1)
    with pytest.raises(ConfigError, match="synthetic:KIND:N"):
        load_unlabeled("synthetic:bones:5", 32, 1)


def test_cli_distill_with_unlabeled_folder_writes_students_and_records_it(tmp_path):
    import cv2
    import numpy as np

    from kseg.models import create_model

    model = tmp_path / "t.keras"
    create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4).save(model)
    scans = tmp_path / "scans"
    scans.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(scans / f"{i}.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    out = tmp_path / "kd"
    args = ["distill", "--teacher", str(model), "--student", "mobile_unet", "--option",
            "depth=2", "--option", "width=0.25", "--data", "synthetic:ultrasound:12",
            "--epochs", "1", "--lr-schedule", "cosine", "--unlabeled", str(scans),
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(optimize, args)
    assert result.exit_code == 0, result.output
    assert "transfer set: folder" in result.output and "n=5" in result.output
    record = json.loads((out / "metrics.json").read_text())
    assert record["settings"]["lr_schedule"] == "cosine"
    assert "n=5 (unlabeled)" in record["settings"]["unlabeled"]
    assert (out / "student.keras").is_file() and (out / "baseline.keras").is_file()

    bad = CliRunner().invoke(optimize, [*args[:-4], "--unlabeled", str(tmp_path / "none")])
    assert bad.exit_code == 2 and "no such folder" in bad.output


def test_cli_distill_refuses_unlabeled_images_that_are_validation_images(tmp_path):
    """Pointing --unlabeled at the labeled folder would let the teacher label the validation
    images for the student: refused with one line, before any training."""
    from kseg.data.synthetic import write_synthetic
    from kseg.models import create_model

    model = tmp_path / "t.keras"
    create_model("unet", input_shape=(64, 64, 1), depth=2, filters=4).save(model)
    labeled = tmp_path / "labeled"
    write_synthetic("ultrasound", 10, labeled, size=64, seed=0)
    out = tmp_path / "kd"
    result = CliRunner().invoke(
        optimize,
        ["distill", "--teacher", str(model), "--student", "mobile_unet", "--option", "depth=2",
         "--data", str(labeled), "--unlabeled", str(labeled), "--epochs", "1",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "are validation images" in result.output
    assert not out.exists()
