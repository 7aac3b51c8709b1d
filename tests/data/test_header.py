"""One header parser for uploads and files: kseg.data.header reads PNG/JPEG/BMP/TIFF sizes from
bytes; kseg.data.io.header_size uses it on files (with Pillow for other formats) and the folder
size check no longer decodes images whose header it can read."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from kseg.data.header import HeaderError, image_header
from kseg.data.io import header_size


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
def test_header_of_each_format_matches_the_decoded_image(tmp_path, ext):
    img = np.random.default_rng(0).integers(0, 255, (37, 53), np.uint8)
    path = tmp_path / f"x{ext}"
    cv2.imwrite(str(path), img)
    fmt, w, h = image_header(path.read_bytes())
    assert (w, h) == (53, 37) and fmt == {".jpg": "jpeg", ".tif": "tiff"}.get(ext, ext[1:])
    assert header_size(path) == (53, 37)


def test_jpeg_frame_header_after_a_large_segment_is_found(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.zeros((21, 34), np.uint8))
    data = buf.tobytes()
    app = b"\xff\xe1" + struct.pack(">H", 65000) + b"\0" * 64998  # two ~64 KB APP1 segments
    path = tmp_path / "exif.jpg"
    path.write_bytes(data[:2] + app + app + data[2:])
    with pytest.raises(HeaderError):  # the first 64 KiB alone hold no frame header
        image_header(path.read_bytes()[: 64 * 1024])
    assert header_size(path) == (34, 21)


def test_other_formats_go_to_pillow_and_corrupt_headers_give_none(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((9, 14), np.uint8)).save(tmp_path / "a.gif")
    assert header_size(tmp_path / "a.gif") == (14, 9)
    with pytest.raises(HeaderError) as e:
        image_header((tmp_path / "a.gif").read_bytes())
    assert e.value.unknown_format
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    assert header_size(bad) is None
    assert header_size(tmp_path / "missing.png") is None


def test_folder_size_check_reads_headers_not_pixels(tmp_path, monkeypatch):
    import kseg.data.folder as folder
    from kseg.errors import DataError

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((20, 30), np.uint8))
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), np.zeros((20, 31), np.uint8))
    monkeypatch.setattr(folder, "_imread", lambda p: pytest.fail(f"decoded {p}"))
    samples = folder.scan_folder(tmp_path)
    with pytest.raises(DataError, match=r"a.png 20x30 vs mask a.png 20x31"):
        folder.check_sizes(samples)
