"""kseg.bench.vela: Vela's summary parsed from real runs, calibration math, the estimate-only path,
and kseg's Ethos-U op rules against Vela 5.2.

Tests that run Vela skip when it is not installed (``bash tools/vela_check.sh --install`` makes
``/tmp/kseg-vela-venv``, where :func:`kseg.bench.vela.find_vela` looks; ``tools/test.sh`` does so).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest

from kseg.bench import vela as V
from kseg.bench.analyze import ModelInfo, OpInfo, TensorInfo, analyze_model
from kseg.bench.devices import load_profile
from kseg.bench.npu import ESTIMATE_LABEL, check_op, emulate
from kseg.bench.report import to_markdown
from kseg.bench.run import run_benchmark
from kseg.errors import ConfigError

needs_vela = pytest.mark.skipif(
    not V.vela_available(),
    reason="Arm Vela not installed: pip install 'kseg[vela]' or bash tools/vela_check.sh --install",
)


# ------------------------------------------------------------------ real Vela runs


@needs_vela
def test_vela_report_matches_vela_own_printout(tiny_tflite, tmp_path):
    r128 = V.vela_report(tiny_tflite["int8"], "ethos-u55-128", out_dir=tmp_path / "128")
    r256 = V.vela_report(tiny_tflite["int8"], "ethos-u55-256", out_dir=tmp_path / "256")
    log = next((tmp_path / "128").glob("*.log")).read_text()
    # the CSV figures agree with what Vela prints for a human
    sram_kib = float(re.search(r"Total SRAM used\s+([\d.]+) KiB", log).group(1))
    assert r128["sram_bytes"] / 1024 == pytest.approx(sram_kib, abs=0.01)
    macs = int(re.search(r"Neural network macs\s+(\d+)", log).group(1))
    assert r128["macs"] == macs
    assert r128["latency_ms"] == pytest.approx(1e3 * r128["cycles"] / r128["clock_hz"], rel=1e-6)
    assert r128["clock_hz"] == 500e6 and r128["system_config"] == "Ethos_U55_High_End_Embedded"
    # every op of the tiny INT8 U-Net on the NPU, per the compiled file and Vela's count
    n_ops = len(analyze_model(tiny_tflite["int8"]).ops)
    assert r128["ops_total"] == r128["npu_ops"] == n_ops
    assert r128["cpu_ops"] == [] and r128["all_on_npu"] and r128["vela_op_counts"]["cpu"] == 0
    # weights come from off-chip flash in Shared_Sram mode; nothing is written there
    assert r128["offchip_read_bytes"] > 0 and r128["offchip_write_bytes"] == 0
    assert r128["vela_version"] == "5.2.0" and r128["accelerator"] == "ethos-u55-128"
    # twice the MACs per cycle: fewer cycles, same work
    assert r256["cycles"] < r128["cycles"] and r256["macs"] == r128["macs"]


@needs_vela
def test_vela_report_lists_cpu_ops_of_a_float_model(tiny_tflite):
    r = V.vela_report(tiny_tflite["float"], "ethos-u55-256")
    names = [op.name for op in analyze_model(tiny_tflite["float"]).ops]
    assert sorted(r["cpu_ops"]) == sorted(names) and r["npu_ops"] == 0 and not r["all_on_npu"]
    assert r["cpu_op_reasons"] and all("Float32" in c["reason"] for c in r["cpu_op_reasons"])


@needs_vela
def test_bench_reports_vela_beside_kseg(tiny_tflite):
    report = run_benchmark([tiny_tflite["int8"]], npu=["ethos_u55_128"], measure_latency=False)
    n = report["npu"][0]
    v, c = n["vela"], n["vela"]["comparison"]
    assert v["accelerator"] == "ethos-u55-128" and n["latency_label"] == ESTIMATE_LABEL
    assert c["ratio_kseg_over_vela"] == pytest.approx(
        n["estimated_latency_ms"]["total"] / v["latency_ms"]
    )
    assert c["placement_agrees"]
    md = to_markdown(report)
    assert "Vela 5.2.0 beside kseg's estimate" in md and f"{v['latency_ms']:.2f}" in md


@needs_vela
def test_cli_vela_calibrate_writes_a_profile(tiny_tflite, tmp_path):
    from click.testing import CliRunner

    from kseg.bench.cli import bench

    out = tmp_path / "cal.yaml"
    args = [str(tiny_tflite["int8"]), "--static-only", "--npu", "ethos_u55_128"]
    res = CliRunner().invoke(bench, [*args, "--vela-calibrate", str(out)])
    assert res.exit_code == 0, res.output
    m = re.search(r"tiny_int8.tflite: ([\d.]+) before, ([\d.]+) after", res.output)
    assert m and abs(math.log(float(m.group(2)))) < abs(math.log(float(m.group(1))))
    cal = load_profile(out)
    v = V.vela_report(tiny_tflite["int8"], "ethos-u55-128")
    est = emulate(analyze_model(tiny_tflite["int8"]), cal).latency_ms()["total"]
    assert est / v["latency_ms"] == pytest.approx(float(m.group(2)), abs=0.01)


def test_cli_vela_calibrate_needs_one_ethos_profile(tiny_tflite, tmp_path):
    from click.testing import CliRunner

    from kseg.bench.cli import bench

    args = [str(tiny_tflite["int8"]), "--static-only", "--npu", "ethos_u55_128,ethos_u55_256"]
    res = CliRunner().invoke(bench, [*args, "--vela-calibrate", str(tmp_path / "c.yaml")])
    assert res.exit_code == 2 and "exactly one Ethos-U profile" in res.output
    assert not (tmp_path / "c.yaml").exists()


def test_vela_unknown_accelerator_is_one_line():
    with pytest.raises(ConfigError, match="unknown Ethos-U accelerator 'ethos-u55-100'"):
        V.check_accelerator("ethos-u55-100")


# ------------------------------------------------------------------ without Vela


def test_without_vela_the_estimate_is_labelled(tiny_tflite, monkeypatch):
    monkeypatch.setenv(V.VELA_ENV, "/nonexistent/vela")
    assert not V.vela_available()
    report = run_benchmark([tiny_tflite["int8"]], npu=["ethos_u"], measure_latency=False)
    n = report["npu"][0]
    assert n["vela"] is None and "not installed" in n["vela_note"]
    assert n["latency_label"] == ESTIMATE_LABEL and n["estimated_latency_ms"]["total"] > 0
    md = to_markdown(report)
    assert "latency is an estimate" in md and "the latency above is kseg's estimate" in md
    with pytest.raises(ConfigError, match=r"KSEG_VELA=/nonexistent/vela is not a working vela"):
        run_benchmark([tiny_tflite["int8"]], npu=["ethos_u"], measure_latency=False, vela="yes")
    # profiles without a Vela accelerator carry no Vela entry at all
    other = run_benchmark([tiny_tflite["int8"]], npu=["generic_npu"], measure_latency=False)
    assert "vela" not in other["npu"][0]


# ------------------------------------------------------------------ CSV units


def test_summary_row_units_and_offchip_sums(tmp_path):
    cols = {
        "accelerator_configuration": "Ethos_U55_128",
        "system_config": "Ethos_U55_High_End_Embedded",
        "memory_mode": "Shared_Sram",
        "core_clock": "500000000.0",
        "inference_time": "0.002",
        "cycles_total": "1000000",
        "nn_macs": "123456",
        "sram_memory_used": "36.5",  # KiB
    }
    for i, mem in enumerate(("sram", "dram", "on_chip_flash", "off_chip_flash")):
        for j, kind in enumerate(
            ("feature_map_read", "weight_read", "feature_map_write", "weight_write")
        ):
            cols[f"{mem}_{kind}_bytes"] = str(1000 * (i + 1) + j)
    path = tmp_path / "m_summary_Ethos_U55_High_End_Embedded.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(cols))
        w.writeheader()
        w.writerow(cols)
    s = V.summary_from_row(V.parse_summary_csv(path))
    assert s["latency_ms"] == pytest.approx(2.0) and s["cycles"] == 1_000_000
    assert s["sram_bytes"] == 37376  # 36.5 * 1024
    # off-chip = DRAM + off-chip flash (feature maps + weights); on-chip flash and SRAM excluded
    assert s["offchip_read_bytes"] == (2000 + 2001) + (4000 + 4001)
    assert s["offchip_write_bytes"] == (2002 + 2003) + (4002 + 4003)
    assert s["sram_traffic_bytes"] == 1000 + 1001 + 1002 + 1003


def test_cpu_reasons_parsed_from_log():
    log = (
        "Warning (supported operators) operator: RESIZE_BILINEAR, ofm: 'up/resize'\n"
        "Reason: Scale-factor needs to be 2x\nmore\n"
        "Warning (supported operators) operator: LOGISTIC, ofm: 'out:0'\n"
        "Reason: Operation has tensor with unsupported DataType Float32 (x)\n"
    )
    assert V.parse_cpu_reasons(log) == [
        {"op": "RESIZE_BILINEAR", "ofm": "up/resize", "reason": "Scale-factor needs to be 2x"},
        {
            "op": "LOGISTIC",
            "ofm": "out:0",
            "reason": "Operation has tensor with unsupported DataType Float32 (x)",
        },
    ]


# ------------------------------------------------------------------ calibration


def _t(i: int, shape: tuple[int, ...], const: bool = False) -> TensorInfo:
    return TensorInfo(i, f"t{i}", "int8", shape, shape, (0.1,), (0,), const)


def _model(conv_hw: int, add_hw: int) -> ModelInfo:
    """One compute-bound conv and one memory-bound add, in proportions set by the sizes."""
    x = _t(0, (1, conv_hw, conv_hw, 32))
    w = _t(1, (32, 3, 3, 32), const=True)
    y = _t(2, (1, conv_hw, conv_hw, 32))
    a, b, c = (_t(3 + k, (1, add_hw, add_hw, 32)) for k in range(3))
    conv = OpInfo(0, "CONV_2D", 1, (x, w), (y,), {"filter": [3, 3], "stride": [1, 1]})
    conv = OpInfo(0, "CONV_2D", 1, (x, w), (y,), conv.options, macs=conv_hw**2 * 32 * 9 * 32)
    add = OpInfo(1, "ADD", 1, (a, b), (c,), {})
    return ModelInfo("synthetic", 0, (conv, add), (x, w, y, a, b, c), (x,), (c,))


def test_calibration_recovers_known_utilization_and_bandwidth():
    import dataclasses

    prof = load_profile("ethos_u55_256")
    truth = dataclasses.replace(prof, utilization=0.35, memory_bandwidth_bytes_per_s=3.2e9)
    models = [_model(64, 8), _model(8, 128), _model(32, 64), _model(48, 32)]
    pairs = [(m, emulate(m, truth).latency_ms()["total"]) for m in models]
    result = V.calibrate(pairs, prof)
    assert result["utilization"] == pytest.approx(0.35, rel=0.02)
    assert result["memory_bandwidth_bytes_per_s"] == pytest.approx(3.2e9, rel=0.02)
    assert max(abs(math.log(r)) for r in result["ratios_after"]) < 0.01
    # "before" is the profile as loaded: the ratio of its own estimate to the target
    before = [emulate(m, prof).latency_ms()["total"] / t for m, t in pairs]
    assert result["ratios_before"] == pytest.approx(before)
    assert result["summary_before"]["worst_factor"] > 1.5  # 0.6 vs 0.35, 1.6 vs 3.2 GB/s
    fitted = emulate(models[0], result["profile"]).latency_ms()["total"]
    assert fitted == pytest.approx(pairs[0][1], rel=0.01)


def test_ratio_summary():
    s = V.ratio_summary([2.0, 0.5, 1.0])
    assert s["geomean"] == pytest.approx(1.0) and s["worst_factor"] == pytest.approx(2.0)


def test_calibrated_profile_is_written_standalone(tmp_path):
    prof = load_profile("ethos_u55_128")  # extends ethos_u
    m = _model(32, 32)
    result = V.calibrate([(m, 2 * emulate(m, prof).latency_ms()["total"])], prof)
    out = V.write_calibrated_profile(result, tmp_path / "cal.yaml")
    cal = load_profile(out)
    assert "extends" not in out.read_text() and cal.name == "ethos_u55_128"
    assert cal.utilization == pytest.approx(result["utilization"], rel=1e-3)
    assert cal.peak_ops_per_s == 1.28e11 and set(cal.ops) == set(prof.ops)
    assert emulate(m, cal).latency_ms()["total"] == pytest.approx(
        2 * emulate(m, prof).latency_ms()["total"], rel=0.02
    )


def test_no_pairs_is_an_error():
    with pytest.raises(ConfigError, match="at least one model"):
        V.calibrate([], load_profile("ethos_u"))


# ------------------------------------------------------------------ profiles and op rules


def test_extends_merges_and_overrides(tmp_path):
    p128, base = load_profile("ethos_u55_128"), load_profile("ethos_u")
    assert p128.peak_ops_per_s == base.peak_ops_per_s / 2
    assert p128.ops == base.ops and p128.vela_accelerator == "ethos-u55-128"
    assert load_profile("ethos_u55_256").vela_accelerator == "ethos-u55-256"
    (tmp_path / "a.yaml").write_text("extends: b\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a\nname: b\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_profile(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: ethos_u\nvela_accelerator: ethos-u42\n")
    with pytest.raises(ConfigError, match="vela_accelerator 'ethos-u42' is not valid"):
        load_profile(tmp_path / "c.yaml")


def _resize(ih: int, oh: int, half: bool, align: bool = False) -> OpInfo:
    x, y = _t(0, (1, ih, ih, 8)), _t(1, (1, oh, oh, 8))
    opts = {"align_corners": align, "half_pixel_centers": half}
    return OpInfo(0, "RESIZE_BILINEAR", 3, (x, _t(2, (2,), True)), (y,), opts)


@pytest.mark.parametrize(
    "ih,oh,half,align,ok",
    [
        (16, 32, True, False, True),  # mobile_unet's upsampling: Vela 5.2 runs it on the NPU
        (16, 64, True, False, False),  # half-pixel centers: 2x only
        (16, 64, False, False, True),  # 4x without half-pixel centers
        (16, 48, False, False, False),  # 3x
        (16, 31, False, True, True),  # align_corners: (31-1)/(16-1) = 2x
        (1, 32, True, False, True),  # 1x1 input: any size
    ],
)
def test_resize_rules_follow_vela_5_2(ih, oh, half, align, ok):
    reasons = check_op(load_profile("ethos_u"), _resize(ih, oh, half, align))
    assert (reasons == []) is ok, reasons


def _keras_rules_model(path: Path) -> Path:
    """INT8 model with ops at the edges of Ethos-U55's rules in Vela 5.2.

    On the NPU: 2x half-pixel bilinear upsampling, a dilation-4 conv, a dilation-3 depthwise conv.
    On the CPU: a 4x half-pixel bilinear upsampling, a stride-4 SAME conv.
    """
    from kseg._keras import keras
    from kseg.export.convert import convert_model

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((16, 16, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    a = L.UpSampling2D(2, interpolation="bilinear")(x)
    a = L.Conv2D(8, 3, strides=2, padding="same")(a)
    b = L.UpSampling2D(4, interpolation="bilinear")(a)
    b = L.Conv2D(8, 5, strides=4, padding="same")(b)  # back to 16x16
    c = L.Conv2D(8, 3, dilation_rate=4, padding="same")(x)
    d = L.DepthwiseConv2D(3, dilation_rate=3, padding="same")(x)
    out = L.Conv2D(1, 1, activation="sigmoid")(L.Concatenate()([b, c, d]))
    rep = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 1)).astype(np.float32)
    path.write_bytes(convert_model(keras.Model(inp, out), "int8", representative=rep))
    return path


def test_kseg_places_ops_like_vela(tmp_path):
    path = _keras_rules_model(tmp_path / "rules_int8.tflite")
    info = analyze_model(path)
    resizes = [op for op in info.ops if op.name == "RESIZE_BILINEAR"]
    assert len(resizes) == 2 and all(op.options["half_pixel_centers"] for op in resizes)
    dilations = sorted(op.options["dilation"][0] for op in info.ops if "dilation" in op.options)
    assert dilations[-2:] == [3, 4]
    rep = emulate(info, load_profile("ethos_u55_256"))
    fallbacks = sorted((p.op.name, p.op.outputs[0].shape[1]) for p in rep.fallbacks)
    assert fallbacks == [("CONV_2D", 16), ("RESIZE_BILINEAR", 64)], rep.fallbacks
    if not V.vela_available():
        pytest.skip("Arm Vela not installed: kseg's placement checked, Vela's not compared")
    v = V.vela_report(path, "ethos-u55-256")
    assert sorted(v["cpu_ops"]) == ["CONV_2D", "RESIZE_BILINEAR"]
    assert v["npu_ops"] == len(info.ops) - 2
