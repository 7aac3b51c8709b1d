"""kseg.inference: tiling, blending, flips, options, postprocessing, statistics, GeoJSON, thresholds.

Predictors here are small numpy functions with known outputs, so every number is checked against a
value worked out by hand or by an independent computation.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest

from kseg.errors import ConfigError, DataError
from kseg.inference import InferenceOptions, mask_geojson, mask_stats, segment_image
from kseg.inference.postprocess import fill_holes, keep_largest, postprocess, remove_small
from kseg.inference.threshold import ThresholdSweep, choose_threshold
from kseg.inference.tiling import (
    flip_tta,
    gaussian_window,
    predict_prob,
    sliding_window,
    tile_starts,
    tta_flips,
)
from kseg.inference.vector import polygon_area, ring_area


class PixelModel:
    """prob = pixel / 255 (flip- and translation-equivariant): any tiling must give the image back."""

    channels = 1
    resize_mode = "stretch"
    threshold = 0.5

    def __init__(self, size: int = 32, native_scale: bool | None = None):
        self.input_size = size
        self.native_scale = native_scale
        self.batches: list[int] = []

    def predict(self, batch):
        assert (
            batch.shape[1:] == (self.input_size, self.input_size, 1) and batch.dtype == np.float32
        )
        self.batches.append(len(batch))
        return (batch / 255.0).astype(np.float32)


class RampModel(PixelModel):
    """prob = column / (S - 1), whatever the image: not flip-equivariant."""

    def predict(self, batch):
        self.batches.append(len(batch))
        ramp = np.linspace(0.0, 1.0, self.input_size, dtype=np.float32)
        return np.broadcast_to(ramp[None, None, :, None], batch.shape).copy()


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w)).astype(np.uint8)


# ------------------------------------------------------------------------------ tiling


@pytest.mark.parametrize("shape", [(32, 32), (20, 27)])
def test_tiled_equals_whole_on_images_that_fit(shape):
    img = _img(*shape)
    m = PixelModel(32)
    whole, wi = predict_prob(m, img, InferenceOptions(tile="off"))
    tiled, ti = predict_prob(m, img, InferenceOptions(tile="on", overlap=0.5))
    assert not wi.tiled and ti.tiled
    np.testing.assert_allclose(tiled[..., 0], img / 255.0, atol=1e-6)
    if shape == (32, 32):  # no resize: whole is the identity too
        np.testing.assert_allclose(whole, tiled, atol=1e-6)
    # an image that fits is one window (zero-padded up to 32 when smaller): the same pixels
    assert ti.windows == 1 and len(m.batches) == 2
    a = _img(70, 45, seed=2)
    ta = predict_prob(m, a, InferenceOptions(tile="on", overlap=0.5))[1]
    assert ta.windows == len(tile_starts(70, 32, 0.5)) * len(tile_starts(45, 32, 0.5)) == 4 * 2


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_blend_weights_are_normalised_everywhere(blend, overlap):
    """A predictor that returns 1 everywhere must come back as exactly 1 after blending."""
    ones = lambda b: np.ones(b.shape[:3] + (1,), np.float32)  # noqa: E731
    img = _img(100, 77)[..., None]
    prob, windows, calls = sliding_window(ones, img, 32, overlap=overlap, blend=blend, batch_size=5)
    assert prob.shape == (100, 77, 1)
    np.testing.assert_allclose(prob, 1.0, atol=1e-5)
    assert calls == math.ceil(windows / 5)


def test_gaussian_window_shape():
    w = gaussian_window(65)  # centre 32, sigma 65/8
    assert w[32, 32] == pytest.approx(1.0)
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w[32, 40] == pytest.approx(math.exp(-64 / (2 * (65 / 8) ** 2)), rel=1e-5)
    assert w.min() == pytest.approx(1e-3)  # floor: border pixels still count


def test_auto_tiles_only_native_scale_models_and_large_images():
    big = _img(70, 50)
    assert predict_prob(PixelModel(32, native_scale=True), big, InferenceOptions())[1].tiled
    assert not predict_prob(PixelModel(32, native_scale=False), big, InferenceOptions())[1].tiled
    assert not predict_prob(PixelModel(32, native_scale=None), big, InferenceOptions())[1].tiled
    small = _img(30, 20)
    assert not predict_prob(PixelModel(32, native_scale=True), small, InferenceOptions())[1].tiled


def test_windows_go_in_batches():
    m = PixelModel(16)
    img = _img(64, 64)
    prob, info = predict_prob(m, img, InferenceOptions(tile="on", overlap=0.25, batch_size=4))
    np.testing.assert_allclose(prob[..., 0], img / 255.0, atol=1e-6)
    assert sum(m.batches) == info.windows and max(m.batches) == 4
    assert len(m.batches) == math.ceil(info.windows / 4) == info.model_calls


def test_tta_averages_flips():
    img = _img(32, 32)
    # equivariant model: flips change nothing
    eq = PixelModel(32)
    a = predict_prob(eq, img, InferenceOptions(tile="off"))[0]
    b = predict_prob(eq, img, InferenceOptions(tile="off", tta=True))[0]
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert len(eq.batches) == 1 + 2  # the image and its horizontal flip (the model says no flips)
    # a ramp 0..1 averaged with its mirror image is 0.5 everywhere
    ramp = RampModel(32)
    plain = predict_prob(ramp, img, InferenceOptions(tile="off"))[0]
    tta = predict_prob(ramp, img, InferenceOptions(tile="off", tta=True))[0]
    assert plain[0, 0, 0] == 0.0 and plain[0, -1, 0] == 1.0
    np.testing.assert_allclose(tta, 0.5, atol=1e-6)
    f = flip_tta(lambda b: b, flips=((), (2,)))
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 4, 1)
    np.testing.assert_allclose(f(x), x)  # identity is equivariant


def test_tta_uses_the_flips_the_training_applied():
    assert tta_flips(None) == ((), (2,))  # unknown: horizontal only
    assert tta_flips([]) == ((),)
    assert tta_flips(["vertical"]) == ((), (1,))
    assert tta_flips(["horizontal", "vertical"]) == ((), (1,), (2,), (1, 2))
    img = _img(32, 32)
    both = PixelModel(32)
    both.flips = ["horizontal", "vertical"]
    predict_prob(both, img, InferenceOptions(tile="off", tta=True))
    assert len(both.batches) == 4

    # a model trained without vertical flips is never asked about an upside-down image
    class TopModel(PixelModel):
        flips = ["horizontal"]

        def predict(self, batch):
            out = super().predict(batch)
            out[:, : out.shape[1] // 2] = 1.0  # "the top half is foreground"
            out[:, out.shape[1] // 2 :] = 0.0
            return out

    prob = predict_prob(TopModel(32), img, InferenceOptions(tile="off", tta=True))[0]
    assert prob[:16].min() == 1.0 and prob[16:].max() == 0.0


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1.5}, "threshold 1.5 must be in [0, 1)"),
        ({"threshold": "x"}, "threshold must be a number"),
        ({"overlap": 0.95}, "overlap 0.95 must be in [0, 0.9]"),
        ({"tile": "maybe"}, "tile 'maybe' is not valid; use one of: auto, on, off"),
        ({"blend": "cubic"}, "blend 'cubic' is not valid; use one of: gaussian, linear"),
        ({"min_size": -1}, "min_size must be >= 0"),
        ({"min_size": 2.5}, "min_size must be a whole number"),
        ({"keep_largest": True}, "keep_largest must be a whole number"),
        ({"smooth": -1}, "smooth -1.0 must be in [0, 50]"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"pixel_spacing_mm": "a"}, "pixel spacing must be a number"),
        ({"pixel_spacing_mm": 0}, "must be > 0 mm"),
        ({"pixel_spacing_mm": "1,2,3"}, "one number or ROW,COL"),
    ],
)
def test_option_errors_are_one_line(kwargs, message):
    with pytest.raises(ConfigError) as e:
        InferenceOptions(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_options_normalise_and_replace():
    o = InferenceOptions(tile="ON", blend="Linear", pixel_spacing_mm="0.1,0.2", min_size=5.0)
    assert o.tile == "on" and o.blend == "linear" and o.spacing == (0.1, 0.2) and o.min_size == 5
    assert InferenceOptions(pixel_spacing_mm=0.3).spacing == (0.3, 0.3)
    assert o.replace(threshold=0.3).threshold == 0.3 and o.threshold is None
    with pytest.raises(ConfigError, match="unknown inference option"):
        o.replace(thresh=0.3)
    assert json.loads(json.dumps(o.to_dict()))["pixel_spacing_mm"] == [0.1, 0.2]


# ------------------------------------------------------------------------- postprocessing


def test_remove_small_and_keep_largest():
    m = np.zeros((40, 40), bool)
    m[1:11, 1:11] = True  # 100 px
    m[20:23, 20:23] = True  # 9 px
    m[30:35, 30:36] = True  # 30 px
    m[15, 15] = m[16, 16] = True  # two 1 px components (diagonal: not 4-connected)
    assert remove_small(m, 10).sum() == 130
    assert remove_small(m, 9).sum() == 139
    assert remove_small(m, 2).sum() == 139 and remove_small(m, 1).sum() == 141
    k1 = keep_largest(m, 1)
    assert k1.sum() == 100 and k1[1:11, 1:11].all()
    assert keep_largest(m, 2).sum() == 130
    assert keep_largest(m, 4).sum() == 140  # ties between the 1 px pair: the first in raster order
    assert keep_largest(m, 4)[15, 15] and not keep_largest(m, 4)[16, 16]


def test_fill_holes_fills_enclosed_background_only():
    m = np.zeros((30, 30), bool)
    m[5:20, 5:20] = True
    m[8:12, 8:12] = False  # enclosed hole: 16 px
    m[0:10, 25:30] = True
    m[0:4, 26:29] = False  # notch open to the top border: not a hole
    filled = fill_holes(m)
    assert filled.sum() == m.sum() + 16
    assert filled[8:12, 8:12].all() and not filled[0:4, 26:29].any()


def test_smooth_removes_a_spur_and_keeps_the_body():
    m = np.zeros((60, 60), np.uint8)
    m[10:50, 10:50] = 1
    m[30, 50:58] = 1  # one-pixel spur
    out = postprocess(m, InferenceOptions(smooth=2.0))
    assert out[30, 52:58].sum() == 0
    assert abs(int(out.sum()) - 1600) < 0.02 * 1600  # corners rounded, area kept within 2 %


def test_postprocess_multiclass_keeps_other_classes():
    m = np.zeros((30, 30), np.uint8)
    m[2:20, 2:20] = 1
    m[8:12, 8:12] = 2  # class 2 sits in a hole of class 1
    m[25, 25] = 1  # speck
    out = postprocess(m, InferenceOptions(fill_holes=True, min_size=5))
    assert (out == 2).sum() == 16 and out[25, 25] == 0
    assert (out == 1).sum() == 18 * 18 - 16


# ---------------------------------------------------------------------- stats and GeoJSON


def _holed_square():
    m = np.zeros((64, 64), np.uint8)
    m[10:50, 10:50] = 1
    m[20:30, 20:30] = 0  # hole of 100 px
    m[55:60, 5:8] = 1  # 15 px rectangle
    m[5, 60] = m[6, 61] = 1  # two diagonal pixels: two components
    return m


def test_geojson_of_a_mask_with_a_hole():
    m = _holed_square()
    gj = json.loads(json.dumps(mask_geojson(m, properties={"width": 64})))
    assert gj["type"] == "FeatureCollection" and gj["properties"] == {"width": 64}
    feats = gj["features"]
    assert len(feats) == 4
    by_area = sorted(feats, key=lambda f: -f["properties"]["area_px"])
    big = by_area[0]
    rings = big["geometry"]["coordinates"]
    assert (
        big["geometry"]["type"] == "Polygon" and len(rings) == 2 and big["properties"]["holes"] == 1
    )
    assert big["properties"]["area_px"] == 1500 == polygon_area(rings)
    # collinear points dropped: a square ring is 4 corners + the closing point
    assert rings[0][0] == rings[0][-1] and len(rings[0]) == 5 and len(rings[1]) == 5
    assert sorted(map(tuple, rings[0][:-1])) == [(10, 10), (10, 50), (50, 10), (50, 50)]
    assert sorted(map(tuple, rings[1][:-1])) == [(20, 20), (20, 30), (30, 20), (30, 30)]
    assert ring_area(np.array(rings[0][:-1])) == 1600 and ring_area(np.array(rings[1][:-1])) == -100
    for f in feats:  # every polygon's area is its pixel count
        assert polygon_area(f["geometry"]["coordinates"]) == f["properties"]["area_px"]
    assert sorted(f["properties"]["area_px"] for f in feats) == [1, 1, 15, 1500]
    assert big["properties"]["bbox"] == [10, 10, 40, 40]


def test_geojson_of_a_random_mask_matches_pixel_counts():
    rng = np.random.default_rng(3)
    m = (cv2.GaussianBlur(rng.random((80, 90)).astype(np.float32), (0, 0), 2) > 0.5).astype(
        np.uint8
    )
    gj = mask_geojson(m, limit=None)
    total = sum(polygon_area(f["geometry"]["coordinates"]) for f in gj["features"])
    assert total == m.sum()
    n, _ = cv2.connectedComponents(m, connectivity=4)
    assert len(gj["features"]) == n - 1


def test_stats_on_known_shapes():
    m = np.zeros((100, 120), np.uint8)
    m[10:30, 20:50] = 1  # 20 x 30 rectangle
    cv2.circle(m, (80, 60), 30, 1, -1)
    s = mask_stats(m, (0.5, 0.2))
    assert s["component_count"] == 2 and len(s["components"]) == 2
    rect, disc = s["components"]
    assert rect["area_px"] == 600 and rect["bbox"] == [20, 10, 30, 20]
    # midpoint perimeter: 100 edge lengths, 4 corners cut by 1 - sqrt(1/2) each
    assert rect["perimeter_px"] == pytest.approx(100 - 4 * (1 - math.sqrt(0.5)))
    assert rect["centroid"] == [35.0, 20.0]
    assert rect["area_mm2"] == pytest.approx(60.0) and "perimeter_mm" not in rect
    assert abs(disc["area_px"] - math.pi * 30**2) < 0.01 * math.pi * 30**2
    # a digitized circle: within +8 % of 2 pi r (the midpoint polygon cuts corners, not staircases)
    assert 1.0 < disc["perimeter_px"] / (2 * math.pi * 30) < 1.08
    assert s["area_px"] == int(m.sum()) and s["bbox"] == [20, 10, 91, 81]
    assert s["area_mm2"] == pytest.approx(m.sum() * 0.1)
    iso = mask_stats(m, (0.1, 0.1))
    assert iso["perimeter_mm"] == pytest.approx(iso["perimeter_px"] * 0.1)
    empty = mask_stats(np.zeros((5, 5), np.uint8))
    assert empty["area_px"] == 0 and empty["bbox"] is None and empty["component_count"] == 0
    capped = mask_stats(_holed_square(), limit=2)
    assert capped["component_count"] == 4 and len(capped["components"]) == 2
    assert capped["components_truncated"] and capped["area_px"] == 1517


# ----------------------------------------------------------------------- segment_image


def test_segment_image_outputs_agree():
    img = np.zeros((40, 60), np.uint8)
    img[10:30, 15:45] = 200  # prob 0.78 inside, 0 outside
    img[2, 2] = 150  # prob 0.59: one pixel
    m = PixelModel(32)
    m.threshold = 0.6  # the model's own threshold drops the single pixel
    res = segment_image(m, img, InferenceOptions(tile="on", pixel_spacing_mm=0.5))
    assert res.threshold == 0.6 and res.tiled and res.mask.shape == (40, 60)
    assert res.mask.sum() == 600 and res.mask[2, 2] == 0
    s = res.stats()
    assert s["area_px"] == 600 and s["area_mm2"] == pytest.approx(150.0) and s["threshold"] == 0.6
    assert res.geojson()["features"][0]["properties"]["area_px"] == 600
    png = cv2.imdecode(np.frombuffer(res.mask_png(), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(png, res.mask * 255)
    ov = cv2.imdecode(np.frombuffer(res.overlay_png(0.5), np.uint8), cv2.IMREAD_COLOR)
    assert ov.shape == (40, 60, 3)
    assert res.rethreshold(0.5).mask.sum() == 601
    opt = segment_image(m, img, InferenceOptions(tile="on", threshold=0.5, min_size=2))
    assert opt.threshold == 0.5 and opt.mask.sum() == 600
    with pytest.raises(DataError, match="uint8"):
        segment_image(m, img.astype(np.float32))
    with pytest.raises(DataError, match="3 channels but the model expects 1"):
        segment_image(m, np.zeros((8, 8, 3), np.uint8))


def test_inference_runs_without_scipy_or_tensorflow():
    """The edge device has numpy + OpenCV only: predict, stats and GeoJSON must not need more."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('scipy', 'tensorflow', 'tf_keras', 'keras'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import numpy as np
