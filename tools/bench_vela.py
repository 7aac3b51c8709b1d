"""Vela's Ethos-U estimate against kseg's roofline estimate, before and after calibration.

For each segmentation architecture of the zoo (default options, untrained: latency estimates do
not depend on the weights' values) at ``--size`` (256) INT8, compiled by Vela (``ethos-u-vela``,
see ``kseg.bench.vela``) for Ethos-U55-128 and Ethos-U55-256 (``Ethos_U55_High_End_Embedded``,
500 MHz, ``Shared_Sram``):

- Vela: cycle-based latency, ops on the NPU / CPU, SRAM used, off-chip traffic;
- kseg: the device profile's placement and roofline estimate (``ethos_u55_128``/``ethos_u55_256``
  as shipped in ``configs/devices``), and the ratio kseg / Vela;
- calibration (``kseg.bench.vela.calibrate``): the profile's ``utilization`` and
  ``memory_bandwidth_bytes_per_s`` fitted on all models, the ratio after, and the leave-one-out
  ratio (fitted on the other models: what a new model can expect).

Writes ``bench_vela.json``, ``bench_vela.md`` and the calibrated profiles (``calibrated/*.yaml``)
under ``--out`` (default ``runs/bench/vela``). Needs TensorFlow (conversion) and Vela.

Example:
    python tools/bench_vela.py                       # all zoo segmentation models
    python tools/bench_vela.py --models unet,mobile_unet --size 128
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from kseg.atomic import write_bytes, write_json, write_text  # noqa: E402

PROFILES = {"ethos-u55-128": "ethos_u55_128", "ethos-u55-256": "ethos_u55_256"}


def convert(name: str, size: int, out: Path) -> Path:
    """INT8 ``.tflite`` of the untrained architecture ``name`` (cached in ``out``)."""
    path = out / f"{name}_{size}_int8.tflite"
    if path.is_file():
        return path
    from kseg._keras import keras
    from kseg.export.convert import convert_model
    from kseg.models import create_model

    keras.utils.set_random_seed(0)
    model = create_model(name, input_shape=(size, size, 1))
    rep = np.random.default_rng(0).uniform(0, 255, (8, size, size, 1)).astype(np.float32)
    write_bytes(path, convert_model(model, "int8", representative=rep))
    keras.backend.clear_session()
    return path


def segmentation_models() -> list[str]:
    from kseg.models import MODELS, model_task

    return [n for n in MODELS.names() if model_task(n) == "segment"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="all", help="comma-separated zoo names, or 'all'")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "vela")
    args = ap.parse_args(argv)

    from kseg.bench.analyze import analyze_model
    from kseg.bench.devices import load_profile
    from kseg.bench.npu import emulate
    from kseg.bench.vela import (
        calibrate,
        ratio_summary,
        vela_available,
        vela_report,
        vela_version,
        write_calibrated_profile,
    )

    if not vela_available():
        print("error: Vela not found; bash tools/vela_check.sh --install", file=sys.stderr)
        return 2
    names = segmentation_models() if args.models == "all" else args.models.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    models_dir = args.out / "models"
    rows: list[dict[str, Any]] = []
    infos = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            path = convert(name, args.size, models_dir)
        except Exception as e:  # a model that does not convert is reported, not fatal
            rows.append({"model": name, "error": f"conversion: {str(e).splitlines()[0][:200]}"})
            continue
        info = analyze_model(path)
        infos[name] = info
        row: dict[str, Any] = {
            "model": name,
            "file": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
            "tflite_ops": len(info.ops),
            "macs": info.total_macs,
            "size_bytes": path.stat().st_size,
            "convert_s": round(time.perf_counter() - t0, 1),
            "accelerators": {},
        }
        for acc, prof_name in PROFILES.items():
            prof = load_profile(prof_name)
            k = emulate(info, prof).to_dict()
            v = vela_report(path, acc)
            v.pop("summary")
            row["accelerators"][acc] = {
                "vela_ms": v["latency_ms"],
                "vela_cycles": v["cycles"],
                "vela_npu_ops": v["npu_ops"],
                "vela_cpu_ops": v["cpu_ops"],
                "vela_cpu_reasons": sorted(
                    {f"{c['op']}: {c['reason']}" for c in v["cpu_op_reasons"]}
                ),
                "vela_sram_bytes": v["sram_bytes"],
                "vela_offchip_read_bytes": v["offchip_read_bytes"],
                "vela_offchip_write_bytes": v["offchip_write_bytes"],
                "kseg_ms": k["estimated_latency_ms"]["total"],
                "kseg_device_ops": k["ops_on_device"],
                "kseg_fallbacks": [f"{f['op']}: {f['reasons'][0]}" for f in k["fallbacks"]],
                "placement_agrees": k["ops_on_host_cpu"] == len(v["cpu_ops"]),
            }
            print(
                f"{name:<20} {acc:<14} Vela {v['latency_ms']:8.2f} ms  kseg {k['estimated_latency_ms']['total']:8.2f} ms  "
                f"NPU ops Vela {v['npu_ops']}/{len(info.ops)} kseg {k['ops_on_device']}/{len(info.ops)}",
                flush=True,
            )
        rows.append(row)

    ok = [r for r in rows if "error" not in r]
    calibration: dict[str, Any] = {}
    for acc, prof_name in PROFILES.items():
        prof = load_profile(prof_name)
        # calibrate on models Vela runs entirely on the NPU (CPU time is outside Vela's estimate)
        fit_rows = [r for r in ok if not r["accelerators"][acc]["vela_cpu_ops"]]
        pairs = [(infos[r["model"]], r["accelerators"][acc]["vela_ms"]) for r in fit_rows]
        if not pairs:
            continue
        res = calibrate(pairs, prof)
        loo = []
        for i, r in enumerate(fit_rows):
            rest = pairs[:i] + pairs[i + 1 :]
            if not rest:
                break
            sub = calibrate(rest, prof)
            est = emulate(infos[r["model"]], sub["profile"]).latency_ms()["total"]
            loo.append(est / pairs[i][1])
        out_yaml = args.out / "calibrated" / f"{prof_name}.yaml"
        write_calibrated_profile(
            res, out_yaml, note=f"tools/bench_vela.py, {len(pairs)} zoo models at {args.size}px"
        )
        calibration[acc] = {
            "profile": prof_name,
            "models": [r["model"] for r in fit_rows],
            "before": res["before"],
            "after": {
                "utilization": res["utilization"],
                "memory_bandwidth_bytes_per_s": res["memory_bandwidth_bytes_per_s"],
            },
            "ratios_before": dict(
                zip([r["model"] for r in fit_rows], res["ratios_before"], strict=True)
            ),
            "ratios_after": dict(
                zip([r["model"] for r in fit_rows], res["ratios_after"], strict=True)
            ),
            "ratios_leave_one_out": dict(zip([r["model"] for r in fit_rows], loo, strict=False)),
            "summary_before": res["summary_before"],
            "summary_after": res["summary_after"],
            "summary_leave_one_out": ratio_summary(loo) if loo else None,
            "calibrated_profile": str(out_yaml),
        }
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "vela_version": vela_version(),
        "settings": {
            "size": args.size,
            "system_config": "Ethos_U55_High_End_Embedded",
            "memory_mode": "Shared_Sram",
            "clock_mhz": 500,
        },
        "models": rows,
        "calibration": calibration,
    }
    write_json(args.out / "bench_vela.json", result)
    write_text(args.out / "bench_vela.md", to_markdown(result))
    print(to_markdown(result))
    return 0


def to_markdown(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [
        "# Vela vs kseg on Arm Ethos-U55",
        "",
        f"Generated by `tools/bench_vela.py` on {r['date']}: Vela {r['vela_version']} "
        f"({s['system_config']}, {s['memory_mode']}, {s['clock_mhz']} MHz) and kseg's device "
        f"profiles `ethos_u55_128` / `ethos_u55_256` as shipped, on the zoo's untrained models at "
        f"{s['size']}x{s['size']}x1 INT8. Both are estimates, not measurements; the ratio is kseg / Vela.",
        "",
        "| model | MACs | accelerator | Vela ms | kseg ms | kseg / Vela | after cal. | leave-one-out "
        "| NPU ops Vela / kseg | Vela SRAM KiB | off-chip read KiB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    cal = r["calibration"]
    for row in r["models"]:
        if "error" in row:
            lines.append(f"| {row['model']} | - | - | {row['error']} | | | | | | | |")
            continue
        for acc, a in row["accelerators"].items():
            c = cal.get(acc, {})
            after = c.get("ratios_after", {}).get(row["model"])
            loo = c.get("ratios_leave_one_out", {}).get(row["model"])
            n = row["tflite_ops"]
            lines.append(
                f"| {row['model']} | {row['macs'] / 1e9:.2f} G | {acc} | {a['vela_ms']:.1f} "
                f"| {a['kseg_ms']:.1f} | {a['kseg_ms'] / a['vela_ms']:.2f} "
                f"| {'-' if after is None else f'{after:.2f}'} | {'-' if loo is None else f'{loo:.2f}'} "
                f"| {a['vela_npu_ops']}/{n} / {a['kseg_device_ops']}/{n} "
                f"| {a['vela_sram_bytes'] / 1024:.0f} | {a['vela_offchip_read_bytes'] / 1024:.0f} |"
            )
    lines += [
        "",
        "## Calibration (utilization and memory bandwidth fitted to Vela's latencies)",
        "",
    ]
    lines += [
        "| accelerator | models | before: util, GB/s | geomean, worst factor | after: util, GB/s "
        "| geomean, worst factor | leave-one-out geomean, worst |",
        "|---|---:|---|---|---|---|---|",
    ]
    for acc, c in cal.items():
        b, a = c["before"], c["after"]
        sb, sa, sl = c["summary_before"], c["summary_after"], c["summary_leave_one_out"]
        loo_text = f"{sl['geomean']:.2f}, {sl['worst_factor']:.2f}x" if sl else "-"
        lines.append(
            f"| {acc} | {len(c['models'])} | {b['utilization']:.3f}, {b['memory_bandwidth_bytes_per_s'] / 1e9:.2f} "
            f"| {sb['geomean']:.2f}, {sb['worst_factor']:.2f}x "
            f"| {a['utilization']:.3f}, {a['memory_bandwidth_bytes_per_s'] / 1e9:.2f} "
            f"| {sa['geomean']:.2f}, {sa['worst_factor']:.2f}x "
            f"| {loo_text} |"
        )
    disagree = [
        (row["model"], acc, a)
        for row in r["models"]
        if "error" not in row
        for acc, a in row["accelerators"].items()
        if not a["placement_agrees"] or a["vela_cpu_ops"]
    ]
    if disagree:
        lines += ["", "## Operator placement", ""]
        for model, acc, a in disagree:
            lines.append(
                f"- {model} on {acc}: Vela leaves {len(a['vela_cpu_ops'])} op(s) on the CPU "
                f"({', '.join(sorted(set(a['vela_cpu_ops']))) or '-'}; {'; '.join(a['vela_cpu_reasons'][:2]) or '-'}), "
                f"kseg {len(a['kseg_fallbacks'])} ({'; '.join(sorted(set(a['kseg_fallbacks']))[:2]) or '-'})"
            )
    lines += [
        "",
        "Worst factor: max(r, 1/r) over the models. Leave-one-out: the model's ratio after fitting "
        "on the other models only. Models with ops Vela leaves on the CPU are not used to fit "
        "(Vela's latency covers the NPU only).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
