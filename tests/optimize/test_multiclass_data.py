"""Optimize steps and the exporter read a multi-class model's masks as class ids, as training did
(not binarised: a QAT fine-tune on binarised labels would teach the model the wrong classes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kseg.models import create_model


def _three_class_folder(root, n=6, size=(32, 32)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"s{i}.png"), rng.integers(0, 200, size, np.uint8))
        m = np.zeros(size, np.uint8)
        m[4:12, 4:12] = 1
        m[16:24, 16:24] = 2
        cv2.imwrite(str(root / "masks" / f"s{i}.png"), m)
    return root


@pytest.mark.filterwarnings("ignore")
def test_optimize_data_keeps_class_ids(tmp_path):
    from kseg.optimize.steps import load_data

    root = _three_class_folder(tmp_path / "ds")
    model = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4, num_classes=3)
    fit, _ = load_data(None, model, str(root))
    labels = np.concatenate([fit.y_train.reshape(-1), fit.y_val.reshape(-1)])
    assert set(np.unique(labels).tolist()) == {0, 1, 2}


def test_export_reads_class_ids_for_multiclass_models_only():
    from kseg.export.tflite import _num_classes

    assert (
        _num_classes(
            create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4, num_classes=3)
        )
        == 3
    )
    assert _num_classes(create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)) == 1
    assert (
        _num_classes(create_model("denoising_ae", input_shape=(32, 32, 3), depth=2, filters=4)) == 1
    )
