"""Check untrusted image bytes before decoding them (numpy + OpenCV only, no web framework).

Decoding allocates ``width * height * channels`` bytes, and a few kilobytes of PNG can declare
30000 x 30000 pixels (a "decompression bomb"). :func:`image_header` reads the dimensions from
the file header (PNG ``IHDR``, JPEG ``SOFn``, BMP ``BITMAPINFOHEADER``, TIFF ``IFD0``) without
decoding, and :func:`decode_upload` refuses anything over the pixel limit before OpenCV sees it.
The format is recognised from the bytes, never from a file name or a content type.

Example:
    >>> fmt, w, h = image_header(data)                 # ("png", 512, 512)
    >>> image = decode_upload(data, channels=1, max_pixels=64_000_000)
"""

from __future__ import annotations

import struct

import numpy as np

from kseg.errors import KsegError

FORMATS = ("png", "jpeg", "bmp", "tiff")
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG), CC (DAC) are not frames
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class UploadError(KsegError):
    """A request the service refuses; ``status`` is the HTTP status to answer with (4xx, or 503
    when every worker and queue place is taken)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _png(data: bytes) -> tuple[int, int]:
    # signature, then the first chunk must be IHDR: length (13), type, width, height
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise UploadError("PNG header is truncated or has no IHDR chunk; send a complete file")
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def _jpeg(data: bytes) -> tuple[int, int]:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise UploadError("JPEG marker structure is corrupt; re-save the image")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / start of scan before a frame
            break
        i += 2 + length
    raise UploadError("JPEG has no frame header (SOF) before its data; re-save the image")


def _bmp(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise UploadError("BMP header is truncated; send a complete file")
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit dimensions
        w, h = struct.unpack("<HH", data[18:22])
        return w, h
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


def _tiff(data: bytes) -> tuple[int, int]:
    end = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack(end + "I", data[4:8])
        (count,) = struct.unpack(end + "H", data[offset : offset + 2])
        dims: dict[int, int] = {}
        for k in range(count):
            e = offset + 2 + 12 * k
            tag, typ = struct.unpack(end + "HH", data[e : e + 4])
            if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
                fmt = end + ("H" if typ == 3 else "I")
                dims[tag] = struct.unpack(fmt, data[e + 8 : e + 8 + struct.calcsize(fmt)])[0]
    except struct.error:
        raise UploadError("TIFF header is truncated; send a complete file") from None
    if 256 not in dims or 257 not in dims:
        raise UploadError("TIFF has no ImageWidth/ImageLength in its first directory")
    return dims[256], dims[257]


def image_header(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` read from the header only; nothing is decoded.

    Raises:
        UploadError: empty bytes (400), an unknown format (415), or a truncated or corrupt header
            (400).
    """
    if not data:
        raise UploadError("empty request body; send the image bytes or a multipart 'file' field")
    if data.startswith(_PNG_SIG):
        fmt, (w, h) = "png", _png(data)
    elif data.startswith(b"\xff\xd8\xff"):
        fmt, (w, h) = "jpeg", _jpeg(data)
    elif data.startswith(b"BM"):
        fmt, (w, h) = "bmp", _bmp(data)
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        fmt, (w, h) = "tiff", _tiff(data)
    else:
        raise UploadError(
            "the upload is not a PNG, JPEG, BMP or TIFF image (checked from its bytes, not its name)",
            status=415,
        )
    if w <= 0 or h <= 0:
        raise UploadError(f"{fmt.upper()} header declares an empty image ({w}x{h})")
    return fmt, int(w), int(h)


def check_header(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """:func:`image_header`, refusing (413) more than ``max_pixels`` pixels."""
    fmt, w, h = image_header(data)
    if w * h > max_pixels:
        raise UploadError(
            f"image is {w}x{h} = {w * h} pixels, over this service's limit of {max_pixels}; "
            f"downscale or crop it",
            status=413,
        )
    return fmt, w, h


def decode_upload(data: bytes, *, channels: int, max_pixels: int) -> np.ndarray:
    """uint8 ``(H, W, channels)``: header checked against ``max_pixels``, then decoded by OpenCV.

    Raises:
        UploadError: 413 when the header declares more than ``max_pixels`` pixels; 415/400 for
            an unknown format or a file that does not decode (truncated, corrupt).
    """
    from kseg.data.io import decode_image
    from kseg.errors import DataError

    fmt, w, h = check_header(data, max_pixels)
    try:
        image = decode_image(data, channels, source=fmt)
    except DataError:
        raise UploadError(
            f"the {fmt.upper()} image could not be decoded (truncated or corrupt); send a complete file"
        ) from None
    if image.shape[0] != h or image.shape[1] != w:  # a decoder that disagrees with the header
        raise UploadError(
            f"the {fmt.upper()} header says {w}x{h} but the pixels are "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    return image
