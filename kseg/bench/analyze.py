"""Static analysis of a ``.tflite`` flatbuffer: ops, tensors, quantization, MACs, bytes, memory.

Reads the file with the generated Python bindings of the TFLite schema (the ``tflite`` package),
never with an interpreter, so the result describes the file as a delegate or an NPU compiler sees
it: op codes in execution order, tensor types and (signature) shapes, per-tensor quantization and
builtin options such as strides, dilation and resize modes.

Example:
    >>> info = analyze_model("unet_int8.tflite")
    >>> info.total_macs, [op.name for op in info.float_ops]
"""

from __future__ import annotations

import importlib
import os
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from kseg.errors import ModelError

_ITEMSIZE = {
    "FLOAT32": 4, "FLOAT16": 2, "FLOAT64": 8, "BFLOAT16": 2, "INT32": 4, "UINT32": 4, "INT64": 8,
    "UINT64": 8, "INT16": 2, "UINT16": 2, "INT8": 1, "UINT8": 1, "BOOL": 1, "INT4": 0.5,
    "COMPLEX64": 8, "COMPLEX128": 16, "STRING": 0, "RESOURCE": 0, "VARIANT": 0,
}  # fmt: skip
FLOAT_TYPES = frozenset({"float32", "float16", "float64", "bfloat16"})
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED")
#: Ops that convert at the model boundary of an INT8 model with float input/output.
BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
#: Ops that exist only to compute shapes at run time (a sign of an unknown batch or size).
SHAPE_OPS = frozenset(
    {"SHAPE", "PACK", "STRIDED_SLICE", "GATHER", "CONCATENATION", "RESHAPE", "FILL"}
)


def _tfl(module: str) -> Any:
    try:
        return importlib.import_module(f"tflite.{module}")
    except ImportError:
        raise ModelError(
            "static analysis needs the 'tflite' package (TFLite schema bindings); pip install tflite"
        ) from None


@cache
def builtin_names() -> dict[int, str]:
    """``BuiltinOperator`` code -> name (``3 -> "CONV_2D"``)."""
    cls = _tfl("BuiltinOperator").BuiltinOperator
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def valid_op_names() -> list[str]:
    """Every builtin op name of the TFLite schema, sorted."""
    return sorted(builtin_names().values())


