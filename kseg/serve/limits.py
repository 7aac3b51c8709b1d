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

import numpy as np

from kseg.data.header import NOT_AN_IMAGE, HeaderError
from kseg.data.header import image_header as _image_header
from kseg.errors import KsegError


class UploadError(KsegError):
    """A request the service refuses; ``status`` is the HTTP status to answer with (4xx, or 503
    when every worker and queue place is taken)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def image_header(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` read from the header only (:mod:`kseg.data.header`).

    Raises:
        UploadError: empty bytes (400), an unknown format (415), or a truncated or corrupt header
            (400).
    """
    if not data:
        raise UploadError("empty request body; send the image bytes or a multipart 'file' field")
    try:
        return _image_header(data)
    except HeaderError as e:
        if e.unknown_format:
            raise UploadError(f"the upload is {NOT_AN_IMAGE}", status=415) from None
        raise UploadError(str(e)) from None


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
