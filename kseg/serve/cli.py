"""The ``kseg serve`` command (FastAPI and uvicorn are imported only when it runs)."""

from __future__ import annotations

import click

from kseg._cli import model_option, runtime_option
from kseg.errors import KsegError
from kseg.runtime.backends import Runtime


def _require_extra() -> None:
    import importlib.util

    missing = [
        m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise KsegError(
            f"kseg serve needs {', '.join(missing)}; install them with: pip install 'kseg[serve]'"
        )


@click.command("serve")
@model_option(".tflite, .keras or .h5 model (its card beside it gives the threshold).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface; 0.0.0.0 exposes the service to the network.",
)
@click.option("--port", default=9009, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=int,
    help="Inference threads, each with its own interpreter.",
)
@click.option(
    "--token",
    envvar="KSEG_SERVE_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' on /v1/* (or set KSEG_SERVE_TOKEN).",
)
@click.option(
    "--max-upload-mb",
    default=32.0,
    show_default=True,
    type=float,
    help="Largest request body accepted.",
)
@click.option(
    "--max-megapixels",
    default=64.0,
    show_default=True,
    type=float,
    help="Largest image (width x height), checked from its header before decoding.",
)
@click.option("--threads", default=1, show_default=True, type=int, help="Threads per interpreter.")
@click.option(
    "--max-queue",
    default=16,
    show_default=True,
    type=int,
    help="Requests that may wait for a busy worker; beyond that, 503 with Retry-After.",
)
@runtime_option("Interpreter package for .tflite.", choices=Runtime.values())
def serve(
    model_path,
    host,
    port,
    workers,
    token,
    max_upload_mb,
    max_megapixels,
    threads,
    max_queue,
    runtime,
) -> None:
    """HTTP segmentation service with a web page at / and OpenAPI docs at /docs."""
    _require_extra()
    import uvicorn

    from kseg.serve.app import create_app
    from kseg.serve.settings import ServeSettings

    settings = ServeSettings(
        host=host,
        port=port,
        workers=workers,
        token=token,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_pixels=int(max_megapixels * 1_000_000),
        num_threads=threads,
        runtime=runtime,
        max_queue=max_queue,
    )
    app = create_app(model_path, settings)
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        click.echo(
            f"warning: listening on {host} without --token: anyone who can reach the port can use it",
            err=True,
        )
    click.echo(f"kseg serve: {model_path} on http://{host}:{port}/ ({workers} worker(s))")
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
