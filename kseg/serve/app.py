"""The FastAPI application: ``create_app(model, settings)`` builds it; routes stay thin.

Routes call the same library as ``kseg predict`` (:func:`kseg.inference.segment_image`), on the
engine's worker threads. Every refused request is a 4xx JSON ``{"error": "<one line>"}`` (503
with ``Retry-After`` when the workers and the queue are full); an
unexpected failure is a 500 with the same shape and no traceback (the server log keeps it), and
the service keeps serving either way.

Example:
    >>> from fastapi.testclient import TestClient
    >>> app = create_app("model_int8.tflite", ServeSettings(max_pixels=16_000_000))
    >>> TestClient(app).post("/v1/segment", content=open("scan.png", "rb").read()).json()["stats"]
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from kseg import __version__
from kseg.errors import KsegError
from kseg.serve.engine import Engine
from kseg.serve.limits import UploadError, check_header, decode_upload
from kseg.serve.settings import ServeSettings

log = logging.getLogger("kseg.serve")
_MULTIPART_OVERHEAD = 16 * 1024  # boundaries and part headers around the file in a form upload
_PLAIN_NAME = re.compile(r"^[^/\\\x00-\x1f]{1,255}$")


class OutputFormat(StrEnum):
    """What ``POST /v1/segment`` answers with."""

    JSON = "json"  # statistics and GeoJSON (per class, with names) and the mask as a base64 PNG
    PNG = "png"  # the mask PNG itself (0/255; K classes: class ids spread over 0..255)
    OVERLAY = "overlay"  # the image with the mask tinted and outlined, as PNG


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _one_line_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path")]
        parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def _static_dir() -> str:
    return str(resources.files("kseg.serve") / "static")


def create_app(model: Any, settings: ServeSettings | None = None) -> FastAPI:
    """The service application for one model.

    Args:
        model: a model path (``.tflite``, ``.keras``, ``.h5``) or a loaded predictor; loaded here,
            once, so a bad model fails before the port opens.
        settings: limits, token, workers (default :class:`ServeSettings`).

    Raises:
        KsegError: the model cannot be loaded (the message names the file).
    """
    settings = settings or ServeSettings()
    engine = Engine(model, settings)
    card = engine.card()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    app = FastAPI(
        lifespan=lifespan,
        title="kseg segmentation service",
        version=__version__,
        description=(
            f"Segments images with `{card['name']}` ({card['input_size']}x{card['input_size']}x"
            f"{card['channels']}). Send the image as the raw request body or as a multipart "
            f'`file` field; refused requests answer `{{"error": "..."}}` with a 4xx status.'
        ),
    )
    app.state.engine = engine
    app.state.settings = settings

    # ------------------------------------------------------------------ errors: one JSON line

    @app.exception_handler(UploadError)
    async def _upload_error(_: Request, exc: UploadError) -> JSONResponse:
        headers = {
            401: {"WWW-Authenticate": "Bearer"},
            503: {"Retry-After": "1"},
        }.get(exc.status)
        return _error(exc.status, str(exc), headers)

    @app.exception_handler(KsegError)
    async def _kseg_error(_: Request, exc: KsegError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _one_line_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has details")

    # ------------------------------------------------------------------ auth and body limits

    def require_token(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), settings.token.encode()
        ):
            raise UploadError(
                "missing or wrong bearer token; send 'Authorization: Bearer <token>'", status=401
            )

    async def read_limited(request: Request) -> bytes:
        limit = settings.max_upload_bytes + _MULTIPART_OVERHEAD
        too_big = UploadError(
            f"request body over this service's limit of {settings.max_upload_bytes} bytes",
            status=413,
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def image_bytes(request: Request) -> tuple[bytes, str | None]:
        """The image from the raw body or the multipart ``file`` field, and its file name."""
        body = await read_limited(request)
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            data, name = body, None
        else:

            async def once() -> AsyncGenerator[bytes, None]:
                yield body
                yield b""

            parser = MultiPartParser(
                Headers(raw=request.headers.raw),
                once(),
                max_files=1,
                max_fields=16,
                max_part_size=64 * 1024,
            )
            try:
                form = await parser.parse()
            except MultiPartException as e:
                raise UploadError(f"malformed multipart upload: {e.message}") from None
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            upload = form.get("file") if isinstance(form.get("file"), UploadFile) else None
            upload = upload or (files[0] if files else None)
            if upload is None:
                await form.close()
                raise UploadError("multipart upload has no file; send it in a field named 'file'")
            data, name = await upload.read(), upload.filename
            await form.close()
        if len(data) > settings.max_upload_bytes:
            raise UploadError(
                f"image of {len(data)} bytes is over this service's limit of "
                f"{settings.max_upload_bytes} bytes",
                status=413,
            )
        if name is not None and (not _PLAIN_NAME.match(name) or ".." in name):
            raise UploadError(
                f"file name {name[:80]!r} must be a plain name without folders, '..' or "
                f"control characters"
            )
        return data, name

    # ------------------------------------------------------------------ routes

    static = _static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(f"{static}/index.html", media_type="text/html")

    @app.get("/healthz", summary="Liveness: the model is loaded and the service answers")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": card["name"],
            "version": __version__,
            "in_flight": engine.in_flight,
            "refused_busy": engine.refused,
        }

    @app.get(
        "/v1/model",
        summary="The model card and serving facts",
        dependencies=[Depends(require_token)],
    )
    async def model_card() -> dict[str, Any]:
        return {**card, "limits": _limits(settings)}

    @app.post(
        "/v1/segment",
        summary="Segment one image",
        dependencies=[Depends(require_token)],
        responses={
            200: {
                "content": {"image/png": {}},
                "description": "JSON, or PNG for format=png|overlay",
            },
            400: {"description": "not an image, truncated, bad option or file name"},
            401: {"description": "missing or wrong bearer token"},
            413: {"description": "over the upload byte or pixel limit"},
            415: {"description": "not a PNG, JPEG, BMP or TIFF"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def segment(
        request: Request,
        output: Annotated[
            OutputFormat, Query(alias="format", description="json | png | overlay")
        ] = OutputFormat.JSON,
        threshold: Annotated[
            float | None, Query(gt=0.0, lt=1.0, description="Default: the model card's.")
        ] = None,
        tile: Annotated[
            str, Query(description="auto | on | off: slide the model over large images.")
        ] = "auto",
        overlap: Annotated[float, Query(ge=0.0, le=0.9, description="Tile overlap.")] = 0.25,
        blend: Annotated[str, Query(description="gaussian | linear tile blending.")] = "gaussian",
        tta: Annotated[bool, Query(description="Average over flipped copies.")] = False,
        min_size: Annotated[
            int, Query(ge=0, description="Drop components under this many pixels.")
        ] = 0,
        fill_holes: Annotated[bool, Query(description="Fill holes inside components.")] = False,
        keep_largest: Annotated[
            int, Query(ge=0, description="Keep the k largest components (0: all).")
        ] = 0,
        smooth: Annotated[
            float, Query(ge=0.0, le=64.0, description="Contour smoothing sigma in pixels.")
        ] = 0.0,
        pixel_spacing_mm: Annotated[
            float | None, Query(gt=0.0, description="Pixel size, for areas in mm^2.")
        ] = None,
        alpha: Annotated[
            float, Query(ge=0.0, le=1.0, description="Overlay opacity (format=overlay).")
        ] = 0.4,
    ) -> Response:
        from kseg.inference import InferenceOptions

        try:
            opts = InferenceOptions(
                threshold=threshold,
                tile=tile,
                overlap=overlap,
                blend=blend,
                tta=tta,
                min_size=min_size,
                fill_holes=fill_holes,
                keep_largest=keep_largest,
                smooth=smooth,
                pixel_spacing_mm=pixel_spacing_mm,
            )
        except (ValueError, TypeError) as e:  # KsegError subclasses go to their own handler
            raise UploadError(f"bad option: {e}") from None
        with engine.admit():  # a full queue answers 503 before the upload is read
            return await _segment_request(request, opts, output, alpha)

    async def _segment_request(request: Request, opts, output, alpha) -> Response:
        t0 = time.perf_counter()
        data, name = await image_bytes(request)
        # the header alone (cheap) refuses non-images and pixel bombs before the worker pool
        fmt, width, height = check_header(data, settings.max_pixels)
        meta = {
            "model": card["name"],
            "image": {"name": name, "format": fmt, "width": width, "height": height},
            "options": opts.to_dict(),
        }
        t1 = time.perf_counter()
        content, timing = await engine.run(
            _segment,
            data,
            card["channels"],
            settings,
            opts,
            output,
            alpha,
            meta,
            t0,
            engine.class_names,
        )
        timing["receive_ms"] = (t1 - t0) * 1e3
        timing["total_ms"] = (time.perf_counter() - t0) * 1e3
        server_timing = ", ".join(f"{k[:-3]};dur={v:.1f}" for k, v in timing.items())
        media = "application/json" if output is OutputFormat.JSON else "image/png"
        return Response(content, media_type=media, headers={"Server-Timing": server_timing})

    return app


def _limits(settings: ServeSettings) -> dict[str, Any]:
    return {
        "max_upload_bytes": settings.max_upload_bytes,
        "max_pixels": settings.max_pixels,
        "token_required": settings.token is not None,
        "workers": settings.workers,
        "max_queue": settings.max_queue,
        "formats": ["png", "jpeg", "bmp", "tiff"],
    }


def _segment(
    predictor: Any,
    data: bytes,
    channels: int,
    settings: ServeSettings,
    opts: Any,
    output: OutputFormat,
    alpha: float,
    meta: dict[str, Any],
    t_request: float,
    class_names: tuple[str, ...],
) -> tuple[bytes, dict[str, float]]:
    """Decode, segment and encode the answer on a worker thread (JSON too: a large GeoJSON
    would otherwise hold the event loop)."""
    from kseg.inference import segment_image
    from kseg.inference.classes import class_legend

    t0 = time.perf_counter()
    image = decode_upload(data, channels=channels, max_pixels=settings.max_pixels)
    t1 = time.perf_counter()
    res = segment_image(predictor, image, opts, class_names=class_names)
    t2 = time.perf_counter()
    timing = {"decode_ms": (t1 - t0) * 1e3, "inference_ms": (t2 - t1) * 1e3}
    if output is OutputFormat.PNG:
        content = res.mask_png()
    elif output is OutputFormat.OVERLAY:
        content = res.overlay_png(alpha)
    else:
        body = {
            **meta,
            "threshold": float(res.threshold),
            "num_classes": res.num_classes,
            "classes": class_legend(res.class_names),
            "stats": res.stats(),
            "geojson": res.geojson(),
            "mask_png_base64": base64.b64encode(res.mask_png()).decode("ascii"),
        }
        t3 = time.perf_counter()
        timing["encode_ms"] = (t3 - t2) * 1e3  # statistics, GeoJSON, mask PNG (library work)
        body["timing_ms"] = {
            **{k: round(v, 2) for k, v in timing.items()},
            "total_ms": round((t3 - t_request) * 1e3, 2),  # up to the JSON text itself
        }
        content = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
        timing["json_ms"] = (time.perf_counter() - t3) * 1e3
        return content, timing
    timing["encode_ms"] = (time.perf_counter() - t2) * 1e3
    return content, timing
