"""Write small ``.tflite`` files without TensorFlow, with the TFLite schema's flatbuffer builder.

Used to make the INT8 convolution that calibrates this machine's peak throughput (so ``kseg
bench`` needs no TensorFlow and ships no binary asset) and hand-built graphs whose partitioning
is known in advance (tests).

Example:
    >>> b = ModelBuilder()
    >>> x = b.add_tensor("x", (1, 8, 8, 4), "int8", scale=1.0, zero_point=0)
    >>> y = b.add_tensor("y", (1, 8, 8, 4), "int8", scale=1.0, zero_point=0)
    >>> b.add_op("RELU", [x], [y])
    >>> data = b.finish([x], [y])
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from kseg.errors import ConfigError

_TYPES = {
    "float32": "FLOAT32",
    "int8": "INT8",
    "uint8": "UINT8",
    "int32": "INT32",
    "int16": "INT16",
    "int64": "INT64",
}


def _mod(name: str) -> Any:
    return importlib.import_module(f"tflite.{name}")


class ModelBuilder:
    """Collects tensors, constant buffers and ops of one subgraph, then serializes a model."""

    def __init__(self) -> None:
        import flatbuffers

        self._b = flatbuffers.Builder(1024)
        self._buffers: list[bytes] = [b""]  # buffer 0 is the empty sentinel by convention
        self._tensors: list[dict[str, Any]] = []
        self._ops: list[tuple[int, list[int], list[int], str | None, dict[str, Any]]] = []
        self._codes: list[tuple[int, int]] = []

    def add_tensor(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: str = "int8",
        *,
        data: np.ndarray | None = None,
        scale: float | list[float] | None = None,
        zero_point: int | list[int] | None = None,
        quantized_dimension: int = 0,
        shape_signature: tuple[int, ...] | None = None,
    ) -> int:
        """Add a tensor (a constant when ``data`` is given); return its index."""
        if dtype not in _TYPES:
            raise ConfigError(
                f"builder dtype {dtype!r} is not supported; valid: {', '.join(_TYPES)}"
            )
        buf = 0
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data, dtype=dtype))
            if tuple(arr.shape) != tuple(shape):
                raise ValueError(f"tensor {name}: data shape {arr.shape} != {shape}")
            self._buffers.append(arr.tobytes())
            buf = len(self._buffers) - 1
        self._tensors.append(
            {
                "name": name,
                "shape": list(shape),
                "type": getattr(_mod("TensorType").TensorType, _TYPES[dtype]),
                "buffer": buf,
                "scale": None if scale is None else list(np.atleast_1d(scale).astype(np.float32)),
                "zero_point": None
                if zero_point is None
                else list(np.atleast_1d(zero_point).astype(np.int64)),
                "qdim": quantized_dimension,
                "signature": None if shape_signature is None else list(shape_signature),
            }
        )
        return len(self._tensors) - 1

    def add_op(
        self,
        op: str,
        inputs: list[int],
        outputs: list[int],
        *,
        options: tuple[str, dict[str, Any]] | None = None,
        version: int = 1,
    ) -> None:
        """Add builtin ``op`` (e.g. ``"CONV_2D"``) with ``options=("Conv2DOptions", {"StrideW": 1})``."""
        code = getattr(_mod("BuiltinOperator").BuiltinOperator, op, None)
        if code is None:
            raise ConfigError(f"unknown TFLite builtin op {op!r}")
        key = (code, version)
        if key not in self._codes:
            self._codes.append(key)
        opt_name, opt_values = options if options else (None, {})
        self._ops.append(
            (self._codes.index(key), list(inputs), list(outputs), opt_name, opt_values)
        )

    # ------------------------------------------------------------------ serialization

    def _ivec(self, values: list[int], dtype: Any = np.int32) -> int:
        return self._b.CreateNumpyVector(np.asarray(values, dtype=dtype))

    def _bytes(self, data: bytes) -> int:
        b = self._b
        b.StartVector(1, len(data), 16)  # 16-byte alignment for constant data
        b.head = b.head - len(data)
        b.Bytes[b.head : b.head + len(data)] = data
        return b.EndVector()

    def _table(self, module: str, prefix: str, fields: dict[str, Any]) -> int:
        m = _mod(module)
        getattr(m, f"{prefix}Start")(self._b)
        for k, v in fields.items():
            getattr(m, f"{prefix}Add{k}")(self._b, v)
        return getattr(m, f"{prefix}End")(self._b)

    def _vector_of_tables(self, offsets: list[int]) -> int:
        self._b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            self._b.PrependUOffsetTRelative(off)
        return self._b.EndVector()

    def finish(
        self, inputs: list[int], outputs: list[int], *, description: str = "kseg builder"
    ) -> bytes:
        """Serialize the model with the ``TFL3`` file identifier."""
        b = self._b
        buffers = []
        for data in self._buffers:
            fields = {"Data": self._bytes(data)} if data else {}
            buffers.append(self._table("Buffer", "Buffer", fields))
        tensors = []
        for t in self._tensors:
            name = b.CreateString(t["name"])
            shape = self._ivec(t["shape"])
            sig = self._ivec(t["signature"]) if t["signature"] is not None else None
            quant = None
            if t["scale"] is not None:
                scale = b.CreateNumpyVector(np.asarray(t["scale"], np.float32))
                zp = b.CreateNumpyVector(
                    np.asarray(t["zero_point"] or [0] * len(t["scale"]), np.int64)
                )
                quant = self._table(
                    "QuantizationParameters",
                    "QuantizationParameters",
                    {"Scale": scale, "ZeroPoint": zp, "QuantizedDimension": t["qdim"]},
                )
            fields = {"Shape": shape, "Type": t["type"], "Buffer": t["buffer"], "Name": name}
            if quant is not None:
                fields["Quantization"] = quant
            if sig is not None:
                fields["ShapeSignature"] = sig
            tensors.append(self._table("Tensor", "Tensor", fields))
        ops = []
        opt_types = _mod("BuiltinOptions").BuiltinOptions
        for code_idx, ins, outs, opt_name, opt_values in self._ops:
            opt = self._table(opt_name, opt_name, opt_values) if opt_name else None
            fields = {
                "OpcodeIndex": code_idx,
                "Inputs": self._ivec(ins),
                "Outputs": self._ivec(outs),
            }
            if opt is not None:
                fields["BuiltinOptionsType"] = getattr(opt_types, opt_name)
                fields["BuiltinOptions"] = opt
            ops.append(self._table("Operator", "Operator", fields))
        codes = [
            self._table(
                "OperatorCode",
                "OperatorCode",
                {"DeprecatedBuiltinCode": min(code, 127), "BuiltinCode": code, "Version": version},
            )
            for code, version in self._codes
        ]
        subgraph = self._table(
            "SubGraph",
            "SubGraph",
            {
                "Tensors": self._vector_of_tables(tensors),
                "Inputs": self._ivec(inputs),
                "Outputs": self._ivec(outputs),
                "Operators": self._vector_of_tables(ops),
                "Name": b.CreateString("main"),
            },
        )
        model = self._table(
            "Model",
            "Model",
            {
                "Version": 3,
                "OperatorCodes": self._vector_of_tables(codes),
                "Subgraphs": self._vector_of_tables([subgraph]),
                "Description": b.CreateString(description),
                "Buffers": self._vector_of_tables(buffers),
            },
        )
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())


def conv_model(
    size: int = 64, channels: int = 64, layers: int = 2, *, dtype: str = "int8", seed: int = 0
) -> bytes:
    """A chain of ``layers`` 3x3 convolutions (fused ReLU) on ``(1, size, size, channels)``.

    ``dtype="int8"``: per-channel symmetric int8 weights and int32 bias, as the TFLite converter
    writes them, so the interpreter runs its optimized INT8 kernels (XNNPACK by default);
    ``"float32"``: the same graph in float, to compare the machine's float and INT8 peaks.
    MACs per run: ``layers * size^2 * channels^2 * 9``.
    """
    if dtype not in ("int8", "float32"):
        raise ConfigError(f"conv_model dtype {dtype!r} is not valid; use int8 or float32")
    rng = np.random.default_rng(seed)
    q = dtype == "int8"
    act = {"scale": 0.05, "zero_point": -3} if q else {}
    b = ModelBuilder()
    x = b.add_tensor("input", (1, size, size, channels), dtype, **act)
    first = x
    for i in range(layers):
        if q:
            w = rng.integers(-127, 128, (channels, 3, 3, channels), dtype=np.int8)
            wq = {"scale": [0.002] * channels, "zero_point": [0] * channels}
            bias = rng.integers(-1000, 1000, (channels,), dtype=np.int32)
            bq = {"scale": [0.05 * 0.002] * channels, "zero_point": [0] * channels}
            bias_dtype = "int32"
        else:
            w = rng.normal(0, 0.05, (channels, 3, 3, channels)).astype(np.float32)
            bias = rng.normal(0, 0.1, (channels,)).astype(np.float32)
            wq, bq, bias_dtype = {}, {}, "float32"
        wt = b.add_tensor(f"w{i}", w.shape, dtype, data=w, **wq)
        bt = b.add_tensor(f"b{i}", bias.shape, bias_dtype, data=bias, **bq)
        y = b.add_tensor(f"conv{i}", (1, size, size, channels), dtype, **act)
        b.add_op(
            "CONV_2D",
            [x, wt, bt],
            [y],
            options=(
                "Conv2DOptions",
                {
                    "Padding": 0,
                    "StrideW": 1,
                    "StrideH": 1,
                    "FusedActivationFunction": 1,
                    "DilationWFactor": 1,
                    "DilationHFactor": 1,
                },
            ),  # fmt: skip
            version=3 if q else 1,
        )
        x = y
    return b.finish([first], [x], description=f"kseg {dtype} calibration conv")


def int8_conv_model(size: int = 64, channels: int = 64, layers: int = 2, seed: int = 0) -> bytes:
    """:func:`conv_model` in INT8: the calibration model of this machine's INT8 peak."""
    return conv_model(size, channels, layers, dtype="int8", seed=seed)
