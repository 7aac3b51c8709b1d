"""Image dimensions from the first bytes of a PNG, JPEG, BMP or TIFF file, nothing decoded.

Decoding allocates ``width * height * channels`` bytes, and a few kilobytes of PNG can declare
30000 x 30000 pixels (a "decompression bomb"). :func:`image_header` reads the dimensions from the
header (PNG ``IHDR``, JPEG ``SOFn``, BMP ``BITMAPINFOHEADER``, TIFF ``IFD0``) so a caller can
refuse such a file before any decoder sees it. The format is recognised from the bytes, never from
a file name. Pure standard library: the service (:mod:`kseg.serve.limits`, uploads) and the data
readers (:func:`kseg.data.io.header_size`, files) share it.

Example:
    >>> image_header(open("scan.png", "rb").read(64))
    ('png', 800, 540)
"""

from __future__ import annotations

import struct

from kseg.errors import DataError

FORMATS = ("png", "jpeg", "bmp", "tiff")
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG), CC (DAC) are not frames
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
NOT_AN_IMAGE = "not a PNG, JPEG, BMP or TIFF image (checked from its bytes, not its name)"


class HeaderError(DataError):
    """The bytes are not a header this module reads: ``unknown_format`` (another format, or not
    an image) or a truncated or corrupt header (``unknown_format`` false)."""

    def __init__(self, message: str, *, unknown_format: bool = False) -> None:
        super().__init__(message)
        self.unknown_format = unknown_format


def _png(data: bytes) -> tuple[int, int]:
    # signature, then the first chunk must be IHDR: length (13), type, width, height
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise HeaderError("PNG header is truncated or has no IHDR chunk; send a complete file")
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def _jpeg(data: bytes) -> tuple[int, int]:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise HeaderError("JPEG marker structure is corrupt; re-save the image")
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
    raise HeaderError("JPEG has no frame header (SOF) before its data; re-save the image")


def _bmp(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise HeaderError("BMP header is truncated; send a complete file")
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
        raise HeaderError("TIFF header is truncated; send a complete file") from None
    if 256 not in dims or 257 not in dims:
        raise HeaderError("TIFF has no ImageWidth/ImageLength in its first directory")
    return dims[256], dims[257]


def image_header(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` read from the header only; nothing is decoded.

    Raises:
        HeaderError: an unknown format (``unknown_format``), or a truncated, corrupt or empty
            header.
    """
    if data.startswith(_PNG_SIG):
        fmt, (w, h) = "png", _png(data)
    elif data.startswith(b"\xff\xd8\xff"):
        fmt, (w, h) = "jpeg", _jpeg(data)
    elif data.startswith(b"BM"):
        fmt, (w, h) = "bmp", _bmp(data)
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        fmt, (w, h) = "tiff", _tiff(data)
    else:
        raise HeaderError(NOT_AN_IMAGE, unknown_format=True)
    if w <= 0 or h <= 0:
        raise HeaderError(f"{fmt.upper()} header declares an empty image ({w}x{h})")
    return fmt, int(w), int(h)


__all__ = ["FORMATS", "HeaderError", "image_header"]
