"""kseg.data.io: reading every supported format, binary masks, resize round trips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from kseg.data.io import IMAGE_EXTENSIONS, fit_to_size, read_image, read_mask, restore_size
from kseg.errors import DataError


def _ellipse(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2 + 7, h // 2 - 5), (w // 4, h // 5), 20, 0, 360, 1, -1)
    return m


def test_read_image_returns_rgb_order_and_converts_channels(tmp_path):
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = read_image(tmp_path / "red.png", 3)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [200, 0, 0]
    gray = read_image(tmp_path / "red.png", 1)
    assert gray.shape == (5, 7, 1)
    assert gray[0, 0, 0] == round(0.299 * 200)  # BT.601 luminance of pure red

    cv2.imwrite(str(tmp_path / "g.bmp"), np.full((4, 6), 77, np.uint8))
    g3 = read_image(tmp_path / "g.bmp", 3)
    assert g3.shape == (4, 6, 3) and (g3 == 77).all()


def test_read_image_scales_16_bit_and_drops_alpha(tmp_path):
    cv2.imwrite(str(tmp_path / "a.tif"), np.full((4, 4), 65535, np.uint16))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((4, 4), 257 * 100, np.uint16))
    assert (read_image(tmp_path / "a.tif", 1) == 255).all()
    assert (read_image(tmp_path / "b.png", 1) == 100).all()
    bgra = np.zeros((3, 3, 4), np.uint8)
    bgra[..., 1] = 90
    bgra[..., 3] = 10
    cv2.imwrite(str(tmp_path / "c.png"), bgra)
    assert read_image(tmp_path / "c.png", 3)[0, 0].tolist() == [0, 90, 0]


@pytest.mark.parametrize(
    "content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40]
)
def test_read_image_corrupt_names_the_file(tmp_path, content):
    bad = tmp_path / "broken_scan.png"
    bad.write_bytes(content)
    with pytest.raises(DataError, match="broken_scan.png: cannot read image"):
        read_image(bad, 1)
    with pytest.raises(DataError, match="broken_scan.png"):
        read_mask(bad)


def test_read_image_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.png"):
        read_image(tmp_path / "nope.png", 3)


def test_read_mask_encodings(tmp_path):
    ref = _ellipse(40, 60)
    cv2.imwrite(str(tmp_path / "m255.png"), ref * 255)
    cv2.imwrite(str(tmp_path / "m01.png"), ref)
    cv2.imwrite(str(tmp_path / "m16.tif"), ref.astype(np.uint16) * 1000)
    colour = np.zeros((40, 60, 3), np.uint8)
    colour[ref == 1] = (0, 0, 128)  # dark red label
    cv2.imwrite(str(tmp_path / "rgb.png"), colour)
    pal = Image.fromarray(ref * 3, mode="L").convert("P")
    pal.putpalette([0, 0, 0] * 3 + [255, 0, 0] + [0, 0, 0] * 252)  # index 3 = red, 0 = black
    pal.save(tmp_path / "pal.png")
    assert Image.open(tmp_path / "pal.png").mode == "P"
    for name in ("m255.png", "m01.png", "m16.tif", "rgb.png", "pal.png"):
        m = read_mask(tmp_path / name)
        assert m.dtype == np.uint8 and m.shape == (40, 60), name
        assert np.array_equal(m, ref), name


def test_read_mask_jpeg_threshold_ignores_compression_ringing(tmp_path):
    ref = _ellipse(64, 64)
    cv2.imwrite(str(tmp_path / "m.jpg"), ref * 255, [cv2.IMWRITE_JPEG_QUALITY, 60])
    raw = cv2.imread(str(tmp_path / "m.jpg"), 0)
    assert ((raw > 0) & (raw < 128)).any()  # ringing exists, so "any non-zero" would be wrong
    m = read_mask(tmp_path / "m.jpg")
    assert (m != ref).mean() < 0.01


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
@pytest.mark.parametrize("hw", [(545, 738), (738, 545), (31, 200)])
def test_fit_restore_round_trip(mode, hw):
    h, w = hw
    mask = _ellipse(h, w)
    small, info = fit_to_size(mask, 256, mode, is_mask=True)
    assert small.shape == (256, 256) and set(np.unique(small)) <= {0, 1}
    back = restore_size(small, info, is_mask=True)
    assert back.shape == (h, w)
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.95, iou
    img = np.dstack([mask * 200] * 3).astype(np.uint8)
    x, info_i = fit_to_size(img, 256, mode)
    assert x.shape == (256, 256, 3) and x.dtype == np.uint8
    prob = x[..., :2].astype(np.float32) / 255.0  # an (S, S, K) float map
    restored = restore_size(prob, info_i)
    assert restored.shape == (h, w, 2) and restored.dtype == np.float32


def test_letterbox_geometry_is_centred_and_zero_padded():
    img = np.full((545, 738, 1), 255, np.uint8)
    x, info = fit_to_size(img, 256, "letterbox")
    assert info.scale == pytest.approx(256 / 738)
    assert info.resized == (189, 256)  # round(545 * 256 / 738)
    assert info.pad == (33, 0)  # (256 - 189) // 2
    assert x.shape == (256, 256, 1)
    assert (x[:33] == 0).all() and (x[33 + 189 :] == 0).all() and (x[33:222] == 255).all()
    s, sinfo = fit_to_size(img[..., 0], 64, "stretch")
    assert s.shape == (64, 64) and sinfo.pad == (0, 0) and sinfo.original == (545, 738)


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="letterbox"):
        fit_to_size(np.zeros((4, 4), np.uint8), 8, "crop")


def test_extensions_cover_the_documented_formats():
    assert {".png", ".jpg", ".bmp", ".tif"} <= set(IMAGE_EXTENSIONS)


def test_io_does_not_import_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, kseg.data, kseg.data.io; assert 'tensorflow' not in sys.modules, 'tf imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
