"""kseg bench --profile: one-op models cut from a flatbuffer compute exactly what the op computes
inside the whole model, every op is attributed, shares add up, and the CLI reports it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from kseg.bench.builder import ModelBuilder, int8_conv_model
from kseg.bench.cli import bench
from kseg.bench.profile import profile_markdown, profile_ops, split_ops


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def _conv_pool_model() -> bytes:
    """int8 conv (3 layers, 16x16x8) followed by a 2x2 max-pool: two op types."""
    b = ModelBuilder()
    rng = np.random.default_rng(3)
    act = {"scale": 0.05, "zero_point": -3}
    x = b.add_tensor("x", (1, 16, 16, 8), "int8", **act)
    first = x
    for i in range(3):
        w = rng.integers(-127, 128, (8, 3, 3, 8), dtype=np.int8)
        wt = b.add_tensor(f"w{i}", w.shape, "int8", data=w, scale=[0.002] * 8, zero_point=[0] * 8)
        bias = rng.integers(-500, 500, (8,), dtype=np.int32)
        bt = b.add_tensor(f"b{i}", (8,), "int32", data=bias, scale=[1e-4] * 8, zero_point=[0] * 8)
        y = b.add_tensor(f"c{i}", (1, 16, 16, 8), "int8", **act)
        b.add_op(
            "CONV_2D",
            [x, wt, bt],
            [y],
            options=("Conv2DOptions", {"Padding": 0, "StrideW": 1, "StrideH": 1,
                                       "FusedActivationFunction": 1}),
            version=3,
        )  # fmt: skip
        x = y
    pooled = b.add_tensor("pool", (1, 8, 8, 8), "int8", **act)
    b.add_op(
        "MAX_POOL_2D",
        [x],
        [pooled],
        options=("Pool2DOptions", {"Padding": 1, "StrideW": 2, "StrideH": 2,
                                   "FilterWidth": 2, "FilterHeight": 2}),
        version=2,
    )  # fmt: skip
    return b.finish([first], [pooled])


def test_one_op_models_chain_to_the_whole_model_output():
    data = _conv_pool_model()
    ops = split_ops(data)
    assert [o["op"] for o in ops] == ["CONV_2D"] * 3 + ["MAX_POOL_2D"]
    assert [o["index"] for o in ops] == [0, 1, 2, 3]
    assert ops[3]["output_shape"] == [1, 8, 8, 8]
    # weights travel with their op: each conv model holds its 576 int8 weights, the pool none
    assert all(len(o["model"]) > 576 for o in ops[:3]) and len(ops[3]["model"]) < 576
    x = np.random.default_rng(0).integers(-128, 128, (1, 16, 16, 8)).astype(np.int8)
    y = x
    for o in ops:
        y = _run(o["model"], y)
    np.testing.assert_array_equal(y, _run(data, x))


def test_profile_attributes_every_op_and_shares_add_up():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.tflite"
        path.write_bytes(_conv_pool_model())
        prof = profile_ops(path, threads=1, runs=5, warmup=1)
    assert prof["clock"] == "thread CPU time"
    assert len(prof["ops"]) == 4 and not prof["failed_ops"]
    assert sum(o["share"] for o in prof["ops"]) == pytest.approx(1.0)
    types = {t["op"]: t for t in prof["by_type"]}
    assert types["CONV_2D"]["count"] == 3 and types["MAX_POOL_2D"]["count"] == 1
    conv_ms = sum(o["ms"] for o in prof["ops"] if o["op"] == "CONV_2D")
    assert types["CONV_2D"]["ms"] == pytest.approx(conv_ms)
    assert prof["sum_ops_ms"] == pytest.approx(sum(t["ms"] for t in prof["by_type"]))
    ranked = [t["ms"] for t in prof["by_type"]]
    assert ranked == sorted(ranked, reverse=True)
    assert prof["slowest_types"] == [t["op"] for t in prof["by_type"]]
    assert prof["whole_model_ms"] > 0 and prof["coverage"] > 0
    md = profile_markdown(prof)
    assert "| CONV_2D | 3 |" in md and "| MAX_POOL_2D | 1 |" in md


def test_bench_cli_profile_in_json_and_terminal(tmp_path):
    path = tmp_path / "conv.tflite"
    path.write_bytes(int8_conv_model(size=16, channels=8, layers=2))
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(
        bench,
        [str(path), "--profile", "--runs", "5", "--warmup", "1", "--no-calibrate",
         "--no-isolate", "--json", str(out), "--md", str(tmp_path / "bench.md")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    (prof,) = rep["profiles"]
    assert [o["op"] for o in prof["ops"]] == ["CONV_2D", "CONV_2D"]
    assert prof["slowest_types"] == ["CONV_2D"]
    assert "Op profile: `conv.tflite`" in res.output and "| CONV_2D | 2 |" in res.output
    assert "| CONV_2D | 2 |" in (tmp_path / "bench.md").read_text()
