"""Model cost computed from the graph: parameters, multiply-accumulates, and TFLite graph facts.

:func:`count_macs` walks the Keras graph layer by layer and counts the multiply-accumulates of
every layer that does a weighted sum (Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose,
Dense, Dot/batch matmul), from the layers' actual input and output shapes at batch 1.
Element-wise work (normalization, activations, additions, resizing, pooling) is not counted: it
is a few percent of a U-Net and not a multiply-accumulate.

:func:`tflite_report` reads a ``.tflite`` flatbuffer with the ``tflite`` package (no TensorFlow)
and lists its ops, non-builtin ops, float tensors and dynamic-shape ops, which is what "converts
to a fully builtin INT8 model" means here.
"""

from __future__ import annotations

import math
from typing import Any


def count_params(model) -> int:
    """All weights, trainable and not (BatchNorm moving statistics included)."""
    return int(sum(math.prod(w.shape) for w in model.weights))


def count_macs(model) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (see the module docstring)."""
    from kseg._keras import keras

    L = keras.layers
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        in_shape = _shape(layer.input_shape)
        out_shape = _shape(layer.output_shape)
        if isinstance(layer, L.DepthwiseConv2D):  # before Conv2D: it subclasses it
            kh, kw = layer.kernel_size
            total += math.prod(out_shape[1:]) * kh * kw
        elif isinstance(layer, L.SeparableConv2D):
            kh, kw = layer.kernel_size
            depth_out = out_shape[1] * out_shape[2] * in_shape[-1] * layer.depth_multiplier
            total += depth_out * kh * kw + depth_out * out_shape[-1]
        elif isinstance(layer, L.Conv2DTranspose):
            kh, kw = layer.kernel_size
            total += math.prod(in_shape[1:]) * kh * kw * out_shape[-1]
        elif isinstance(layer, L.Conv2D):
            kh, kw = layer.kernel_size
            groups = getattr(layer, "groups", 1) or 1
            total += math.prod(out_shape[1:]) * kh * kw * in_shape[-1] // groups
        elif isinstance(layer, L.Dense):
            total += math.prod(out_shape[1:]) * in_shape[-1]
        elif isinstance(layer, L.Dot):
            a_shape = _shape(layer.input_shape[0])
            axes = layer.axes if isinstance(layer.axes, (list, tuple)) else (layer.axes, layer.axes)
            contracted = a_shape[axes[0] % len(a_shape)]
            total += math.prod(out_shape[1:]) * contracted
    return int(total)


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, list):
        shape = shape[0]
    return tuple(1 if d is None else int(d) for d in shape)


# ---------------------------------------------------------------------------------------------
# TFLite graph facts

#: Ops that appear when a graph still computes shapes at run time (unknown batch dimension).
DYNAMIC_SHAPE_OPS = frozenset({"SHAPE", "PACK", "STRIDED_SLICE", "FILL", "BROADCAST_ARGS"})


def tflite_report(tflite_bytes: bytes) -> dict[str, Any]:
    """Facts about a ``.tflite`` flatbuffer.

    Returns:
        ``{"ops": sorted op names, "custom_ops": non-builtin (Flex/custom) ops,
        "float_ops": ["OP(tensor)" for ops reading/writing a float32 tensor that is not a
        constant], "dynamic_shape_ops": ops from :data:`DYNAMIC_SHAPE_OPS`,
        "input_dtype", "output_dtype", "input_shape", "output_shape"}``
    """
    import tflite

    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
    model = tflite.Model.GetRootAsModel(tflite_bytes, 0)
    graph = model.Subgraphs(0)
    op_names: list[str] = []
    custom: list[str] = []
    float_ops: list[str] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, str(builtin))
        if name == "CUSTOM":
            name = f"CUSTOM:{(code.CustomCode() or b'').decode()}"
            custom.append(name)
        op_names.append(name)
        for idx in list(op.InputsAsNumpy()) + list(op.OutputsAsNumpy()):
            if idx < 0:
                continue
            tensor = graph.Tensors(int(idx))
            is_const = model.Buffers(tensor.Buffer()).DataLength() > 0
            if types.get(tensor.Type()) == "FLOAT32" and not is_const:
                float_ops.append(f"{name}({tensor.Name().decode()})")
                break

    def io(index: int) -> tuple[str, list[int]]:
        tensor = graph.Tensors(int(index))
        return types.get(tensor.Type(), "?").lower(), [int(d) for d in tensor.ShapeAsNumpy()]

    in_dtype, in_shape = io(graph.Inputs(0))
    out_dtype, out_shape = io(graph.Outputs(0))
    return {
        "ops": sorted(set(op_names)),
        "custom_ops": sorted(set(custom)),
        "float_ops": float_ops,
        "dynamic_shape_ops": sorted({n for n in op_names if n in DYNAMIC_SHAPE_OPS}),
        "input_dtype": in_dtype,
        "output_dtype": out_dtype,
        "input_shape": in_shape,
        "output_shape": out_shape,
    }


def int8_problems(report: dict[str, Any]) -> list[str]:
    """Why a converted INT8 graph is not fully builtin integer (empty list: it is)."""
    problems = []
    if report["custom_ops"]:
        problems.append("non-builtin ops: " + ", ".join(report["custom_ops"]))
    if report["float_ops"]:
        shown = ", ".join(report["float_ops"][:3])
        more = f" (+{len(report['float_ops']) - 3} more)" if len(report["float_ops"]) > 3 else ""
        problems.append(f"float ops: {shown}{more}")
    if report["dynamic_shape_ops"]:
        problems.append("dynamic-shape ops: " + ", ".join(report["dynamic_shape_ops"]))
    return problems


# ---------------------------------------------------------------------------------------------
# .tflite size without converting

#: ``(fixed bytes, bytes per op)`` a ``.tflite`` holds beyond its weight buffers: the
#: flatbuffer tables, op and tensor records, tensor names and quantization records of activation
#: tensors. Fitted by least squares on the nine zoo models (filters 4, 32 px; residuals under 1 %
#: of the size); ``tests/models/test_size_estimate.py`` checks the estimate against conversions.
TFLITE_OVERHEAD = {"float32": (1550, 207), "int8": (1455, 280)}

#: bytes per output channel of a weighted int8 layer beyond its int8 kernel: the int32 bias and the
#: per-channel quantization records of kernel and bias (float32 scale + int64 zero point each).
_INT8_PER_CHANNEL = 4 + 2 * (4 + 8)


def _inbound(layer) -> Any:
    nodes = getattr(layer, "_inbound_nodes", [])
    return nodes[0].inbound_layers if nodes else None


def _weighted_parts(model) -> tuple[int, int, int, int]:
    """``(kernel elements, output channels, other weight elements, ops)`` of the graph as the
    converter leaves it: BatchNormalization right after a convolution is folded into it, and a
    ReLU right after either is fused into the convolution; input and dropout layers vanish."""
    from kseg._keras import keras

    L = keras.layers
    convs = (L.Conv2D, L.Conv2DTranspose, L.DepthwiseConv2D, L.SeparableConv2D, L.Dense)
    kernel = channels = other = ops = 0
    fusable: set[int] = set()  # ids of layers a following BN/ReLU folds into
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            k, c, o, n = _weighted_parts(layer)
            kernel, channels, other, ops = kernel + k, channels + c, other + o, ops + n
            continue
        src = _inbound(layer)
        after_conv = not isinstance(src, list) and id(src) in fusable
        if isinstance(layer, L.InputLayer | L.Dropout | L.SpatialDropout2D):
            continue
        if isinstance(layer, convs):
            for w in layer.weights:
                shape = tuple(int(d) for d in w.shape)
                if len(shape) > 1:  # kernels (depthwise + pointwise for separable)
                    kernel += math.prod(shape)
            channels += int(_shape(layer.output_shape)[-1])
            fusable.add(id(layer))
            ops += 1
        elif isinstance(layer, L.BatchNormalization):
            if after_conv:
                fusable.add(id(layer))
            else:  # not folded: a multiply and an add
                other += 2 * int(_shape(layer.output_shape)[-1])
                ops += 2
        elif isinstance(layer, L.ReLU | L.Activation) and after_conv and _is_relu(layer):
            continue
        else:
            other += sum(math.prod(int(d) for d in w.shape) for w in layer.weights)
            ops += 1
    return kernel, channels, other, ops


def _is_relu(layer) -> bool:
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", str(act)) if act is not None else "relu"
    return name == "relu" and not getattr(layer, "max_value", None)


def estimate_tflite_bytes(model) -> dict[str, int]:
    """Estimated ``.tflite`` sizes ``{"float32": bytes, "int8": bytes}`` of a Keras model, from its
    weights and op count, without converting (milliseconds instead of seconds per model).

    float32 stores 4 bytes per weight; int8 stores 1 byte per kernel weight plus
    :data:`_INT8_PER_CHANNEL` per output channel; both add :data:`TFLITE_OVERHEAD`.
    """
    kernel, channels, other, ops = _weighted_parts(model)
    f_base, f_op = TFLITE_OVERHEAD["float32"]
    i_base, i_op = TFLITE_OVERHEAD["int8"]
    return {
        "float32": int(4 * (kernel + channels + other) + f_base + f_op * ops),
        "int8": int(kernel + _INT8_PER_CHANNEL * channels + other + i_base + i_op * ops),
    }
