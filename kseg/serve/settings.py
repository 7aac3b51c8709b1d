"""Settings of the segmentation service: where it listens, who may call it, what it accepts."""

from __future__ import annotations

from dataclasses import dataclass

from kseg.errors import ConfigError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServeSettings:
    """How ``kseg serve`` runs; every limit is enforced per request and tested over HTTP.

    Args:
        host: interface to listen on; loopback unless told otherwise (``0.0.0.0`` exposes it).
        port: TCP port.
        workers: inference threads, each with its own interpreter (requests beyond that wait).
        token: when set, every ``/v1/*`` call needs ``Authorization: Bearer <token>``.
        max_upload_bytes: largest request body accepted (413 beyond it).
        max_pixels: largest decoded image, width x height, checked from the header before
            decoding (413 beyond it).
        num_threads: interpreter threads per worker.
        runtime: ``.tflite`` interpreter package (``auto``, ``litert``, ``tflite_runtime``, ``tf``).
        max_queue: segment requests allowed to wait for a busy worker; one more is answered
            ``503`` with ``Retry-After`` at once, instead of queueing until clients time out.

    Example:
        >>> ServeSettings(port=9009, workers=2, token="s3cret", max_pixels=16_000_000)
    """

    host: str = LOOPBACK
    port: int = 9009
    workers: int = 1
    token: str | None = None
    max_upload_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 64 * 1024 * 1024
    num_threads: int = 1
    runtime: str = "auto"
    max_queue: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} must be in 0..65535")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.max_upload_bytes < 1024:
            raise ConfigError(f"max_upload_bytes {self.max_upload_bytes} is under 1 KiB")
        if self.max_queue < 0:
            raise ConfigError(f"max_queue must be >= 0, got {self.max_queue}")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.token is not None and not self.token.strip():
            raise ConfigError("token is empty; give a non-empty token or none")
