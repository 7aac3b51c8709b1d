"""evaluate(): the three files, their rows, the worst-case ordering, and the resize wrapper."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from kseg.errors import DataError
from kseg.evaluate import compare_evaluations, evaluate


def _items():
    """Four 32x32 images whose truth is a 12x12 square; predictions shift it by 0, 6, 2, 12."""
    out = []
    for i, shift in enumerate([0, 6, 2, 12]):
        true = np.zeros((32, 32), np.uint8)
        true[8:20, 8:20] = 1
        image = (true * 200 + 20).astype(np.uint8)
        out.append((f"img{i}", image, true, shift))
    return out


def test_evaluate_writes_files_with_right_rows_and_worst_order(tmp_path):
    items = _items()
    # the images are identical, so the shift comes from the iteration order
    order = iter(s for *_, s in items)

    def predict(image):
        true = (image > 100).astype(np.float32)
        return np.roll(true, next(order), axis=1) * 0.9

    result = evaluate(predict, [(n, im, t) for n, im, t, _ in items], tmp_path, worst_k=2)
    # hand-computed: 12x12 square shifted by s columns -> tp = 12*(12-s), fp = fn = 12*s
    tps = [12 * (12 - s) for s in (0, 6, 2, 12)]
    fps = [12 * s for s in (0, 6, 2, 12)]
    dices = [2 * tp / (2 * tp + 2 * fp) for tp, fp in zip(tps, fps, strict=True)]
    assert result["dice"] == pytest.approx(2 * sum(tps) / (2 * sum(tps) + 2 * sum(fps)))
    assert result["dice_mean"] == pytest.approx(np.mean(dices))
    assert result["n_images"] == 4
    assert result["worst_cases"] == ["img3", "img1"]

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dice"] == pytest.approx(result["dice"])
    assert metrics["worst_cases"] == ["img3", "img1"]
    assert metrics["hd95_undefined"] == 0

    with open(tmp_path / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["img0", "img1", "img2", "img3"]
    assert list(rows[0]) == ["name", "dice", "iou", "precision", "recall", "hd95", "tp", "fp", "fn"]
    assert [int(r["tp"]) for r in rows] == tps and [int(r["fp"]) for r in rows] == fps
    assert [float(r["dice"]) for r in rows] == pytest.approx(dices, abs=1e-6)
    assert [float(r["hd95"]) for r in rows] == pytest.approx([0, 6, 2, 12])

    png = tmp_path / "worst_cases.png"
    assert png.stat().st_size > 1000
    from matplotlib.image import imread

    from kseg.plots import CELL_PX

    assert imread(png).shape[:2] == (2 * CELL_PX, 3 * CELL_PX)
    # contours.png: the first worst_k (2) images in input order, in one row of two cells
    assert imread(tmp_path / "contours.png").shape[:2] == (CELL_PX, 2 * CELL_PX)
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind


def test_empty_prediction_gives_nan_hd95_written_as_null(tmp_path):
    true = np.zeros((16, 16), np.uint8)
    true[4:8, 4:8] = 1
    items = [("a", true * 255, true), ("b", true * 255, np.zeros_like(true))]
    result = evaluate(lambda im: np.zeros(im.shape[:2], np.float32), items, tmp_path, worst_k=0)
    # a: truth present, nothing predicted -> dice 0, hd95 nan; b: both empty -> dice 1, hd95 0
    assert result["dice_mean"] == pytest.approx(0.5)
    assert result["hd95_undefined"] == 1 and result["hd95_mean"] == 0.0
    with open(tmp_path / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["hd95"] == "nan" and rows[0]["fn"] == "16"
    assert rows[1]["dice"] == "1.000000" and rows[1]["hd95"] == "0.000000"
    assert not (tmp_path / "worst_cases.png").exists()
    assert not (tmp_path / "contours.png").exists()


def test_multiclass_predictor(tmp_path):
    true = np.array([[0, 1, 2, 2]], np.uint8)
    prob = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]][None]  # (1, 4, 3): argmax 0 1 1 2
    result = evaluate(lambda im: prob, [("x", true, true)], tmp_path, worst_k=1)
    assert result["num_classes"] == 3
    assert result["dice"] == pytest.approx(2 / 3) and result["precision"] == pytest.approx(0.75)


def test_errors(tmp_path):
    with pytest.raises(DataError, match="nothing to evaluate"):
        evaluate(lambda im: im, [], tmp_path)
    with pytest.raises(DataError, match="prediction size"):
        evaluate(
            lambda im: np.zeros((4, 4)),
            [("a", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))],
            tmp_path,
        )


def test_predict_image_gives_original_size_and_pixel_contract():
    """evaluate_model predicts through kseg.inference.predict_image: raw pixels in, original size out."""
    from kseg.inference import predict_image

    seen = {}

    class Fake:
        input_size, channels, resize_mode, threshold = 16, 1, "letterbox", 0.5

        def predict(self, x):
            seen["shape"], seen["dtype"], seen["max"] = x.shape, x.dtype, float(x.max())
            return (x[..., :1] > 100).astype(np.float32)

    image = np.zeros((30, 50), np.uint8)
    image[:, 25:] = 200
    prob = predict_image(Fake(), image)
    assert seen == {"shape": (1, 16, 16, 1), "dtype": np.float32, "max": 200.0}
    assert prob.shape[:2] == (30, 50)
    assert prob[:, :20].max() == 0.0 and prob[:, 30:].min() == 1.0


def test_multiclass_per_class_section_columns_and_worst_cases(tmp_path):
    """Two 4x4 images, K = 3; scores by hand (the absent-class convention of kseg.scores)."""
    # A: truth row 0 1 1 2, prediction 0 1 2 2 -> nerve 2/3, vessel 2/3
    # B: truth row 0 1 1 1, prediction 0 1 0 0 -> nerve 1/2, vessel absent from both
    truths = {"A": [0, 1, 1, 2], "B": [0, 1, 1, 1]}
    preds = {"A": [0, 1, 2, 2], "B": [0, 1, 0, 0]}
    items = [(n, np.full((4, 4), i * 50, np.uint8), np.tile(truths[n], (4, 1)).astype(np.uint8))
             for i, n in enumerate("AB")]  # fmt: skip
    probs = {
        i * 50: np.eye(3, dtype=np.float32)[np.tile(preds[n], (4, 1))] for i, n in enumerate("AB")
    }
    names = ("background", "nerve", "blood vessel")
    result = evaluate(lambda im: probs[int(im[0, 0])], items, tmp_path, worst_k=2,
                      class_names=names)  # fmt: skip
    pc = result["per_class"]
    assert result["classes"] == list(names) and list(pc) == ["nerve", "blood vessel"]
    # nerve: tp 8 fp 0 fn 12 over the two images -> 16/28; per image (2/3 + 1/2) / 2
    assert pc["nerve"]["dice"] == pytest.approx(4 / 7) and pc["nerve"]["n_images"] == 2
    assert pc["nerve"]["dice_mean"] == pytest.approx(7 / 12)
    # vessel: only A counts (B has no vessel in truth or prediction)
    assert pc["blood vessel"]["dice"] == pytest.approx(2 / 3)
    assert pc["blood vessel"]["n_images"] == 1
    assert pc["nerve"]["worst_cases"] == ["B", "A"] and pc["blood vessel"]["worst_cases"] == ["A"]
    assert result["foreground_mean"]["dice"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert result["dice"] == pytest.approx(result["foreground_mean"]["dice"])
    assert result["decision"] == "argmax" and "absent" in result["per_class_convention"]
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["per_class"]["blood vessel"]["dice"] == pytest.approx(2 / 3)
    with open(tmp_path / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[6:] == [
        "dice_nerve", "iou_nerve", "hd95_nerve",
        "dice_blood_vessel", "iou_blood_vessel", "hd95_blood_vessel",
        "tp_nerve", "fp_nerve", "fn_nerve",
        "tp_blood_vessel", "fp_blood_vessel", "fn_blood_vessel",
    ]  # fmt: skip
    # A (4 rows): nerve found in column 1, missed in 2; vessel found in 3, over-called in 2
    assert [rows[0][k] for k in ("tp_nerve", "fp_nerve", "fn_nerve")] == ["4", "0", "4"]
    assert [rows[0][k] for k in ("tp_blood_vessel", "fp_blood_vessel", "fn_blood_vessel")] == [
        "4",
        "4",
        "0",
    ]
    assert float(rows[1]["dice_nerve"]) == pytest.approx(0.5)
    assert rows[1]["dice_blood_vessel"] == "nan"  # absent from B: no score
    assert float(rows[1]["dice"]) == pytest.approx(0.5)  # B's mean skips the absent class
    for png in ("worst_cases.png", "worst_cases_nerve.png", "worst_cases_blood_vessel.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_binary_per_image_csv_keeps_its_columns(tmp_path):
    true = np.zeros((8, 8), np.uint8)
    true[2:6, 2:6] = 1
    result = evaluate(lambda im: true.astype(np.float32), [("a", true, true)], tmp_path, worst_k=0)
    assert "per_class" not in result and "classes" not in result
    header = (tmp_path / "per_image.csv").read_text().splitlines()[0]
    assert header == "name,dice,iou,precision,recall,hd95,tp,fp,fn"  # no class columns


def _palette_folder(root, n: int = 12, size: int = 32):
    """Grey images with a bright disc (class 1, nerve) and a dark square (class 2, vessel);
    masks are palette PNGs whose pixel values are the class ids."""
    from PIL import Image

    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        label = np.zeros((size, size), np.uint8)
        cy, cx = rng.integers(8, 14, 2)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = 1
        y0, x0 = rng.integers(18, 24, 2)
        label[y0 : y0 + 7, x0 : x0 + 7] = 2
        image = np.choose(label, [110, 220, 20]).astype(np.float64) + rng.normal(0, 8, label.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            root / "images" / f"{i:02d}.png"
        )
        mask = Image.fromarray(label, mode="P")
        mask.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (3 * 253))
        mask.save(root / "masks" / f"{i:02d}.png")
    return root


@pytest.mark.slow
def test_tiny_multiclass_run_logs_evaluates_and_converts_per_class(tmp_path):
    """3 classes, 32 px, 2 epochs: history, metrics.json, evaluate and the INT8 card per class."""
    from kseg.config import load_config
    from kseg.evaluate import evaluate_model
    from kseg.export import export_tflite
    from kseg.training import train

    data = _palette_folder(tmp_path / "data")
    cfg = load_config(None, {
        "data.path": str(data), "data.classes": {"nerve": 1, "vessel": 2}, "data.img_size": 32,
        "data.channels": 1, "data.val_fraction": 0.25, "data.test_fraction": 0.0,
        "model.options": {"depth": 2, "filters": 4}, "train.epochs": 2, "train.batch_size": 4,
        "train.learning_rate": 0.01,
    })  # fmt: skip
    assert cfg.model.num_classes == 3
    run = tmp_path / "run"
    metrics = train(cfg, run, verbose=0)
    with open(run / "history.csv", newline="") as fh:
        header = next(csv.reader(fh))
    for col in ("dice_nerve", "iou_vessel", "val_dice_nerve", "val_dice_vessel", "val_dice"):
        assert col in header
    pc = metrics["per_class"]
    assert list(pc) == ["nerve", "vessel"] and metrics["classes"] == [
        "background",
        "nerve",
        "vessel",
    ]
    assert metrics["dice"] == pytest.approx(np.mean([pc["nerve"]["dice"], pc["vessel"]["dice"]]))
    assert json.loads((run / "metrics.json").read_text())["per_class"]["vessel"]["n_images"] == 3

    ev = evaluate_model(run, split="val", out_dir=tmp_path / "eval", worst_k=2)
    with open(tmp_path / "eval" / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and ev["classes"] == ["background", "nerve", "vessel"]
    for name in ("nerve", "vessel"):  # every image holds both classes: per-image mean = CSV mean
        col = [float(r[f"dice_{name}"]) for r in rows]
        assert ev["per_class"][name]["dice_mean"] == pytest.approx(np.mean(col))
        assert (tmp_path / "eval" / f"worst_cases_{name}.png").is_file()
    assert ev["foreground_mean"]["dice"] == pytest.approx(
        np.mean([ev["per_class"][n]["dice"] for n in ("nerve", "vessel")])
    )

    from click.testing import CliRunner

    from kseg.cli import main

    res = CliRunner().invoke(main, ["evaluate", "--model", str(run), "--out", str(tmp_path / "e2")])
    assert res.exit_code == 0, res.output
    nerve = ev["per_class"]["nerve"]
    assert f"  nerve: dice={nerve['dice']:.4f}  iou={nerve['iou']:.4f}" in res.output
    assert "(foreground mean)" in res.output

    card = export_tflite(run / "best.keras", "int8", max_dice_drop=1.0, select_threshold=False)
    assert card["output"]["classes"] == ["background", "nerve", "vessel"]
    assert card["output"]["decision"] == "argmax"
    parity = card["parity"]
    assert parity["passed"] is True and parity["failed_classes"] == []
    for c in parity["per_class"].values():
        assert c["dice_drop"] == pytest.approx(c["float_dice"] - c["tflite_dice"])
    md = (run / "best.int8.md").read_text()
    assert "| nerve | 3 |" in md and "argmax over classes" in md


def test_compare_evaluations_pairs_images_by_name_and_refuses_other_images(tmp_path):
    """Two 3-class predictors on the same 6 images: the second finds the vessel's last column
    too on every image; the nerve is the same. Paired by name whatever the order."""
    truth = np.tile([0, 1, 1, 2, 2, 2, 0, 0], (4, 1)).astype(np.uint8)
    pred_a = np.tile([0, 1, 1, 2, 2, 0, 0, 0], (4, 1))
    pred_b = np.tile([0, 1, 1, 2, 2, 2, 0, 0], (4, 1))
    names = ("background", "nerve", "vessel")
    items = [(f"im{i}", np.full((4, 8), i, np.uint8), truth) for i in range(6)]
    onehot = np.eye(3, dtype=np.float32)
    evaluate(lambda im: onehot[pred_a], items, tmp_path / "a", worst_k=0, class_names=names)
    evaluate(lambda im: onehot[pred_b], items[::-1], tmp_path / "b", worst_k=0, class_names=names)
    cmp = compare_evaluations(tmp_path / "b", tmp_path / "a")
    assert cmp["n_images"] == 6 and "paired" in cmp["method"]
    vessel = cmp["per_class"]["vessel"]
    # a: tp 2 fn 1 per row -> 4/5; b: perfect; every image alike, so the interval is a point
    assert vessel["baseline_dice"] == pytest.approx(0.8) and vessel["dice"] == pytest.approx(1.0)
    assert vessel["difference"] == pytest.approx(0.2)
    assert vessel["difference_ci95"] == pytest.approx([0.2, 0.2])
    assert cmp["per_class"]["nerve"]["difference_ci95"] == pytest.approx([0.0, 0.0])
    assert cmp["dice"] == pytest.approx([0.1, 0.1, 0.1])  # the foreground mean
    # other images, other classes, a folder without counts: one clear error each
    evaluate(lambda im: onehot[pred_b], items[:4], tmp_path / "c", worst_k=0, class_names=names)
    with pytest.raises(DataError, match="other images .*2 in one evaluation only.*same split"):
        compare_evaluations(tmp_path / "c", tmp_path / "a")
    binary = [(n, im, (t > 0).astype(np.uint8)) for n, im, t in items]
    evaluate(lambda im: (pred_b > 0).astype(np.float32), binary, tmp_path / "d", worst_k=0)
    with pytest.raises(DataError, match="classes"):
        compare_evaluations(tmp_path / "d", tmp_path / "a")
    old = tmp_path / "old"
    old.mkdir()
    (old / "per_image.csv").write_text("name,dice,iou,precision,recall,hd95\nim0,1,1,1,1,0\n")
    with pytest.raises(DataError, match="no pixel counts.*evaluate that model again"):
        compare_evaluations(tmp_path / "a", old)
    with pytest.raises(DataError, match="no per_image.csv"):
        compare_evaluations(tmp_path / "a", tmp_path / "nowhere")


def test_compare_evaluations_pools_the_runs_of_a_recipe(tmp_path):
    """Two runs per recipe (seeds): counts summed per image, so the Dice is pooled over runs."""
    truth = np.tile([0, 1, 1, 1, 1, 0, 0, 0], (4, 1)).astype(np.uint8)
    found = {  # per row: how many of the 4 foreground pixels each run finds
        "a1": [0, 1, 0, 0, 0, 0, 0, 0],  # 1 of 4 -> Dice 0.4
        "a2": [0, 1, 1, 1, 0, 0, 0, 0],  # 3 of 4 -> Dice 6/7
        "b1": [0, 1, 1, 0, 0, 0, 0, 0],  # 2 of 4
        "b2": [0, 1, 1, 0, 0, 0, 0, 0],
    }
    items = [(f"im{i}", np.full((4, 8), i, np.uint8), truth) for i in range(5)]
    for run, row in found.items():
        pred = np.tile(np.array(row, np.float32), (4, 1))
        evaluate(lambda im, p=pred: p, items[:: 1 if run < "b" else -1], tmp_path / run, worst_k=0)
    cmp = compare_evaluations(
        [tmp_path / "a1", tmp_path / "a2"], [tmp_path / "b1", tmp_path / "b2"]
    )
    # a pooled: tp 4 fn 4 of 8 per row -> 2*4/(8+4) = 2/3, as b: difference 0 on every draw
    assert cmp["dice"] == pytest.approx([0.0, 0.0, 0.0])
    single = compare_evaluations(tmp_path / "a2", tmp_path / "b1")
    assert single["dice"][0] == pytest.approx(6 / 7 - 2 / 3)  # a single run differs
    assert cmp["baseline"] == [str(tmp_path / "b1"), str(tmp_path / "b2")]
    evaluate(lambda im: np.zeros((4, 8), np.float32), items[:3], tmp_path / "short", worst_k=0)
    with pytest.raises(DataError, match="short: other images or classes than .*a1"):
        compare_evaluations([tmp_path / "a1", tmp_path / "short"], tmp_path / "b1")
