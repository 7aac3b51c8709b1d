"""Measuring one architecture of the zoo: parameters, MACs, float32 and INT8 ``.tflite`` sizes
and INT8 convertibility.

Here, in the exporter, because measuring converts (:func:`kseg.export.convert.convert_model`);
``kseg models`` (:mod:`kseg.models_cli`) and ``tools/bench_models.py`` both use
:func:`profile_architecture`.

Example:
    >>> row = profile_architecture("unet", size=128, convert=False)   # estimates only, seconds
    >>> row["params"], row["est_int8_bytes"]
"""

from __future__ import annotations

from typing import Any

from kseg.errors import KsegError


def profile_architecture(
    name: str,
    *,
    size: int = 256,
    channels: int = 1,
    options: dict[str, Any] | None = None,
    convert: bool = True,
    calibration: int = 8,
    model=None,
) -> dict[str, Any]:
    """Measure one architecture at ``size x size``.

    Returns ``{"name", "description", "options", "params", "macs", "float32_bytes",
    "int8_bytes", "est_float32_bytes", "est_int8_bytes", "int8_ok", "int8_reason", "ops"}``. A
    conversion failure is reported in ``int8_ok``/``int8_reason`` (never raised); the measured
    sizes are ``None`` when not converted, the ``est_`` sizes come from
    :func:`~kseg.models.complexity.estimate_tflite_bytes` (no conversion). The converter's log
    lines are silenced. ``model`` reuses an already built model of that architecture.

    INT8 calibration uses ``calibration`` synthetic ultrasound images (sizes and op coverage do
    not depend on the calibration data).
    """
    from kseg.models import MODELS, create_model
    from kseg.models.complexity import (
        count_macs,
        count_params,
        estimate_tflite_bytes,
        int8_problems,
        tflite_report,
    )

    if model is None:
        model = create_model(name, input_shape=(size, size, channels), **(options or {}))
    estimate = estimate_tflite_bytes(model)
    row: dict[str, Any] = {
        "name": name,
        "description": MODELS.description(name),
        "options": _resolved_options(model),
        "params": count_params(model),
        "macs": count_macs(model),
        "float32_bytes": None,
        "int8_bytes": None,
        "est_float32_bytes": estimate["float32"],
        "est_int8_bytes": estimate["int8"],
        "int8_ok": None,
        "int8_reason": "not converted",
        "ops": [],
    }
    if not convert:
        return row
    from kseg.export.convert import convert_model, quiet_converter

    try:
        with quiet_converter():
            row["float32_bytes"] = len(convert_model(model, "float32"))
    except KsegError as exc:
        row["int8_ok"], row["int8_reason"] = False, f"float conversion failed: {exc}"
        return row
    try:
        with quiet_converter():
            int8 = convert_model(
                model, "int8", representative=_calibration(size, channels, calibration)
            )
    except KsegError as exc:
        row["int8_ok"], row["int8_reason"] = False, str(exc)
        return row
    report = tflite_report(int8)
    problems = int8_problems(report)
    row.update(
        int8_bytes=len(int8),
        int8_ok=not problems,
        int8_reason="; ".join(problems) if problems else "all builtin int8 ops",
        ops=report["ops"],
    )
    row["_int8_model"] = int8  # for callers that time it; dropped from JSON output
    return row


def _resolved_options(model) -> dict[str, Any]:
    from kseg.models import model_spec

    return model_spec(model)["options"]


def _calibration(size: int, channels: int, n: int):
    import numpy as np

    from kseg.data.synthetic import synthesize

    images = synthesize("ultrasound", n, size=size, seed=0).images.astype(np.float32)
    if images.shape[-1] != channels:
        images = np.repeat(images[..., :1], channels, axis=-1)
    return images


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A :func:`profile_architecture` row without the private (``_``) keys, for JSON."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


__all__ = ["profile_architecture", "public_row"]