from kseg.inference import InferenceOptions, segment_image
from kseg.inference import predict_files
class M:
    input_size, channels, resize_mode, threshold = 16, 1, 'stretch', 0.5
    def predict(self, b): return (b / 255.0).astype(np.float32)
img = np.zeros((40, 30), np.uint8); img[5:20, 5:20] = 255
r = segment_image(M(), img, InferenceOptions(tile='on', tta=True, min_size=3, fill_holes=True, smooth=1))
print(r.stats()['area_px'], len(r.geojson()['features']))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    area, feats = map(int, out.stdout.split())
    assert feats == 1 and abs(area - 225) <= 12


# -------------------------------------------------------------------------- thresholds


def _brute_dice(probs, masks, t):
    tp = fp = fn = 0
    for p, m in zip(probs, masks, strict=True):
        pred, true = p > t, m > 0
        tp += int((pred & true).sum())
        fp += int((pred & ~true).sum())
        fn += int((~pred & true).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def test_threshold_sweep_matches_brute_force():
    rng = np.random.default_rng(1)
    masks, probs = [], []
    for _ in range(3):
        m = np.zeros((30, 30), np.uint8)
        m[5:20, 8:25] = 1
        p = np.clip(np.where(m > 0, 0.35, 0.15) + rng.normal(0, 0.1, m.shape), 0, 1)
        masks.append(m)
        probs.append(p.astype(np.float32))
    sweep = ThresholdSweep()
    for p, m in zip(probs, masks, strict=True):
        sweep.add(p, m)
    expected = [_brute_dice(probs, masks, t) for t in sweep.grid]
    np.testing.assert_allclose(sweep.dice(), expected, atol=1e-12)
    best = sweep.best()
    assert best.dice == pytest.approx(max(expected))
    assert best.threshold == pytest.approx(float(sweep.grid[int(np.argmax(expected))]))
    assert 0.15 < best.threshold < 0.35  # between the two class means, not 0.5
    assert best.dice_at_default == pytest.approx(_brute_dice(probs, masks, 0.5))
    assert best.dice > best.dice_at_default + 0.3


def test_threshold_ties_go_to_the_default():
    m = np.zeros((10, 10), np.uint8)
    m[:5] = 1
    p = np.where(m > 0, 0.9, 0.02).astype(np.float32)  # perfect for every t in [0.05, 0.85]
    c = choose_threshold([p], [m])
    assert c.threshold == 0.5 and c.dice == 1.0
    with pytest.raises(DataError, match="one-class"):
        ThresholdSweep().add(np.zeros((4, 4, 2)), np.zeros((4, 4)))


def test_evaluate_scores_postprocessed_masks_and_reports_the_best_threshold(tmp_path):
    from kseg.evaluate import evaluate

    true = np.zeros((32, 32), np.uint8)
    true[8:24, 8:24] = 1  # 256 px
    prob = np.where(true > 0, 0.4, 0.0).astype(np.float32)
    prob[1, 1] = 0.45  # a one-pixel false positive
    items = [("a", np.zeros((32, 32), np.uint8), true)]
    plain = evaluate(lambda im: prob, items, tmp_path / "p", threshold=0.3, worst_k=0)
    assert plain["dice"] == pytest.approx(2 * 256 / (2 * 256 + 1))
    clean = evaluate(
        lambda im: prob,
        items,
        tmp_path / "c",
        threshold=0.3,
        worst_k=0,
        postprocess=lambda m: postprocess(m, InferenceOptions(min_size=2)),
    )
    assert clean["dice"] == 1.0
    sel = plain["threshold_selection"]  # raw probabilities: 0.40 < t < 0.45 keeps only the speck
    assert sel["default"] == 0.3 and 0.0 < sel["threshold"] < 0.4 and sel["dice"] == plain["dice"]
    curve = dict(zip(sel["grid"], sel["dice_per_threshold"], strict=True))
    assert curve[0.4] == 0.0  # 0.4 is not > 0.4 (float32 compare, as binarize): only the speck
    assert curve[0.35] == pytest.approx(plain["dice"]) and curve[0.45] == 0.0


def test_stats_and_geojson_of_a_segmentation_share_one_labelling(monkeypatch):
    """``Segmentation.stats()`` and ``.geojson()`` label the mask once between them and answer
    exactly what the stand-alone functions answer (two classes, a hole, several components)."""
    import kseg.inference.vector as vector
    from kseg.inference.segment import Segmentation

    m = np.zeros((60, 70), np.uint8)
    m[5:40, 5:40] = 1
    m[15:25, 15:25] = 0  # a hole
    m[45:55, 10:20] = 1
    cv2.circle(m, (55, 30), 8, 2, -1)
    prob = np.zeros((*m.shape, 3), np.float32)
    opts = InferenceOptions(pixel_spacing_mm=0.5)
    seg = Segmentation(np.zeros(m.shape, np.uint8), prob, m, 0.5, opts)
    calls = []
    real = vector._class_components
    monkeypatch.setattr(vector, "_class_components", lambda *a: calls.append(a[1]) or real(*a))
    stats, gj = seg.stats(), seg.geojson()
    assert calls == [1, 2]  # one pass per class, shared
    assert gj == seg.geojson() and calls == [1, 2]  # parts not consumed by the first call
    calls.clear()
    want_stats = mask_stats(m, opts.spacing, num_classes=3, class_names=seg.class_names)
    assert calls == [1, 2]
    for key in ("threshold", "tiled", "windows"):
        stats.pop(key)
    assert stats == want_stats
    want = mask_geojson(m, opts.spacing, properties=gj["properties"], class_names=seg.class_names)
    assert gj == want and len(gj["features"]) == 3
    assert [f["properties"]["holes"] for f in gj["features"]] == [1, 0, 0]
    assert all("rings" not in c and "holes" not in c for c in stats["components"])
