"""Arm64 kernels vs a bundle's golden files, and what the arm64 check costs.

    python tools/bench_arm64.py [BUNDLE ...] [--no-toys] [--out docs/benchmarks/arm64]

Runs ``tools/bundle_consumer_check.sh`` with only its arm64 consumer (LiteRT's aarch64 wheel under
qemu-aarch64-static, CPUs from KSEG_ARM64_CPUS) on each bundle (default: every bundle under
android_demo_assets/) and, unless --no-toys, on three toy bundle folders made here: one 64 px int8
model with a 3-channel head whose activation is softmax, sigmoid or linear (golden files from
LiteRT on this x86-64 machine, as ``kseg export android`` writes them). It times the set-up
(``tools/setup_arm64_env.sh``: made or reused) and each check, and writes ``OUT.json`` and
``OUT.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def toy_bundle(out: Path, activation: str, seed: int = 3) -> Path:
    """A bundle-like folder: model.tflite (uint8 RGB in, 3 channels out), model.json with the
    threshold, golden/ with XNNPACK and builtin outputs and masks, as kseg export android writes."""
    import cv2
    import tensorflow as tf

    from kseg.inference.segment import mask_to_png, prob_to_mask
    from kseg.runtime import TFLiteModel

    (out / "golden").mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((64, 64, 3))
    x = tf.keras.layers.Rescaling(1 / 255.0)(inp)
    for f in (16, 32, 32, 16):
        x = tf.keras.layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    model = tf.keras.Model(inp, tf.keras.layers.Conv2D(3, 1, activation=activation)(x))
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(20):
            yield [rng.integers(0, 256, (1, 64, 64, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.uint8
    (out / "model.tflite").write_bytes(conv.convert())
    xnn = TFLiteModel(out / "model.tflite", runtime="litert")
    builtin = TFLiteModel(out / "model.tflite", runtime="litert", delegate="none")
    (out / "model.json").write_text(json.dumps({"output": {"threshold": 0.5}}))  # after: no card
    for i in range(3):
        img = cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8), (9, 9), 3)
        y = xnn.invoke_raw(img[None])
        prob = (y.astype(np.float32) - xnn.output_zero_point) * xnn.output_scale
        np.save(out / "golden" / f"s{i}.input.npy", img[None])
        np.save(out / "golden" / f"s{i}.output.npy", y)
        np.save(out / "golden" / f"s{i}.output_builtin.npy", builtin.invoke_raw(img[None]))
        cv2.imwrite(str(out / "golden" / f"s{i}.mask.png"), mask_to_png(prob_to_mask(prob[0]), 3))
    return out


def check(bundle: Path, logs: Path) -> dict:
    for f in logs.glob("kseg-bundle-arm64-*.json"):
        f.unlink()
    env = {**os.environ, "KSEG_BUNDLE_CONSUMERS": "arm64", "TMPDIR": str(logs)}
    t0 = time.perf_counter()
    p = subprocess.run(
        ["bash", str(REPO / "tools" / "bundle_consumer_check.sh"), str(bundle)],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    print(p.stdout.strip(), file=sys.stderr)
    results = [json.loads(f.read_text()) for f in sorted(logs.glob("kseg-bundle-arm64-*.json"))]
    reuse = re.search(r"\(set-up (\d+) s\)", p.stdout)
    return {
        "passed": p.returncode == 0,
        "check_seconds": round(seconds, 1),
        "setup_reused_seconds": int(reuse.group(1)) if reuse else None,
        "results": results,
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="*", type=Path)
    ap.add_argument("--no-toys", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "arm64")
    args = ap.parse_args(argv)
    bundles = args.bundles or sorted(
        p.parent for p in (REPO / "android_demo_assets").rglob("model.tflite")
    )
    root = Path(os.environ.get("KSEG_ARM64_ROOT", "/tmp/kseg-arm64-root"))
    existed = (root / "usr" / "bin" / "python3.11").exists()
    t0 = time.perf_counter()
    p = subprocess.run(
        ["bash", str(REPO / "tools" / "setup_arm64_env.sh")], capture_output=True, text=True
    )
    setup = {
        "made": not existed,
        "seconds": round(time.perf_counter() - t0, 1),
        "exit": p.returncode,
        "note": p.stdout.strip(),
    }
    print(f"[arm64] set-up {setup}", file=sys.stderr)
    if p.returncode != 0:
        sys.exit(f"error: arm64 set-up: {p.stdout.strip() or p.stderr.strip()[-300:]}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kseg-bench-arm64-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        named = [(os.path.relpath(b.resolve(), REPO), b) for b in bundles]
        if not args.no_toys:
            named += [
                (f"toy K=3 {act}", toy_bundle(Path(tmp) / act, act))
                for act in ("softmax", "sigmoid", "linear")
            ]
        for name, bundle in named:
            rows.append({"bundle": name, **check(bundle, logs)})
    load = os.getloadavg()[0]
    report = {"setup": setup, "load_average_1min_end": round(load, 1), "bundles": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"arm64 set-up: {'made' if setup['made'] else 'reused'} in {setup['seconds']} s; "
        f"load average {load:.1f} at the end",
        "",
        "| bundle | K | CPU (qemu) | XNNPACK vs output.npy | builtin vs output_builtin.npy | "
        "builtin vs output.npy | builtin mask agreement | passed | check s (set-up reused s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for r in row["results"]:
            n = len(r["samples"])
            exact = sum(s["xnnpack"]["exact"] for s in r["samples"])
            lines.append(
                f"| {row['bundle']} | {r['channels']} | {r['cpu']} | {exact}/{n} exact "
                f"(max {r['xnnpack_max_diff']:g} steps) | max {r['builtin_max_diff_vs_output_builtin']:g}"
                f" | max {r['builtin_max_diff_vs_output']:g} | {r['builtin_min_pixel_agreement']:.4f} "
                f"| {r['passed']} | {row['check_seconds']} ({row['setup_reused_seconds']}) |"
            )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
