"""Standard TFLite Model Metadata: written by tflite-support's writer in its own venv, checked here.

tflite-support 0.4.4 (the maintained metadata writer; MediaPipe's Python ``metadata_writers``
does not import from the ``mediapipe`` wheel) pins ``protobuf`` 3.20, which TensorFlow 2.21
cannot share, so the writer runs as a subprocess in a small venv made by
``tools/setup_deploy_env.sh``. Its interpreter is ``$KSEG_METADATA_PYTHON`` (default
``/tmp/kseg-metadata-venv/bin/python``).

:func:`read_metadata` needs no extra package: the metadata is the model's ``TFLITE_METADATA``
buffer (a flatbuffer with file identifier ``M001``) and the associated files are a zip archive
appended to the model, which :mod:`zipfile` reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from kseg.errors import KsegError

DEFAULT_METADATA_PYTHON = "/tmp/kseg-metadata-venv/bin/python"
METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
_SCRIPT = Path(__file__).with_name("_write_metadata.py")


class MetadataError(KsegError):
    """The metadata writer environment is missing or the writer failed."""


def writer_python() -> Path:
    """The interpreter of the metadata-writer venv, or one clear error saying how to make it."""
    py = Path(os.environ.get("KSEG_METADATA_PYTHON") or DEFAULT_METADATA_PYTHON)
    if not py.is_file():
        raise MetadataError(
            f"metadata writer environment not found ({py}); create it with "
            "`bash tools/setup_deploy_env.sh` or set KSEG_METADATA_PYTHON to a python with tflite-support 0.4.4"
        )
    return py


def write_metadata(
    model_in: Path, model_out: Path, labels: Path, fields: dict[str, str]
) -> dict[str, Any]:
    """Write ``model_in`` + metadata (``fields``: name, version, description, author, licenses,
    input_description, output_description) + ``labels`` to ``model_out``.

    Returns what the standard reader (``MetadataDisplayer``) reads back from the written model.
    """
    py = writer_python()
    with tempfile.TemporaryDirectory(prefix="kseg-metadata-") as tmp:
        spec = {
            **fields,
            "model_in": str(model_in),
            "model_out": str(model_out),
            "labels": str(labels),
            "json_out": str(Path(tmp) / "metadata.json"),
        }
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        proc = subprocess.run(
            [str(py), str(_SCRIPT), str(spec_path)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            raise MetadataError(
                f"metadata writer ({py}) failed: {lines[-1] if lines else f'exit {proc.returncode}'}"
            )
        return json.loads(Path(spec["json_out"]).read_text(encoding="utf-8"))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a consumer finds in ``path`` without tflite-support: whether the standard metadata
    buffer is there (and its size) and the associated files packed with the model (name -> bytes).
    """
    from tflite.Model import Model  # the schema bindings kseg already depends on

    path = Path(path)
    data = path.read_bytes()
    model = Model.GetRootAsModel(data, 0)
    buffer = None
    for i in range(model.MetadataLength()):
        md = model.Metadata(i)
        if md.Name() and md.Name().decode() == METADATA_NAME:
            buf = model.Buffers(md.Buffer())
            buffer = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
            if (
                not buffer and getattr(buf, "Size", lambda: 0)()
            ):  # large models keep buffers after the flatbuffer
                buffer = data[buf.Offset() : buf.Offset() + buf.Size()]
    files: dict[str, bytes] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
    return {
        "has_metadata": buffer is not None and buffer[4:8] == METADATA_IDENTIFIER,
        "metadata_bytes": len(buffer or b""),
        "associated_files": files,
    }


__all__ = ["MetadataError", "read_metadata", "write_metadata", "writer_python"]
