"""Fixtures for the service tests: a tiny model, sample images, the bad-request corpus and a real
``kseg serve`` process on a free loopback port."""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="kseg serve needs the serve extra: pip install 'kseg[serve]'")
httpx = pytest.importorskip("httpx", reason="the service tests need httpx (kseg[serve])")

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token"
MAX_UPLOAD = 256 * 1024
MAX_PIXELS = 4_000_000

_spec = importlib.util.spec_from_file_location(
    "kseg_tiny_models", REPO / "tests" / "runtime" / "tiny_models.py"
)
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> dict[str, Path]:
    """``{"float", "int8", "int8_dynamic"}`` -> ``.tflite`` (32x32x1; the first two with cards)."""
    return tiny_models.build_all(tmp_path_factory.getbasetemp() / "kseg_tiny_models")


@pytest.fixture(scope="session")
def tiny_multiclass(tmp_path_factory) -> Path:
    """``tiny_3class.tflite``: 32x32x1 -> background, nerve, vessel (names in its card)."""
    return tiny_models.build_multiclass(tmp_path_factory.getbasetemp() / "kseg_tiny_models")


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="session")
def sample_image() -> np.ndarray:
    """A 96x128 synthetic ultrasound frame (grey, uint8): larger than the 32x32 model input."""
    from kseg.data.synthetic import synthesize

    img = synthesize("ultrasound", 1, size=128, seed=3).images[0]
    img = img[..., 0] if img.ndim == 3 else img
    return np.ascontiguousarray(img[16:112]).astype(np.uint8)


@pytest.fixture(scope="session")
def sample_png(sample_image) -> bytes:
    return png_bytes(sample_image)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header declaring ``width x height`` grey pixels with a tiny IDAT (a few rows):
    ~1 KB that would decode into ``width * height`` bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def bad_requests(sample_png: bytes) -> dict[str, tuple[dict, int, str]]:
    """name -> (httpx request kwargs without auth, expected status, a word the error must hold).

    Requests here carry the right token unless the case is about the token."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    return {
        "empty body": ({"content": b"", "headers": auth}, 400, "empty"),
        "truncated png": (
            {"content": sample_png[: len(sample_png) // 2], "headers": auth},
            400,
            "truncated",
        ),
        "text named .png": (
            {
                "files": {"file": ("scan.png", b"just some text\n" * 20, "image/png")},
                "headers": auth,
            },
            415,
            "not a PNG",
        ),
        "30000x30000 png": ({"content": bomb_png(), "headers": auth}, 413, "30000x30000"),
        "over the byte limit": (
            {"content": sample_png + b"\x00" * (MAX_UPLOAD + 32 * 1024), "headers": auth},
            413,
            "limit",
        ),
        "wrong token": (
            {"content": sample_png, "headers": {"Authorization": "Bearer wrong"}},
            401,
            "token",
        ),
        "no token": ({"content": sample_png}, 401, "token"),
        "filename with ../": (
            {"files": {"file": ("../../etc/scan.png", sample_png, "image/png")}, "headers": auth},
            400,
            "plain name",
        ),
        "bad option": (
            {"content": sample_png, "headers": auth, "params": {"tile": "sideways"}},
            400,
            "tile",
        ),
        "threshold out of range": (
            {"content": sample_png, "headers": auth, "params": {"threshold": "1.5"}},
            422,
            "threshold",
        ),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server from :func:`start_server`: terminate, kill after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_server(model: Path, *args: str, log: Path) -> tuple[subprocess.Popen, str]:
    """``kseg serve`` in a subprocess on a free loopback port; returns it and its base URL once
    ``/healthz`` answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [
        sys.executable,
        "-c",
        "from kseg.cli import main; main()",
        "serve",
        "--model",
        str(model),
    ]
    cmd += ["--port", str(port), *args]
    fh = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"kseg serve exited with {proc.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"kseg serve did not answer /healthz within 60 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def served(tiny_tflite, tmp_path_factory):
    """A real ``kseg serve`` process (token, small limits, 2 workers); yields its base URL."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc, url = start_server(
        tiny_tflite["float"],
        "--token",
        TOKEN,
        "--workers",
        "2",
        "--max-upload-mb",
        str(MAX_UPLOAD / 1024 / 1024),
        "--max-megapixels",
        str(MAX_PIXELS / 1e6),
        log=log,
    )
    yield url
    stop_server(proc)


@pytest.fixture(scope="session")
def served_multiclass(tiny_multiclass, tmp_path_factory):
    """``kseg serve`` of the 3-class model (no token); yields its base URL."""
    log = tmp_path_factory.mktemp("serve_mc") / "serve.log"
    proc, url = start_server(tiny_multiclass, log=log)
    yield url
    stop_server(proc)
