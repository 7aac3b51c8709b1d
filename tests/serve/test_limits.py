"""Image headers are read without decoding; pixel bombs are refused before any allocation."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import cv2
import numpy as np
import pytest

from kseg.serve.limits import UploadError, check_header, decode_upload, image_header

from .conftest import bomb_png


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff"])
@pytest.mark.parametrize("shape", [(37, 53), (200, 31, 3)])
def test_header_dimensions_match_the_decoded_image(ext, shape):
    img = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    data = cv2.imencode(ext, img)[1].tobytes()
    fmt, w, h = image_header(data)
    assert fmt == {".png": "png", ".jpg": "jpeg", ".bmp": "bmp", ".tiff": "tiff"}[ext]
    assert (h, w) == shape[:2]
    decoded = decode_upload(data, channels=1, max_pixels=10**6)
    assert decoded.shape == (shape[0], shape[1], 1)
    if ext == ".png" and len(shape) == 2:
        np.testing.assert_array_equal(decoded[..., 0], img)  # lossless round trip


def test_progressive_jpeg_and_jfif_segments_are_skipped_to_the_frame():
    img = np.random.default_rng(1).integers(0, 255, (45, 70, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert image_header(data) == ("jpeg", 70, 45)


def test_pixel_bomb_is_refused_from_the_header_without_decoding(monkeypatch):
    data = bomb_png()
    assert len(data) < 2048
    assert image_header(data) == ("png", 30000, 30000)

    def no_decode(*a, **k):
        raise AssertionError("the decoder must not run on a refused image")

    monkeypatch.setattr("kseg.data.io.decode_image", no_decode)
    tracemalloc.start()
    with pytest.raises(UploadError) as err:
        decode_upload(data, channels=1, max_pixels=64_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert err.value.status == 413
    assert "30000x30000" in str(err.value)
    assert peak < 1_000_000  # nothing near the 900 MB the pixels would take


def test_limit_is_inclusive():
    data = cv2.imencode(".png", np.zeros((10, 20), np.uint8))[1].tobytes()
    assert check_header(data, 200)[1:] == (20, 10)
    with pytest.raises(UploadError):
        check_header(data, 199)


@pytest.mark.parametrize(
    "data,status,word",
    [
        (b"", 400, "empty"),
        (b"GIF89a" + b"\x00" * 40, 415, "not a PNG"),
        (b"%PDF-1.4 hello", 415, "not a PNG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", 400, "IHDR"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", 400, "JPEG"),
        (b"II*\x00\x08\x00\x00\x00", 400, "TIFF"),
        (
            b"\x89PNG\r\n\x1a\n" + bomb_png()[8:33].replace(b"\x00\x00u0", b"\x00\x00\x00\x00", 1),
            400,
            "empty",
        ),
    ],
)
def test_bad_headers_give_one_clear_4xx(data, status, word):
    with pytest.raises(UploadError) as err:
        decode_upload(data, channels=1, max_pixels=10**6)
    assert err.value.status == status
    assert word in str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_png_is_refused_by_decoding():
    img = np.random.default_rng(2).integers(0, 255, (64, 64), dtype=np.uint8)
    data = cv2.imencode(".png", img)[1].tobytes()
    for cut in (40, len(data) // 2, len(data) - 13):
        with pytest.raises(UploadError) as err:
            decode_upload(data[:cut], channels=1, max_pixels=10**6)
        assert err.value.status == 400 and "truncated" in str(err.value)


def test_import_kseg_and_kseg_serve_load_no_web_framework():
    code = (
        "import sys, kseg, kseg.cli, kseg.serve; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
