"""Benchmark the Android bundle (``kseg export android``) against the plain ``kseg convert --int8``.

For each architecture (default ``unet``, ``attention_unet``, ``mobile_unet``; untrained, seed 0,
at ``--size`` px, gray input, calibrated and checked on synthetic ultrasound; latency does not
depend on the weights) and for the committed, trained ``android_demo_assets/hc18/``:

1. bundle size (all files) and export time (conversion, parity, metadata, golden files);
2. LiteRT latency at 1 thread of the bundle model (uint8 RGB in, RGB->gray in the graph, uint8
   out) against the plain INT8 file (int8 gray in/out): interleaved rounds, median p50 each, and
   their ratio (target <= 1.05);
3. MediaPipe Tasks ``ImageSegmenter.segment()`` median latency on the same image (the task API's
   overhead: image conversion, tensors, confidence masks), beside tflite-runtime's median
   set_tensor + invoke + get_tensor, both in their own venvs (tools/setup_deploy_env.sh);
4. pixel agreement of MediaPipe's and tflite-runtime's masks with the golden masks (>= 0.999).

An untrained model keeps many confidences near the threshold, which makes agreement harder to
reach than on a trained one. Export time is measured on a shared machine (state the load).

Usage:
    python tools/bench_deploy.py [--out runs/bench/deploy] [--size 256] [--models unet,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kseg.atomic import write_json, write_text  # noqa: E402
from kseg.bench.latency import machine_info, measure  # noqa: E402

VENVS = {
    "tflite_runtime": os.environ.get("KSEG_EDGE_VENV", "/tmp/kseg-edge-venv"),
    "mediapipe": os.environ.get("KSEG_MEDIAPIPE_VENV", "/tmp/kseg-mediapipe-venv"),
}


def consumer(kind: str, bundle: Path, runs: int) -> dict:
    py = Path(VENVS[kind]) / "bin" / "python"
    proc = subprocess.run(
        [
            str(py),
            str(REPO / "tools" / "bundle_consumer.py"),
            kind,
            str(bundle.resolve()),
            "--runs",
            str(runs),
        ],
        capture_output=True,
        text=True,
        cwd="/tmp",
        check=False,
    )
    if not proc.stdout.strip():
        raise SystemExit(f"{kind} on {bundle} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def latency_pair(bundle_model: Path, plain: Path, rounds: int, runs: int) -> dict:
    a, b = [], []
    for _ in range(rounds):
        a.append(
            measure(bundle_model, threads=1, runs=runs, warmup=3, runtime="litert")["latency_ms"][
                "p50"
            ]
        )
        b.append(
            measure(plain, threads=1, runs=runs, warmup=3, runtime="litert")["latency_ms"]["p50"]
        )
    ba, pl = statistics.median(a), statistics.median(b)
    return {
        "bundle_p50_ms": ba,
        "plain_int8_p50_ms": pl,
        "ratio": ba / pl,
        "rounds": rounds,
        "runs": runs,
    }


def bench_model(name: str, size: int, work: Path, args) -> dict:
    from kseg._keras import keras
    from kseg.deploy import export_android
    from kseg.export import export_tflite
    from kseg.models import create_model

    model_path = work / f"{name}.keras"
    data = f"synthetic:ultrasound:{args.data_n}"
    out = work / f"{name}_bundle"
    plain = work / f"{name}.int8.tflite"
    timing = work / f"{name}.timing.json"
    if args.reuse and (out / "manifest.json").is_file() and plain.is_file():
        # a finished earlier run of the same settings: its export times, from its files
        card = json.loads((out / "model.json").read_text())
        t = json.loads(timing.read_text()) if timing.is_file() else {}
        export_s = t.get("export_s", card["bundle"]["export_seconds"])
        convert_s = t.get("plain_convert_s")
    else:
        keras.utils.set_random_seed(0)
        create_model(name, input_shape=(size, size, 1)).save(model_path)
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        export_android(
            model_path, out, data=data, samples=args.samples, bench_runs=0, max_dice_drop=-1
        )
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_tflite(model_path, "int8", data=data, out=plain, max_dice_drop=-1)
        convert_s = time.perf_counter() - t0
        write_json(timing, {"export_s": export_s, "plain_convert_s": convert_s})
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    nbytes = sum(f["size_bytes"] for f in manifest.values())
    return row(name, size, out, plain, nbytes, export_s, convert_s, args, trained=False)


def row(name, size, bundle, plain, nbytes, export_s, convert_s, args, *, trained) -> dict:
    card = json.loads((bundle / "model.json").read_text())
    lat = latency_pair(bundle / "model.tflite", plain, args.rounds, args.runs) if plain else None
    tr = consumer("tflite_runtime", bundle, args.runs)
    mp = consumer("mediapipe", bundle, args.runs)
    r = {
        "model": name,
        "size": size,
        "trained": trained,
        "bundle_bytes": nbytes,
        "model_bytes": card["size_bytes"],
        "export_s": export_s,
        "plain_convert_s": convert_s,
        "litert": lat,
        "tflite_runtime": {
            "latency_ms": tr["latency_ms"],
            "min_pixel_agreement": tr["min_pixel_agreement"],
            "exact_outputs": sum(s["exact"] for s in tr["samples"]),
            "reproduced": tr["all_reproduced"],
            "max_diff_steps": max(s["max_diff"] for s in tr["samples"]),
            "min_pixel_agreement_vs_xnnpack": tr["min_pixel_agreement_vs_xnnpack"],
            "max_diff_steps_vs_xnnpack": max(s["max_diff_vs_xnnpack"] for s in tr["samples"]),
            "samples": len(tr["samples"]),
            "consumer": tr["consumer"],
        },
        "mediapipe": {
            "segment_ms": mp["latency_ms"],
            "min_pixel_agreement": mp["min_pixel_agreement"],
            "labels_match": mp["labels_match"],
            "consumer": mp["consumer"],
        },
    }
    r["mediapipe"]["overhead_vs_tflite_runtime"] = (
        mp["latency_ms"] / tr["latency_ms"] if tr["latency_ms"] else None
    )
    print(json.dumps(r), flush=True)
    return r


def demo_row(args, work: Path) -> dict | None:
    assets = REPO / "android_demo_assets" / "hc18"
    if not (assets / "model.tflite").is_file():
        return None
    card = json.loads((assets / "model.json").read_text())
    manifest = json.loads((assets / "manifest.json").read_text())["files"]
    return row(
        "android_demo_assets (mobile_unet, HC18-trained)",
        card["input"]["shape"][1],
        assets,
        None,
        sum(f["size_bytes"] for f in manifest.values()),
        card["bundle"]["export_seconds"],
        None,
        args,
        trained=True,
    )


def to_markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Android bundle benchmark (`tools/bench_deploy.py`)",
        "",
        f"Machine: {m.get('cpu')} ({m.get('cpu_count')} cores, shared), load average at start "
        f"{report['load_start']}. Models untrained (seed 0) at {report['size']} px, gray input, "
        f"calibrated on synthetic ultrasound ({report['data_n']} images); {report['samples']} golden "
        f"samples each. LiteRT: 1 thread, {report['rounds']} interleaved rounds x {report['runs']} runs, "
        "median p50. MediaPipe `segment()` and tflite-runtime (set_tensor+invoke+get_tensor): "
        f"median of {report['runs']} calls in their own venvs.",
        "",
        "| model | px | bundle KiB | model KiB | export s | plain convert s | bundle ms | plain int8 ms | ratio | tflite-runtime ms | MediaPipe segment ms | MP / LiteRT bundle | MediaPipe vs golden | tflite-runtime vs builtin golden | tflite-runtime vs XNNPACK golden |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v, nd=2):
        return "-" if v is None else f"{v:.{nd}f}"

    for r in report["rows"]:
        lat = r["litert"] or {}
        tr, mp = r["tflite_runtime"], r["mediapipe"]
        lines.append(
            f"| {r['model']} | {r['size']} | {r['bundle_bytes'] / 1024:.0f} | {r['model_bytes'] / 1024:.0f} | "
            f"{f(r['export_s'], 1)} | {f(r['plain_convert_s'], 1)} | {f(lat.get('bundle_p50_ms'))} | "
            f"{f(lat.get('plain_int8_p50_ms'))} | {f(lat.get('ratio'), 3)} | {f(tr['latency_ms'])} | "
            f"{f(mp['segment_ms'])} | "
            f"{f(mp['segment_ms'] / lat['bundle_p50_ms'] if lat else None)} | "
            f"{mp['min_pixel_agreement']:.4f} | {tr['min_pixel_agreement']:.4f} "
            f"({tr['exact_outputs']}/{tr['samples']} exact) | "
            f"{tr['min_pixel_agreement_vs_xnnpack']:.4f} (max {tr['max_diff_steps_vs_xnnpack']:.0f} steps) |"
        )
    lines += [
        "",
        "ratio = bundle / plain INT8 LiteRT p50 (target <= 1.05: the uint8 RGB input, the in-graph "
        "RGB->gray 1x1 convolution and the uint8 output cost at most 5 %). Agreement = the worst "
        "sample's share of mask pixels equal to the golden mask (target >= 0.999). MediaPipe and "
        "LiteRT's default path run XNNPACK (golden/NAME.output.npy); tflite-runtime 2.14 runs "
        "TFLite's builtin kernels (golden/NAME.output_builtin.npy, reproduced exactly); the last "
        "column compares the two kernel families (int8 requantization rounding differs by one step "
        "on some elements and grows over the network). MP / LiteRT bundle compares MediaPipe's "
        "`segment()` (image conversion, inference, confidence masks; MediaPipe's own thread "
        "settings) with LiteRT's bare invoke of the same file at 1 thread; both use XNNPACK but "
        "run in different processes at different moments of a loaded machine.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "deploy")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--models", default="unet,attention_unet,mobile_unet")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--data-n", type=int, default=24)
    ap.add_argument("--no-demo", action="store_true")
    ap.add_argument(
        "--reuse", action="store_true", help="keep bundles and INT8 files already in OUT/work"
    )
    ap.add_argument("--markdown-from", type=Path, help="only rewrite deploy.md from this JSON")
    args = ap.parse_args(argv)
    if args.markdown_from:
        write_text(args.out / "deploy.md", to_markdown(json.loads(args.markdown_from.read_text())))
        return 0
    subprocess.run(["bash", str(REPO / "tools" / "setup_deploy_env.sh")], check=True)
    args.out = args.out.resolve()
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    report = {
        "format": "kseg-bench-deploy/1",
        "machine": machine_info(),
        "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "size": args.size,
        "data_n": args.data_n,
        "samples": args.samples,
        "rounds": args.rounds,
        "runs": args.runs,
        "rows": [],
    }
    for name in [m for m in args.models.split(",") if m]:
        report["rows"].append(bench_model(name, args.size, work, args))
    if not args.no_demo:
        demo = demo_row(args, work)
        if demo:
            report["rows"].append(demo)
    write_json(args.out / "deploy.json", report)
    write_text(args.out / "deploy.md", to_markdown(report))
    print(f"wrote {args.out}/deploy.json and deploy.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
