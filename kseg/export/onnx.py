"""Keras -> ONNX (tf2onnx) and INT8 ONNX (ONNX Runtime static QDQ quantization), gated and carded
like a ``.tflite``.

The ONNX file keeps the kseg pixel contract and the Keras layout: input ``image`` float32 NHWC
``(N, S, S, C)`` of raw pixels in [0, 255] (normalization is inside the graph), output
probabilities ``(N, S, S, K)``; the batch dimension is left free for server-side batching.
INT8 is post-training static quantization in the QDQ format (int8 weights per output channel,
int8 activations, MinMax ranges), calibrated on the same images a TFLite INT8 export of the same
model with the same ``--data`` uses (:func:`kseg.export.pipeline.prepare_export`).

tf2onnx, onnx and onnxruntime are the optional extra ``kseg[onnx]``; they are imported here, when an
export runs, never at ``import kseg`` time.

Reference: ONNX Runtime, "Quantize ONNX models" (static quantization, QDQ format, per-channel).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from kseg.config import StrEnum
from kseg.errors import ConfigError, ModelError
from kseg.export.card import CARD_FORMAT
from kseg.export.pipeline import (
    ExportData,
    file_card,
    prepare_export,
    source_card,
    write_gated_card,
)
from kseg.runtime.onnx_model import INSTALL_HINT

DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


class OnnxMode(StrEnum):
    """ONNX variants. Each card says which one its file is."""

    FLOAT32 = "float32"  #: the float graph as tf2onnx writes it
    INT8 = "int8"  #: static QDQ quantization: int8 weights (per channel) and int8 activations


ONNX_MODE_DESCRIPTIONS = {
    OnnxMode.FLOAT32: "float32 weights and activations (tf2onnx)",
    OnnxMode.INT8: "ONNX Runtime static QDQ quantization: int8 weights per channel, int8 "
    "activations (MinMax calibration), float32 input and output",
}


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelError(
            f"ONNX export needs {module}, which is not installed; {INSTALL_HINT}"
        ) from None


def convert_onnx(model, *, opset: int = DEFAULT_OPSET) -> bytes:
    """The float ONNX graph of a Keras model (free batch dimension, NHWC kept).

    Raises:
        ModelError: tf2onnx missing, or the conversion failed (one line).
    """
    tf2onnx = _require("tf2onnx")
    from kseg._keras import tf

    shape = (None, *model.input_shape[1:])
    if any(d is None for d in shape[1:]):
        raise ModelError(
            f"model input shape {model.input_shape} has an unknown spatial size; rebuild it with a fixed --img-size"
        )

    @tf.function
    def serve(image):
        return model(image, training=False)

    spec = (tf.TensorSpec(shape, tf.float32, name=INPUT_NAME),)
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    except Exception as exc:  # tf2onnx raises many types with multi-line messages
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(
            f"ONNX conversion (tf2onnx, opset {opset}) failed: {first[:300]}"
        ) from None
    _name_io(proto)
    return proto.SerializeToString()


def _name_io(proto) -> None:
    """Readable IO names: ``image`` (batch dim ``batch``) and ``probabilities``."""
    graph = proto.graph
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if o == old else o for o in node.output]
        node.input[:] = [OUTPUT_NAME if i == old else i for i in node.input]
    graph.output[0].name = OUTPUT_NAME
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"


def quantize_onnx(float_onnx: bytes, calibration: np.ndarray, *, per_channel: bool = True) -> bytes:
    """INT8 QDQ graph of ``float_onnx`` calibrated on ``calibration`` (N, S, S, C) pixels.

    ONNX Runtime's pre-processing (shape inference, graph optimization) runs first, as its
    documentation recommends before static quantization.
    """
    onnx = _require("onnx")
    _require("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if calibration is None or len(calibration) == 0:
        raise ModelError(
            "int8 ONNX conversion needs calibration images; give --data or train in a run directory"
        )

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(np.asarray(calibration, np.float32)[:, None])

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

    with tempfile.TemporaryDirectory(prefix="kseg-onnx-") as d:
        src, pre, dst = Path(d) / "float.onnx", Path(d) / "pre.onnx", Path(d) / "int8.onnx"
        src.write_bytes(float_onnx)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimization; quantize the plain graph instead
            pre = src
        try:
            quantize_static(
                str(pre),
                str(dst),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"ONNX INT8 quantization failed: {first[:300]}") from None
        model = onnx.load(str(dst))
    return model.SerializeToString()


def onnx_graph_facts(data: bytes) -> dict[str, Any]:
    """Opset, op histogram, and the compute ops left in float (not fed by DequantizeLinear)."""
    onnx = _require("onnx")
    model = onnx.load_from_string(data)
    graph = model.graph
    ops = Counter(n.op_type for n in graph.node)
    produced_by = {o: n.op_type for n in graph.node for o in n.output}
    compute = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
    float_compute = [
        f"{i}:{n.op_type}"
        for i, n in enumerate(graph.node)
        if n.op_type in compute and produced_by.get(n.input[0]) != "DequantizeLinear"
    ]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "opset": opset,
        "ops": sorted(ops),
        "op_counts": dict(sorted(ops.items())),
        "quantize_nodes": ops.get("QuantizeLinear", 0),
        "float_ops": float_compute if ops.get("QuantizeLinear") else [],
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }


def default_onnx_out(model_path: Path, mode: OnnxMode) -> Path:
    return model_path.with_name(f"{model_path.stem}.{mode}.onnx")


def export_onnx(
    model_path: str | Path,
    mode: OnnxMode | str = OnnxMode.FLOAT32,
    *,
    out: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    per_channel: bool = True,
    model=None,
    **data_args: Unpack[ExportData],
) -> dict[str, Any]:
    """Convert ``model_path`` to ONNX (float or INT8 QDQ), gate it on Dice, write its card.

    Arguments mean what they mean for :func:`kseg.export.export_tflite`; data, gate and calibration
    images are chosen by the same code. The card (``FILE.json``/``FILE.md``) has an ``onnx``
    section with ``"format": "onnx"`` instead of ``tflite``.

    Raises:
        ParityError: the Dice drop exceeds the gate (file and card are kept, card says failed).
        ModelError: tf2onnx / onnxruntime missing (one line with the install command).
    """
    from kseg.models import load_model, model_spec

    model_path = Path(model_path)
    try:
        mode = OnnxMode(mode)
    except ValueError:
        raise ConfigError(
            f"--onnx supports {', '.join(m.value for m in OnnxMode)} (give --int8 or nothing), not {mode}"
        ) from None
    if out is not None and Path(out).suffix != ".onnx":
        raise ConfigError(f"--out {out}: use a file name ending in .onnx")
    for module in ("tf2onnx", "onnx", "onnxruntime"):  # fail before loading data
        _require(module)
    if model is None:
        model = load_model(model_path)
    prep = prepare_export(model_path, model, **data_args)
    cfg = prep.config
    out = Path(out) if out else default_onnx_out(model_path, mode)

    data_bytes = convert_onnx(model, opset=opset)
    if mode is OnnxMode.INT8:
        data_bytes = quantize_onnx(data_bytes, prep.calibration, per_channel=per_channel)
    candidate, checked = prep.write_and_check(model, out, data_bytes, kind="onnx")

    spec = model_spec(model)
    desc = candidate.describe()
    card = {
        "format": CARD_FORMAT,
        "onnx": {
            "format": "onnx",
            **file_card(out, data_bytes),
            "mode": str(mode),
            "description": ONNX_MODE_DESCRIPTIONS[mode],
            "quantization": (
                {
                    "format": "QDQ",
                    "per_channel": per_channel,
                    "weights": "int8",
                    "activations": "int8",
                    "calibration": "MinMax",
                }
                if mode is OnnxMode.INT8
                else None
            ),
            "runtime": f"onnxruntime {candidate.backend_version}",
            **onnx_graph_facts(data_bytes),
        },
        "source": source_card(model_path, model, spec),
        "input": {
            "name": INPUT_NAME,
            "shape": desc["input_shape"],
            "dynamic_batch": desc["dynamic_batch"],
            "layout": "NHWC",
            "dtype": "float32",
            "scale": None,
            "zero_point": None,
            **prep.pixel_contract(spec),
            "channels": desc["input_shape"][-1],
            "preprocess": prep.chain.to_list(),
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": desc["output_shape"],
            "dtype": "float32",
            "scale": None,
            "zero_point": None,
            "activation": "sigmoid" if desc["output_shape"][-1] == 1 else "softmax",
            "threshold": cfg.train.threshold,
            **prep.output_classes(desc["output_shape"][-1]),
        },
        "data": prep.data_card(),
        "calibration": prep.calibration_card() if mode is OnnxMode.INT8 else None,
        "steps": [{"step": "convert", "format": "onnx", "mode": str(mode), "opset": opset}],
    }
    return write_gated_card(
        card,
        out,
        checked.summary,
        kind="onnx",
        max_dice_drop=prep.max_dice_drop,
        hint="try more calibration images or QAT",
    )


__all__ = [
    "DEFAULT_OPSET",
    "ONNX_MODE_DESCRIPTIONS",
    "OnnxMode",
    "convert_onnx",
    "export_onnx",
    "onnx_graph_facts",
    "quantize_onnx",
]
