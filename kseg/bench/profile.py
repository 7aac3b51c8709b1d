"""Per-op latency attribution of a ``.tflite`` file, without TensorFlow.

The LiteRT Python package does not expose its op profiler (``ai_edge_litert.Interpreter`` has no
profiling API; ``experimental_op_resolver_type`` only picks kernels), so each operator is cut out
of the model into a **one-op model of the same shapes**: the same operator code, builtin options,
quantization and constant buffers (weights), with its non-constant inputs as the model inputs.
Each one-op model is timed with the same interpreter, threads and delegate as the whole model.

The per-op times add up to more than the whole model (each one-op model pays one invoke's
overhead and XNNPACK cannot fuse across ops), so the report gives both the raw milliseconds and
the **share** of the summed time, and the sum against the measured whole model (``coverage``).
Ranking op *types* by share is what the profile is for: it names the kernels worth replacing
(e.g. an INT8 ``TRANSPOSE_CONV`` against ``RESIZE_NEAREST_NEIGHBOR`` + ``CONV_2D``).

Example:
    >>> prof = profile_ops("model_int8.tflite", threads=1)
    >>> prof["by_type"][0]["op"], prof["by_type"][0]["share"]
    ('TRANSPOSE_CONV', 0.41)
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from kseg.errors import ConfigError, ModelError

#: Tensor types of the schema (``TensorType``) -> numpy dtypes for random inputs.
_NP = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    6: np.bool_,
    7: np.int16,
    9: np.int8,
}


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise ModelError(
            "--profile needs the TFLite schema object API from ai-edge-litert; "
            "pip install ai-edge-litert"
        ) from None
    return schema


def _op_names(schema: Any) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


class _Cut:
    """Copies the tensors one operator touches into a new model, constants with their buffers."""

    def __init__(self, model: Any, graph: Any, sub: Any) -> None:
        self.model, self.graph, self.sub = model, graph, sub
        self.tensors: list[Any] = []
        self.inputs: list[int] = []
        self._remap: dict[int, int] = {}

    def take(self, t_index: int, *, is_input: bool) -> int:
        if t_index < 0:  # an omitted optional input
            return t_index
        if t_index in self._remap:
            return self._remap[t_index]
        t = copy.copy(self.graph.tensors[t_index])
        buffers = self.model.buffers
        src = buffers[t.buffer] if t.buffer < len(buffers) else None
        constant = src is not None and src.data is not None and len(src.data) > 0
        if constant:
            self.sub.buffers.append(src)
            t.buffer = len(self.sub.buffers) - 1
        else:
            t.buffer = 0
        self.tensors.append(t)
        self._remap[t_index] = len(self.tensors) - 1
        if is_input and not constant:
            self.inputs.append(self._remap[t_index])
        return self._remap[t_index]


def split_ops(data: bytes) -> list[dict[str, Any]]:
    """One single-operator ``.tflite`` (bytes) per operator of subgraph 0, in execution order.

    Each entry: ``{"index", "op", "model", "inputs": [(shape, dtype)], "output_shape"}``.
    Models with control flow (``WHILE``, ``IF``, ``CALL_ONCE``: ops that run other subgraphs)
    cannot be cut this way and raise :class:`ModelError`.
    """
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if not model.subgraphs:
        raise ModelError("the model has no subgraph to profile")
    names = _op_names(schema)
    graph = model.subgraphs[0]
    out = []
    for index, op in enumerate(graph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
        name = names.get(builtin, f"OP_{builtin}")
        if name in ("WHILE", "IF", "CALL_ONCE", "CUSTOM", "STABLEHLO_COMPOSITE"):
            raise ModelError(
                f"op {index} is {name}, which runs other subgraphs or custom code; "
                "--profile supports single-subgraph builtin models"
            )
        sub = schema.ModelT()
        sub.version = model.version
        sub.operatorCodes = [code]
        sub.description = f"kseg profile: op {index} {name}"
        sub.buffers = [schema.BufferT()]
        cut = _Cut(model, graph, sub)
        new_op = copy.copy(op)
        new_op.opcodeIndex = 0
        new_op.inputs = [cut.take(int(i), is_input=True) for i in op.inputs]
        new_op.outputs = [cut.take(int(i), is_input=False) for i in op.outputs]
        if op.intermediates is not None and len(op.intermediates):
            new_op.intermediates = [cut.take(int(i), is_input=False) for i in op.intermediates]
        tensors, inputs = cut.tensors, cut.inputs
        g = schema.SubGraphT()
        g.tensors = tensors
        g.inputs = inputs
        g.outputs = list(new_op.outputs)
        g.operators = [new_op]
        g.name = "main"
        sub.subgraphs = [g]
        b = flatbuffers.Builder(1024)
        b.Finish(sub.Pack(b), file_identifier=b"TFL3")
        out.append(
            {
                "index": index,
                "op": name,
                "model": bytes(b.Output()),
                "inputs": [
                    (tuple(int(s) for s in tensors[i].shape), tensors[i].type) for i in inputs
                ],
                "output_shape": [int(s) for s in tensors[new_op.outputs[0]].shape]
                if new_op.outputs
                else [],
            }
        )
    return out


def make_interpreter(
    data: bytes, *, threads: int | None, runtime: str, delegate: str | None
) -> Any:
    """An allocated interpreter with random inputs set once."""
    from kseg.runtime.backends import interpreter_kwargs, load_backend

    backend = load_backend(runtime)
    interp = backend.interpreter_cls(
        model_content=data, num_threads=threads, **interpreter_kwargs(backend, delegate)
    )
    interp.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        dtype = np.dtype(d["dtype"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            x = rng.integers(max(info.min, -128), min(info.max, 127) + 1, d["shape"]).astype(dtype)
        elif dtype == np.bool_:
            x = rng.random(d["shape"]) > 0.5
        else:
            x = rng.normal(0, 1, d["shape"]).astype(dtype)
        interp.set_tensor(d["index"], x)
    return interp


def interleaved_ms(
    interps: list[Any], *, runs: int, warmup: int, cpu_time: bool = False
) -> list[float]:
    """Fastest ``invoke()`` of each interpreter over ``runs`` interleaved rounds.

    Round-robin (whole model, op 0, op 1, ..., whole model, ...) so a change in machine load
    hits every model alike; the minimum is the least-disturbed run of each (on a shared machine
    the median carries other processes' time). ``cpu_time``: measure this thread's CPU time
    instead of wall time (exact for one interpreter thread, which runs in the calling thread:
    time the scheduler gave to other processes is not counted).
    """
    for interp in interps:
        for _ in range(warmup):
            interp.invoke()
    best = [float("inf")] * len(interps)
    clock = time.thread_time if cpu_time else time.perf_counter
    for _ in range(runs):
        for i, interp in enumerate(interps):
            t0 = clock()
            interp.invoke()
            best[i] = min(best[i], 1e3 * (clock() - t0))
    return best


def profile_ops(
    path: str | os.PathLike[str],
    *,
    threads: int | None = 1,
    runs: int = 20,
    warmup: int = 3,
    runtime: str = "auto",
    delegate: str | None = None,
    top: int = 5,
) -> dict[str, Any]:
    """Time every operator of ``path`` as a one-op model; aggregate by op type.

    Returns:
        ``{"file", "method", "threads", "whole_model_ms", "sum_ops_ms", "coverage",
        "ops": [{"index", "op", "output_shape", "ms", "share"}...] (slowest first),
        "by_type": [{"op", "count", "ms", "share"}...] (slowest first), "slowest_types": [...]}``
    """
    if runs < 1 or warmup < 0:
        raise ConfigError(f"profile runs must be >= 1 and warmup >= 0, got {runs} and {warmup}")
    p = Path(path)
    data = p.read_bytes()
    kw = {"threads": threads, "runtime": runtime, "delegate": delegate}
    items = split_ops(data)
    interps, timed, ops = [make_interpreter(data, **kw)], [], []
    for item in items:
        try:
            interps.append(make_interpreter(item["model"], **kw))
            timed.append(item)
        except (RuntimeError, ValueError) as exc:  # a kernel that refuses to run alone
            ops.append(
                {"index": item["index"], "op": item["op"], "ms": None, "error": str(exc)[:200]}
            )
    cpu_time = threads == 1
    times = interleaved_ms(interps, runs=runs, warmup=warmup, cpu_time=cpu_time)
    whole = times[0]
    for item, ms in zip(timed, times[1:], strict=True):
        ops.append(
            {
                "index": item["index"],
                "op": item["op"],
                "output_shape": item["output_shape"],
                "ms": ms,
            }
        )
    total = sum(o["ms"] for o in ops if o.get("ms") is not None)
    by_type: dict[str, dict[str, Any]] = {}
    for o in ops:
        if o.get("ms") is None:
            continue
        o["share"] = o["ms"] / total if total else 0.0
        t = by_type.setdefault(o["op"], {"op": o["op"], "count": 0, "ms": 0.0})
        t["count"] += 1
        t["ms"] += o["ms"]
    types = sorted(by_type.values(), key=lambda t: -t["ms"])
    for t in types:
        t["share"] = t["ms"] / total if total else 0.0
    ranked = sorted(ops, key=lambda o: -(o.get("ms") or 0.0))
    return {
        "file": str(p),
        "method": "one-op models cut from the flatbuffer, timed in interleaved rounds (fastest)",
        "clock": "thread CPU time" if cpu_time else "wall time",
        "threads": threads,
        "runs": runs,
        "whole_model_ms": whole,
        "sum_ops_ms": total,
        "coverage": total / whole if whole else None,
        "ops": ranked,
        "by_type": types,
        "slowest_types": [t["op"] for t in types[:top]],
        "failed_ops": [o for o in ops if o.get("ms") is None],
    }


def profile_markdown(prof: dict[str, Any], *, top_ops: int = 10) -> str:
    """Markdown tables: op types by share of time, then the slowest single ops."""
    name = Path(prof["file"]).name
    lines = [
        f"## Op profile: `{name}` ({prof['threads']} thread(s))",
        "",
        f"Whole model {prof['whole_model_ms']:.2f} ms; the one-op models sum to "
        f"{prof['sum_ops_ms']:.2f} ms ({prof['coverage']:.2f}x the whole: each pays its own "
        "invoke and cannot fuse with its neighbours; fastest of interleaved rounds, "
        f"{prof.get('clock', 'wall time')}). Slowest op types: "
        + ", ".join(f"**{t}**" for t in prof["slowest_types"])
        + ".",
        "",
        "| op type | count | ms | share |",
        "|---|---:|---:|---:|",
    ]
    for t in prof["by_type"]:
        lines.append(f"| {t['op']} | {t['count']} | {t['ms']:.2f} | {100 * t['share']:.1f}% |")
    lines += ["", "| # | op | output shape | ms | share |", "|---:|---|---|---:|---:|"]
    for o in prof["ops"][:top_ops]:
        if o.get("ms") is None:
            continue
        shape = "x".join(str(s) for s in o.get("output_shape", []))
        lines.append(
            f"| {o['index']} | {o['op']} | {shape} | {o['ms']:.3f} | {100 * o['share']:.1f}% |"
        )
    for o in prof.get("failed_ops", []):
        lines.append(f"- op {o['index']} {o['op']} could not run alone: {o['error']}")
    return "\n".join(lines) + "\n"


__all__ = ["profile_ops", "profile_markdown", "split_ops", "make_interpreter", "interleaved_ms"]