@cache
def _enum_names(module: str) -> dict[int, str]:
    cls = getattr(_tfl(module), module)
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: type, static shape, signature shape (-1 = unknown), quantization, constness."""

    index: int
    name: str
    dtype: str  # numpy-style: "int8", "float32", ...
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    constant: bool = False

    @property
    def quantized(self) -> bool:
        return len(self.scale) > 0 and any(s != 0 for s in self.scale)

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_TYPES

    @property
    def nbytes(self) -> int:
        size = _ITEMSIZE.get(self.dtype.upper(), 4)
        return int(np.prod(self.shape, dtype=np.int64) * size) if self.shape else int(size)

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.dynamic:
            d["shape_signature"] = list(self.shape_signature)
        if self.quantized:
            if len(self.scale) == 1:
                d["scale"], d["zero_point"] = (
                    self.scale[0],
                    self.zero_point[0] if self.zero_point else 0,
                )
            else:
                d["per_channel"] = len(self.scale)
        if self.constant:
            d["constant"] = True
        return d


@dataclass(frozen=True)
class OpInfo:
    """One operator in execution order with its tensors, options and cost."""

    index: int
    name: str
    version: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    options: dict[str, Any] = field(default_factory=dict)
    macs: int = 0

    @property
    def activations(self) -> tuple[TensorInfo, ...]:
        """Non-constant inputs and all outputs (the tensors that flow at run time)."""
        return tuple(t for t in self.inputs if not t.constant) + self.outputs

    @property
    def is_float(self) -> bool:
        """Computes in floating point: a float non-constant input or a float output."""
        return any(t.is_float for t in self.activations)

    @property
    def is_dynamic(self) -> bool:
        """Has a tensor with an unknown dimension, or only computes shapes at run time."""
        return any(t.dynamic for t in self.activations) or self.name == "SHAPE"

    @property
    def bytes_moved(self) -> int:
        """Bytes read (inputs incl. weights) plus bytes written (outputs)."""
        return sum(t.nbytes for t in self.inputs) + sum(t.nbytes for t in self.outputs)

    @property
    def ops(self) -> int:
        """Arithmetic operations: 2 per MAC, else one per output element."""
        if self.macs:
            return 2 * self.macs
        return sum(int(np.prod(t.shape, dtype=np.int64)) for t in self.outputs)

    @property
    def kernel(self) -> tuple[int, int] | None:
        """``(kh, kw)`` of a convolution or pooling op."""
        if "filter" in self.options:
            return tuple(self.options["filter"])
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "op": self.name,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "options": self.options,
            "macs": self.macs,
            "bytes_moved": self.bytes_moved,
        }


@dataclass(frozen=True)
class ModelInfo:
    """The main subgraph of a ``.tflite`` file, statically analysed."""

    path: str
    size_bytes: int
    ops: tuple[OpInfo, ...]
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    num_subgraphs: int = 1

    @property
    def total_macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def float_ops(self) -> list[OpInfo]:
        """Ops computing in float, except QUANTIZE/DEQUANTIZE at a float model boundary."""
        return [op for op in self.ops if op.is_float and op.name not in BOUNDARY_OPS]

    @property
    def boundary_ops(self) -> list[OpInfo]:
        return [op for op in self.ops if op.name in BOUNDARY_OPS]

    @property
    def dynamic_ops(self) -> list[OpInfo]:
        return [op for op in self.ops if op.is_dynamic]

    @property
    def int8_intended(self) -> bool:
        """Most MAC ops have 8-bit weights: the model was meant to run in INT8."""
        heavy = [op for op in self.ops if op.name in MAC_OPS]
        if not heavy:
            heavy = list(self.ops)
        q = sum(1 for op in heavy if any(t.dtype in ("int8", "uint8") for t in op.inputs))
        return q * 2 > len(heavy)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.name] = counts.get(op.name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def activation_memory(self) -> tuple[int, int]:
        """``(peak bytes, op index)`` of live activation tensors, without buffer sharing.

        A tensor is live from the op that writes it (graph inputs: from the start) to the last op
        that reads it (graph outputs: to the end). An arena planner can share memory between
        tensors whose lives do not overlap, so this is the live set, the figure to hold in SRAM.
        """
        n = len(self.ops)
        first: dict[int, int] = {t.index: 0 for t in self.inputs}
        last: dict[int, int] = {t.index: n - 1 for t in self.outputs}
        size: dict[int, int] = {t.index: t.nbytes for t in self.inputs + self.outputs}
        for op in self.ops:
            for t in op.outputs:
                first.setdefault(t.index, op.index)
                size[t.index] = t.nbytes
            for t in op.inputs:
                if not t.constant:
                    last[t.index] = max(last.get(t.index, op.index), op.index)
                    size[t.index] = t.nbytes
        peak, at = 0, 0
        for i in range(max(n, 1)):
            live = sum(
                size[t] for t in size if first.get(t, 0) <= i <= last.get(t, first.get(t, 0))
            )
            if live > peak:
                peak, at = live, i
        return peak, at

    @property
    def custom_ops(self) -> list[OpInfo]:
        return [op for op in self.ops if op.name.startswith("CUSTOM")]

    def to_dict(self) -> dict[str, Any]:
        """:meth:`summary` plus every op (JSON-ready)."""
        return {
            **self.summary(),
            "ops": [op.to_dict() for op in self.ops],
            "custom_ops": [f"{op.index}:{op.name}" for op in self.custom_ops],
        }

    def summary(self) -> dict[str, Any]:
        peak, at = self.activation_memory()
        return {
            "path": self.path,
            "size_bytes": self.size_bytes,
            "num_ops": len(self.ops),
            "num_subgraphs": self.num_subgraphs,
            "op_counts": self.op_counts(),
            "macs": self.total_macs,
            "weights_bytes": sum(t.nbytes for t in self.tensors if t.constant),
            "peak_activation_bytes": peak,
            "peak_activation_op": at,
            "input": [t.to_dict() for t in self.inputs],
            "output": [t.to_dict() for t in self.outputs],
            "int8_intended": self.int8_intended,
            "float_ops": [f"{op.index}:{op.name}" for op in self.float_ops],
            "boundary_ops": [f"{op.index}:{op.name}" for op in self.boundary_ops],
            "dynamic_ops": [f"{op.index}:{op.name}" for op in self.dynamic_ops],
        }


def _np(vec: Any) -> np.ndarray:
    # generated AsNumpy() returns 0 for an absent vector
    return vec if isinstance(vec, np.ndarray) else np.zeros(0, dtype=np.int64)


def _options(op: Any, name: str, tensors: list[TensorInfo], inputs: list[int]) -> dict[str, Any]:
    """Builtin options that device profiles constrain, plus the kernel size from the filter."""
    opts: dict[str, Any] = {}
    table = op.BuiltinOptions()
    opt_type = _enum_names("BuiltinOptions").get(op.BuiltinOptionsType(), "NONE")
    act = _enum_names("ActivationFunctionType")
    padding = _enum_names("Padding")
    if table is not None and opt_type != "NONE":
        try:
            cls = getattr(_tfl(opt_type), opt_type)
        except (ModelError, AttributeError):
            cls = None
        if cls is not None:
            o = cls()
            o.Init(table.Bytes, table.Pos)
            for attr, key in (
                ("StrideH", "stride_h"), ("StrideW", "stride_w"),
                ("DilationHFactor", "dilation_h"), ("DilationWFactor", "dilation_w"),
                ("FilterHeight", "filter_h"), ("FilterWidth", "filter_w"),
                ("DepthMultiplier", "depth_multiplier"),
                ("AlignCorners", "align_corners"), ("HalfPixelCenters", "half_pixel_centers"),
                ("KeepNumDims", "keep_num_dims"),
            ):  # fmt: skip
                if hasattr(o, attr):
                    opts[key] = getattr(o, attr)()
            if hasattr(o, "Padding"):
                opts["padding"] = padding.get(o.Padding(), str(o.Padding()))
            if hasattr(o, "FusedActivationFunction"):
                opts["activation"] = act.get(o.FusedActivationFunction(), "NONE")
    if "filter_h" in opts:
        opts["filter"] = [int(opts.pop("filter_h")), int(opts.pop("filter_w"))]
    weight_pos = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "TRANSPOSE_CONV": 1}.get(name)
    if weight_pos is not None and len(inputs) > weight_pos and inputs[weight_pos] >= 0:
        w = tensors[inputs[weight_pos]]
        if len(w.shape) == 4:
            opts["filter"] = [int(w.shape[1]), int(w.shape[2])]
    if "stride_h" in opts:
        opts["stride"] = [int(opts.pop("stride_h")), int(opts.pop("stride_w"))]
    if "dilation_h" in opts:
        opts["dilation"] = [int(opts.pop("dilation_h")), int(opts.pop("dilation_w"))]
    for k in ("align_corners", "half_pixel_centers", "keep_num_dims"):
        if k in opts:
            opts[k] = bool(opts[k])
    return opts


def _macs(name: str, ins: list[TensorInfo | None], outs: list[TensorInfo]) -> int:
    prod = lambda s: int(np.prod(s, dtype=np.int64))  # noqa: E731
    if not outs:
        return 0
    out = outs[0].shape
    if name == "CONV_2D" and ins[1] is not None and len(ins[1].shape) == 4:
        _, kh, kw, cin = ins[1].shape
        return prod(out) * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D" and ins[1] is not None and len(ins[1].shape) == 4:
        _, kh, kw, _ = ins[1].shape
        return prod(out) * kh * kw
    if name == "TRANSPOSE_CONV" and len(ins) > 2 and ins[1] is not None and ins[2] is not None:
        cout, kh, kw, _ = ins[1].shape
        return prod(ins[2].shape) * kh * kw * cout
    if name == "FULLY_CONNECTED" and ins[1] is not None and len(ins[1].shape) == 2:
        return prod(out) * ins[1].shape[1]
    return 0


def analyze_model(path: str | os.PathLike[str], data: bytes | None = None) -> ModelInfo:
    """Parse ``path`` (or ``data``) and return its main subgraph as a :class:`ModelInfo`.

    Raises:
        ModelError: not a TFLite file, or truncated/corrupt (one line naming the file).
    """
    p = Path(path)
    if data is None:
        from kseg.runtime.model import check_tflite_file

        check_tflite_file(p)
        data = p.read_bytes()
    elif data[4:8] != b"TFL3":
        raise ModelError(f"{p}: not a TFLite model (missing TFL3 identifier)")
    try:
        return _parse(p, data)
    except (IndexError, struct.error, ValueError, TypeError) as e:
        raise ModelError(
            f"{p}: truncated or corrupt TFLite model ({type(e).__name__}); export it again"
        ) from None


def _parse(p: Path, data: bytes) -> ModelInfo:
    model = _tfl("Model").Model.GetRootAs(bytearray(data), 0)
    if model.SubgraphsLength() < 1:
        raise ValueError("no subgraph")
    names = builtin_names()
    types = _enum_names("TensorType")
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        name = names.get(code, f"UNKNOWN_{code}")
        if name == "CUSTOM":
            custom = oc.CustomCode()
            name = f"CUSTOM:{custom.decode() if custom else '?'}"
        codes.append((name, int(oc.Version())))
    size = len(data)
    const_buffers = set()
    for b in range(model.BuffersLength()):
        buf = model.Buffers(b)
        n = buf.DataLength()
        if n > 0 or buf.Size() > 0:
            if buf.Offset() and buf.Offset() + buf.Size() > size:
                raise ValueError("buffer past end of file")
            const_buffers.add(b)
    sg = model.Subgraphs(0)
    tensors: list[TensorInfo] = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        shape = tuple(int(d) for d in _np(t.ShapeAsNumpy()))
        sig = tuple(int(d) for d in _np(t.ShapeSignatureAsNumpy())) or shape
        q = t.Quantization()
        scale: tuple[float, ...] = ()
        zp: tuple[int, ...] = ()
        if q is not None:
            scale = tuple(float(s) for s in _np(q.ScaleAsNumpy()))
            zp = tuple(int(z) for z in _np(q.ZeroPointAsNumpy()))
        raw_name = t.Name()
        tensors.append(
            TensorInfo(
                index=i,
                name=raw_name.decode("utf-8", "replace") if raw_name else f"t{i}",
                dtype=types.get(t.Type(), "UNKNOWN").lower(),
                shape=shape,
                shape_signature=sig,
                scale=scale,
                zero_point=zp,
                constant=t.Buffer() in const_buffers,
            )
        )
    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        name, version = codes[op.OpcodeIndex()]
        in_idx = [int(x) for x in _np(op.InputsAsNumpy())]
        out_idx = [int(x) for x in _np(op.OutputsAsNumpy())]
        ins_opt = [tensors[j] if j >= 0 else None for j in in_idx]
        outs = [tensors[j] for j in out_idx]
        ops.append(
            OpInfo(
                index=i,
                name=name,
                version=version,
                inputs=tuple(t for t in ins_opt if t is not None),
                outputs=tuple(outs),
                options=_options(op, name, tensors, in_idx),
                macs=_macs(name, ins_opt, outs),
            )
        )
    graph_in = tuple(tensors[int(j)] for j in _np(sg.InputsAsNumpy()))
    graph_out = tuple(tensors[int(j)] for j in _np(sg.OutputsAsNumpy()))
    return ModelInfo(
        path=str(p),
        size_bytes=size,
        ops=tuple(ops),
        tensors=tuple(tensors),
        inputs=graph_in,
        outputs=graph_out,
        num_subgraphs=int(model.SubgraphsLength()),
    )
