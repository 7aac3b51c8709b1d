"""kseg.bench: analyzer, hand-built models, device profiles, partitioning, roofline, CLI, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kseg.bench.analyze import analyze_model
from kseg.bench.builder import ModelBuilder, int8_conv_model
from kseg.bench.cli import bench
from kseg.bench.devices import available_profiles, load_profile
from kseg.bench.npu import check_op, emulate
from kseg.bench.report import to_markdown, write_charts
from kseg.errors import ConfigError

# hand count for tests/runtime/tiny_models.py (32x32x1 input):
# conv 3x3 1->8 at 32x32, conv 3x3 8->16 at 16x16, transpose conv 2x2 16->8 from 16x16,
# conv 3x3 16->8 at 32x32, conv 1x1 8->1 at 32x32
TINY_MACS = (
    32 * 32 * 8 * 9
    + 16 * 16 * 16 * 9 * 8
    + 16 * 16 * 16 * 4 * 8
    + 32 * 32 * 8 * 9 * 16
    + 32 * 32 * 8
)
ALL_PROFILES = {
    "generic_npu",
    "edgetpu",
    "ethos_u",
    "ethos_u55_128",
    "ethos_u55_256",
    "hexagon",
    "nnapi",
    "cortex_a53",
}


def _chain(ops: list[str], dtype: str = "float32", side: int = 8) -> bytes:
    """x -> ADD(x, 1) -> TANH -> ... : a chain whose i-th op is ops[i]; float32 so it also runs."""
    b = ModelBuilder()
    shape = (1, side, side, 4)
    x = b.add_tensor("x", shape, dtype)
    first = x
    one = b.add_tensor("one", (1,), dtype, data=np.ones(1))
    for i, op in enumerate(ops):
        y = b.add_tensor(f"t{i}", shape, dtype)
        if op == "ADD":
            b.add_op("ADD", [x, one], [y], options=("AddOptions", {}))
        else:
            b.add_op(op, [x], [y])
        x = y
    return b.finish([first], [x])


def _profile(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "test_npu.yaml"
    p.write_text(text)
    return p


BASE_PROFILE = """\
name: test_npu
kind: npu
peak_ops_per_s: 1.0e9
memory_bandwidth_bytes_per_s: 1.0e9
utilization: 1.0
sram_bytes: 1024
handoff_cost_us: 1000
cpu_peak_ops_per_s: 1.0e8
cpu_float_peak_ops_per_s: 1.0e8
cpu_memory_bandwidth_bytes_per_s: 1.0e9
dtypes: [float32]
"""


def test_analyzer_tiny_models(tiny_tflite):
    f = analyze_model(tiny_tflite["float"])
    q = analyze_model(tiny_tflite["int8"])
    d = analyze_model(tiny_tflite["int8_dynamic"])
    assert f.total_macs == q.total_macs == TINY_MACS == 1_687_552
    assert len(f.float_ops) == len(f.ops) == 10 and not f.int8_intended
    assert q.float_ops == [] and q.int8_intended and q.dynamic_ops == []
    assert q.inputs[0].dtype == "int8" and q.inputs[0].zero_point == (-128,)
    counts = d.op_counts()
    assert {"SHAPE", "PACK", "STRIDED_SLICE"} <= set(counts) and "SHAPE" not in q.op_counts()
    assert d.dynamic_ops and d.inputs[0].shape_signature[0] == -1
    conv = next(op for op in q.ops if op.name == "CONV_2D")
    assert conv.options["filter"] == [3, 3] and conv.options["stride"] == [1, 1]
    assert conv.options["activation"] == "RELU" and conv.macs == 32 * 32 * 8 * 9
    # int8 activations of the first conv: 32x32x1 in, 32x32x8 out, 8x3x3x1 weights, 8 int32 bias
    assert conv.bytes_moved == 32 * 32 + 32 * 32 * 8 + 72 + 32


def test_builder_chain_runs_and_matches_numpy(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path / "chain.tflite"
    path.write_bytes(_chain(["ADD", "TANH", "ADD"]))
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 4)).astype(np.float32)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, np.tanh(x + 1) + 1, atol=1e-6)


def test_calibration_model_is_valid_int8(tmp_path):
    from kseg.runtime import TFLiteModel

    path = tmp_path / "cal.tflite"
    path.write_bytes(int8_conv_model(size=16, channels=8, layers=2))
    info = analyze_model(path)
    assert info.total_macs == 2 * 16 * 16 * 8 * 8 * 9
    assert info.float_ops == [] and info.op_counts() == {"CONV_2D": 2}
    m = TFLiteModel(path, num_threads=1)
    out = m.predict(np.random.default_rng(0).uniform(-5, 5, (1, 16, 16, 8)).astype(np.float32))
    assert out.shape == (1, 16, 16, 8) and out.min() >= 0 and out.std() > 0  # fused RELU


def test_partition_counts_alternating_ops(tmp_path):
    path = tmp_path / "alt.tflite"
    path.write_bytes(_chain(["ADD", "TANH", "ADD", "TANH", "ADD"]))
    info = analyze_model(path)
    prof = load_profile(_profile(tmp_path, BASE_PROFILE + "ops:\n  ADD: {}\n"))
    rep = emulate(info, prof).to_dict()
    assert rep["num_partitions"] == 3 and rep["handoffs"] == 6
    assert [p["first_op"] for p in rep["partitions"]] == [0, 2, 4]
    assert [(f["index"], f["op"]) for f in rep["fallbacks"]] == [(1, "TANH"), (3, "TANH")]
    assert "TANH is not supported by test_npu" in rep["fallbacks"][0]["reasons"][0]
    # EdgeTPU-style: only the first segment is delegated
    first_only = load_profile(
        _profile(tmp_path, BASE_PROFILE + "partition_policy: first_only\nops:\n  ADD: {}\n")
    )
    rep = emulate(info, first_only).to_dict()
    assert rep["num_partitions"] == 1 and rep["ops_on_device"] == 1 and rep["ops_on_host_cpu"] == 4
    # NNAPI-style cap on delegated partitions
    capped = load_profile(_profile(tmp_path, BASE_PROFILE + "max_partitions: 2\nops:\n  ADD: {}\n"))
    rep = emulate(info, capped).to_dict()
    assert rep["num_partitions"] == 2 and rep["ops_on_host_cpu"] == 3


def test_roofline_estimate_by_hand(tmp_path):
    path = tmp_path / "alt.tflite"
    path.write_bytes(_chain(["ADD", "TANH"], side=8))
    info = analyze_model(path)
    prof = load_profile(_profile(tmp_path, BASE_PROFILE + "ops:\n  ADD: {}\n"))
    lat = emulate(info, prof).latency_ms()
    n = 8 * 8 * 4  # elements
    add = max(n / 1e9, (n * 4 + 4 + n * 4) / 1e9)  # device: ops/peak vs bytes/bandwidth
    tanh = max(n / (1e8 * 0.5), (2 * n * 4) / 1e9)  # host CPU fallback at 50% of its peak
    assert lat["device"] == pytest.approx(1e3 * add)
    assert lat["cpu_fallback"] == pytest.approx(1e3 * tanh)
    assert lat["handoffs"] == pytest.approx(2 * 1.0)  # one partition = 2 handoffs x 1000 us
    assert lat["total"] == pytest.approx(1e3 * (add + tanh) + 2.0)


def test_activation_memory_and_sram_warning(tmp_path):
    path = tmp_path / "chain.tflite"
    path.write_bytes(_chain(["TANH", "TANH", "TANH"], side=8))
    info = analyze_model(path)
    peak, _ = info.activation_memory()
    assert peak == 2 * 8 * 8 * 4 * 4  # input and output of one op live at a time
    prof = load_profile(_profile(tmp_path, BASE_PROFILE + "ops:\n  TANH: {}\n"))
    rep = emulate(info, prof).to_dict()
    assert not rep["fits_sram"] and any("exceed SRAM" in w for w in rep["warnings"])


def test_constraints_kernel_stride_dtype_dynamic(tiny_tflite):
    info = analyze_model(tiny_tflite["int8"])
    hexagon = load_profile("hexagon")
    conv = next(op for op in info.ops if op.name == "CONV_2D")
    assert check_op(hexagon, conv) == []
    ethos = load_profile("ethos_u")
    tconv = next(op for op in info.ops if op.name == "TRANSPOSE_CONV")
    assert check_op(ethos, tconv) == []  # stride 2
    generic = load_profile("generic_npu")
    fl = analyze_model(tiny_tflite["float"])
    assert any("float32 tensors" in r for r in check_op(generic, fl.ops[2]))
    dyn = analyze_model(tiny_tflite["int8_dynamic"])
    shape_op = next(op for op in dyn.ops if op.name == "SHAPE")
    assert check_op(generic, shape_op) == ["SHAPE is not supported by generic_npu"]
    dyn_tconv = next(op for op in dyn.ops if op.name == "TRANSPOSE_CONV")
    assert check_op(generic, tconv) == []
    assert check_op(generic, dyn_tconv) == ["dynamic shape (a dimension is unknown until run time)"]
    rep = emulate(fl, generic).to_dict()
    assert rep["ops_on_device"] == 0 and rep["num_partitions"] == 0
    rep = emulate(info, load_profile("cortex_a53")).to_dict()
    assert rep["ops_on_host_cpu"] == 0 and rep["handoffs"] == 0


def test_profiles_load_and_bad_profiles(tmp_path):
    assert ALL_PROFILES <= set(available_profiles())
    for name in ALL_PROFILES:
        prof = load_profile(name)
        assert prof.peak_ops_per_s > 0 and prof.sram_bytes > 0
    bad = _profile(tmp_path, BASE_PROFILE + "ops:\n  ADD: {}\n  CONV2D: {}\n")
    with pytest.raises(ConfigError) as e:
        load_profile(bad)
    msg = str(e.value)
    assert "test_npu.yaml: unknown op 'CONV2D'" in msg and "did you mean 'CONV_2D'" in msg
    assert "valid TFLite builtin ops:" in msg and "\n" not in msg
    bad_key = _profile(tmp_path, BASE_PROFILE + "ops:\n  CONV_2D: {kernel: 3}\n")
    with pytest.raises(ConfigError, match="unknown constraint 'kernel'"):
        load_profile(bad_key)
    with pytest.raises(ConfigError, match="unknown device profile 'tpu'; valid: "):
        load_profile("tpu")


def test_bench_cli_json_report_and_charts(tiny_tflite, tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(
        bench,
        [str(tiny_tflite["int8"]), str(tiny_tflite["float"]), "--baseline", str(tiny_tflite["float"]),
         "--threads", "1,2", "--runs", "5", "--warmup", "1", "--no-calibrate", "--no-isolate",
         "--npu", "edgetpu,generic_npu", "--json", str(out), "--plots", str(tmp_path / "plots")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    for key in ("init_ms", "peak_rss_mb", "size_bytes"):
        assert key in rep and key in rep["results"][0]
    assert rep["latency_ms"]["p50"] > 0 and rep["latency_ms"]["p90"] >= rep["latency_ms"]["p50"]
    assert len(rep["results"]) == 4 and len(rep["npu"]) == 4
    base = [r for r in rep["results"] if r["file"] == str(tiny_tflite["float"])]
    assert all(r["ratio_vs_baseline"]["latency_p50"] == 1.0 for r in base)
    r0 = rep["results"][0]
    assert r0["macs"] == TINY_MACS
    assert r0["gmacs_per_s"] == pytest.approx(TINY_MACS / (r0["latency_ms"]["p50"] * 1e-3) / 1e9)
    assert rep["size_bytes"] == tiny_tflite["float"].stat().st_size  # summary = the baseline's
    charts = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert charts == ["latency_distribution.png", "latency_vs_threads.png", "size_dice_latency.png"]
    md = to_markdown(rep)
    assert "| tiny_int8.tflite | 1 |" in md and "edgetpu" in md and "estimate" in md


def test_bench_isolated_with_calibration(tiny_tflite, tmp_path):
    res = CliRunner().invoke(
        bench,
        [str(tiny_tflite["int8"]), "--runs", "5", "--warmup", "1", "--cpus", "0",
         "--json", str(tmp_path / "b.json")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "b.json").read_text())
    r = rep["results"][0]
    assert r["cpus"] == [0] and r["threads"] == 1
    assert r["peak_rss_mb"] > r["baseline_rss_mb"] > 0
    assert rep["calibration"]["1"]["macs"] == 2 * 64 * 64 * 64 * 64 * 9
    assert (
        0
        < r["peak_share"]
        == pytest.approx(r["gmacs_per_s"] / rep["calibration"]["1"]["gmacs_per_s"])
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_bench_cli_bad_inputs(tiny_tflite, tmp_path):
    runner = CliRunner()
    txt = tmp_path / "notes.tflite"
    txt.write_text("hello, I am not a model")
    trunc = tmp_path / "cut.tflite"
    trunc.write_bytes(tiny_tflite["int8"].read_bytes()[:1000])
    so = tmp_path / "libbroken.so"
    so.write_bytes(b"garbage")
    bad_prof = _profile(tmp_path, BASE_PROFILE + "ops:\n  FOO_OP: {}\n")
    cases = [
        ([str(txt)], "not a TFLite model (missing TFL3 identifier)"),
        ([str(trunc), "--no-calibrate", "--runs", "2"], "cut.tflite: truncated"),
        (
            [str(tiny_tflite["int8"]), "--no-calibrate", "--delegate", f"external:{so}"],
            "delegate failed to load",
        ),
        (
            [str(tiny_tflite["int8"]), "--static-only", "--npu", str(bad_prof)],
            "unknown op 'FOO_OP'",
        ),
        (
            [str(tiny_tflite["int8"]), "--threads", "one"],
            "--threads must be comma-separated integers",
        ),
    ]
    for args, expected in cases:
        res = runner.invoke(bench, args)
        assert res.exit_code == 2, (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
        assert len(lines) == 1 and expected in lines[0], res.output


def test_static_only_report(tiny_tflite, tmp_path):
    res = CliRunner().invoke(
        bench,
        [
            str(tiny_tflite["int8_dynamic"]),
            "--static-only",
            "--npu",
            "all",
            "--json",
            str(tmp_path / "s.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "s.json").read_text())
    assert rep["results"] == [] and {n["profile"] for n in rep["npu"]} >= ALL_PROFILES
    edgetpu = next(n for n in rep["npu"] if n["profile"] == "edgetpu")
    assert any("dynamic shapes" in w for w in edgetpu["warnings"])
    assert write_charts(rep, tmp_path / "none") == []


def test_percentiles_by_hand():
    from kseg.bench.latency import percentiles

    p = percentiles([float(v) for v in range(1, 101)])
    assert (p["p50"], p["p90"], p["p99"]) == (
        pytest.approx(50.5),
        pytest.approx(90.1),
        pytest.approx(99.01),
    )
    assert p["mean"] == 50.5 and p["min"] == 1 and p["max"] == 100
    assert p["std"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))


def test_parse_int_list_and_baseline_added(tiny_tflite):
    from kseg.bench.run import parse_int_list, run_benchmark

    assert parse_int_list("1, 2,4", "--threads") == [1, 2, 4]
    with pytest.raises(ConfigError, match="--cpus must be non-negative"):
        parse_int_list("-1", "--cpus")
    rep = run_benchmark([tiny_tflite["int8"]], baseline=tiny_tflite["float"], runs=3, warmup=0,
                        isolate=False, calibrate=False)  # fmt: skip
    assert [Path(m["path"]).name for m in rep["models"]] == [
        "tiny_float.tflite",
        "tiny_int8.tflite",
    ]
    int8 = next(r for r in rep["results"] if r["file"].endswith("tiny_int8.tflite"))
    ratio = int8["latency_ms"]["p50"] / rep["latency_ms"]["p50"]
    assert int8["ratio_vs_baseline"]["latency_p50"] == pytest.approx(ratio)
    assert int8["ratio_vs_baseline"]["size"] == pytest.approx(
        tiny_tflite["int8"].stat().st_size / tiny_tflite["float"].stat().st_size
    )
