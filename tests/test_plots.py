"""Plots: non-empty PNGs of the documented pixel size; history from CSV or dict."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from kseg.plots import (
    CELL_PX,
    CURVE_PX,
    plot_comparison,
    plot_contours,
    plot_history,
    plot_prediction_grid,
)


def _data(n=3, size=32):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size, size, 1), dtype=np.uint8) for _ in range(n)]
    truths = [np.zeros((size, size), np.uint8) for _ in range(n)]
    for t in truths:
        t[8:20, 8:20] = 1
    probs = [np.roll(t, 3, axis=1).astype(np.float32) * 0.8 for t in truths]
    return images, truths, probs


def test_history_from_csv_has_three_panels_with_lr(tmp_path):
    csv_path = tmp_path / "history.csv"
    csv_path.write_text(
        "epoch,dice,loss,lr,val_dice,val_loss\n"
        "0,0.2,0.9,0.001,0.1,1.0\n1,0.5,0.6,0.001,0.4,0.7\n2,0.7,0.4,0.0005,0.6,0.5\n"
    )
    out = plot_history(csv_path, tmp_path / "curves.png")
    arr = imread(out)
    assert arr.shape[:2] == (CURVE_PX[1], 3 * CURVE_PX[0])
    assert arr[..., :3].std() > 0.05  # something was drawn


def test_history_from_dict_without_lr(tmp_path):
    hist = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "dice": [0.3, 0.6], "val_dice": [0.2, 0.5]}
    arr = imread(plot_history(hist, tmp_path / "c.png"))
    assert arr.shape[:2] == (CURVE_PX[1], 2 * CURVE_PX[0])


def test_history_of_several_classes_adds_a_per_class_panel(tmp_path, monkeypatch):
    hist = {
        "loss": [1.0, 0.5],
        "val_loss": [1.1, 0.6],
        "dice": [0.3, 0.6],
        "val_dice": [0.2, 0.5],
        "val_dice_mean": [0.2, 0.5],  # the foreground mean is not a class
        "dice_nerve": [0.2, 0.5],
        "val_dice_nerve": [0.1, 0.4],
        "val_dice_vessel": [0.3, 0.6],
    }
    arr = imread(plot_history(hist, tmp_path / "c.png"))
    assert arr.shape[:2] == (CURVE_PX[1], 3 * CURVE_PX[0])
    import matplotlib.pyplot as plt

    from kseg import plots

    seen = {}
    real_save = plots._save

    def keep(fig, out_png):
        seen["labels"] = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
        return real_save(fig, out_png)

    monkeypatch.setattr(plots, "_save", keep)
    plot_history(hist, tmp_path / "d.png")
    plt.close("all")
    assert seen["labels"] == ["val_dice_nerve", "dice_nerve", "val_dice_vessel"]


def test_prediction_grid_size_and_colours(tmp_path):
    images, truths, probs = _data()
    out = plot_prediction_grid(images, truths, probs, tmp_path / "g.png", names=["a", "b", "c"])
    arr = imread(out)[..., :3]
    assert arr.shape[:2] == (3 * CELL_PX, 3 * CELL_PX)
    # green truth overlay in column 2, red prediction overlay in column 3
    col2 = arr[:CELL_PX, CELL_PX : 2 * CELL_PX]
    col3 = arr[:CELL_PX, 2 * CELL_PX :]
    assert ((col2[..., 1] - col2[..., 0]) > 0.3).sum() > 100
    assert ((col3[..., 0] - col3[..., 1]) > 0.3).sum() > 100


def test_comparison_four_columns_and_multiclass(tmp_path):
    images, truths, probs = _data(n=2)
    arr = imread(
        plot_comparison(images, truths, probs, tmp_path / "cmp.png", titles=("float", "int8"))
    )
    assert arr.shape[:2] == (2 * CELL_PX, 4 * CELL_PX)
    k3 = [np.stack([1 - p, p, np.zeros_like(p)], axis=-1) for p in probs]  # softmax-like maps
    arr = imread(plot_prediction_grid(images, truths, k3, tmp_path / "k3.png"))
    assert arr.shape[:2] == (2 * CELL_PX, 3 * CELL_PX)


def test_length_mismatch_is_an_error(tmp_path):
    images, truths, probs = _data()
    with pytest.raises(ValueError, match="length"):
        plot_prediction_grid(images, truths[:2], probs, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_contours_grid_layout_and_outline_colours(tmp_path):
    """Five images in rows of four: 2 x 4 cells; green truth and red prediction outlines drawn,
    an image whose prediction is empty gets no red."""
    images, truths, probs = _data(n=5)
    probs[4] = np.zeros_like(probs[4])
    arr = imread(plot_contours(images, truths, probs, tmp_path / "c.png", columns=4))[..., :3]
    assert arr.shape[:2] == (2 * CELL_PX, 4 * CELL_PX)
    red = (arr[..., 0] - arr[..., 1] > 0.4) & (arr[..., 0] - arr[..., 2] > 0.4)
    green = (arr[..., 1] - arr[..., 0] > 0.4) & (arr[..., 1] - arr[..., 2] > 0.3)
    first, fifth = (slice(0, CELL_PX), slice(0, CELL_PX)), (slice(CELL_PX, None), slice(0, CELL_PX))
    assert red[first].sum() > 20 and green[first].sum() > 20
    assert red[fifth].sum() == 0 and green[fifth].sum() > 20


def test_every_grid_titles_its_cells_by_name_else_by_index(tmp_path, monkeypatch):
    """Image titles are the names when given, ``#i`` otherwise; the other cells name their
    column (denoising: the mean error; comparison: pixels that differ and the Dice)."""
    import matplotlib.pyplot as plt

    from kseg import plots

    titles = []

    def keep(fig, out_png):
        titles.append([ax.get_title() for ax in fig.axes])
        plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    images, truths, probs = _data(n=2)
    plot_prediction_grid(images, truths, probs, tmp_path / "g.png", names=["a", "b"])
    plot_contours(images, truths, probs, tmp_path / "c.png", columns=4)
    plot_comparison(images, truths, truths, tmp_path / "d.png", titles=("A", "B"))
    plots.plot_denoising(images, images, images, tmp_path / "n.png", names=["x", "y"])
    assert titles[0] == ["a", "truth", "prediction", "b", "truth", "prediction"]
    assert titles[1] == ["#0", "#1"]  # rows of 2: no empty cells
    assert titles[2][:4] == ["#0", "A", "B", "diff 0 px, dice 1.000"]
    assert titles[3][:4] == ["x", "clean", "denoised", "|error| mean 0.0"]
