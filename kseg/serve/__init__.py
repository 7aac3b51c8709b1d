"""``kseg serve``: an HTTP segmentation service with a web page, over :mod:`kseg.inference`.

FastAPI and uvicorn (the ``serve`` extra) are imported only by :func:`create_app` and the command,
never by ``import kseg``.

Example:
    >>> from kseg.serve import ServeSettings, create_app
    >>> app = create_app("model_int8.tflite", ServeSettings(workers=2, token="s3cret"))
    >>> # uvicorn.run(app, host="127.0.0.1", port=9009)
"""

from __future__ import annotations

from typing import Any

from kseg.serve.limits import UploadError, decode_upload, image_header
from kseg.serve.settings import ServeSettings


def create_app(model: Any, settings: ServeSettings | None = None) -> Any:
    """The FastAPI app for ``model`` (see :func:`kseg.serve.app.create_app`)."""
    from kseg.serve.app import create_app as _create_app

    return _create_app(model, settings)


__all__ = ["ServeSettings", "UploadError", "create_app", "decode_upload", "image_header"]
