"""A model trained on native-resolution windows (``data.sampling: patch``) is calibrated and
parity-checked on such windows, not on whole images squeezed to its input size."""

from __future__ import annotations

import json

import pytest

from kseg.data.pipeline import tile_starts


@pytest.mark.slow
def test_patch_run_is_calibrated_and_checked_on_native_windows(tmp_path):
    from kseg.config import load_config
    from kseg.export.tflite import export_tflite
    from kseg.training import train
    from tests.plan.test_plan_classes import write_two_class_folder

    h, w, size = 50, 70, 32
    root = write_two_class_folder(tmp_path / "d", n=8, h=h, w=w)
    cfg = load_config(
        None,
        {
            "data.path": str(root),
            "data.img_size": size,
            "data.sampling": "patch",
            "data.val_fraction": 0.25,
            "model.num_classes": 3,
            "model.options": {"depth": 2, "filters": 4},
            "train.epochs": 1,
            "train.steps_per_epoch": 2,
            "train.batch_size": 4,
        },
    )
    run = tmp_path / "run"
    train(cfg, run, verbose=0)
    n_val = sum(1 for line in (run / "split.csv").read_text().splitlines() if line.endswith(",val"))
    per_image = len(tile_starts(h, size)) * len(tile_starts(w, size))
    assert per_image == 6
    card = export_tflite(run / "best.keras", "int8", max_dice_drop=-1)
    assert card["input"]["native_scale"] is True
    assert "native-resolution 32 px windows" in card["calibration"]["description"]
    on_disk = json.loads((run / "best.int8.json").read_text())
    # every validation window at native scale, none of the training images
    assert on_disk["parity"]["n_images"] == n_val * per_image
    assert card["calibration"]["n_images"] == min(64, (8 - n_val) * per_image)
