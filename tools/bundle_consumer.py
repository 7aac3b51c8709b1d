"""Consumers kseg did not write, run on a bundle's golden files (each in its own small venv).

    python tools/bundle_consumer.py tflite_runtime BUNDLE [--runs N]   (numpy<2, tflite-runtime 2.14)
    python tools/bundle_consumer.py mediapipe BUNDLE [--runs N]        (mediapipe 1.2.3)
    python tools/bundle_consumer.py metadata BUNDLE                    (tflite-support 0.4.4)
    python tools/bundle_consumer.py arm64 BUNDLE      (ai-edge-litert 2.3.0 on aarch64, emulated)

Imports only numpy, OpenCV or Pillow and the consumer (never kseg), prints one JSON object on
stdout and exits 1 when the consumer disagrees with the golden files:

- tflite_runtime: the output tensor of every golden input vs ``NAME.output_builtin.npy`` (TFLite's
  builtin kernels, which tflite-runtime runs: equal for an integer output, within 1e-5 for a
  float one) and its mask (pixel agreement); the
  agreement with ``NAME.mask.png`` (LiteRT's XNNPACK path) is reported beside it;
- mediapipe: ``ImageSegmenter`` built from the model file alone (input size, normalization and
  labels come from its metadata), fed the golden input as an SRGB image; its confidence mask,
  thresholded as the README says, vs ``NAME.mask.png``; a multi-class bundle (K > 1 output
  channels) also asks for the category mask (class id per pixel), compared with
  ``NAME.category.png``, and passes on the lower of the two agreements;
- metadata: tflite-support's ``MetadataDisplayer`` reads the model's metadata and packed files;
  they must equal the bundle's ``metadata.json`` and ``labels.txt``;
- arm64: LiteRT's aarch64 wheel on an arm64 CPU (qemu-aarch64-static and the root made by
  tools/setup_arm64_env.sh, or a real arm64 board), both kernel families: the default path
  (XNNPACK) must reproduce ``NAME.output.npy`` exactly; the builtin kernels
  (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``) round differently on arm64 than on x86-64, so they are
  held to pixel agreement with ``NAME.mask.png`` (``--builtin-min-agreement``, or, on a sample
  where x86-64's own builtin kernels (``NAME.output_builtin.npy``) agree less with that mask, their
  agreement less ``ARM64_SLACK``) and their largest difference from both golden tensors is
  reported.

With ``--runs N`` the first sample is also timed N times (median ms of the consumer's call).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

#: largest difference allowed between float output tensors of two runs of the same kernels
FLOAT_TOLERANCE = 1e-5


#: pixel agreement with the golden masks that TFLite's builtin kernels must reach on arm64, where
#: they round int8 requantization differently from x86-64 (android_demo_assets: 0.9985 at worst)
ARM64_BUILTIN_MIN_AGREEMENT = 0.998

#: where x86-64's two kernel families already disagree on more pixels than that (a 3-class softmax
#: model with many near-tied pixels: output_builtin.npy against NAME.mask.png 0.9957 on usgra's
#: hardest sample), arm64 is held to x86-64's own builtin agreement less this slack: it rounds
#: differently again, but must not be further from the golden masks than that
ARM64_SLACK = 0.002

#: quantized ops LiteRT's XNNPACK delegate leaves to the builtin kernels (it takes SOFTMAX in float
#: only): a graph with one of them is not bit-exact across CPUs on the XNNPACK path either (a K=3
#: softmax model: 1 step on arm64), so there XNNPACK is held to the mask gate like the builtin path
XNNPACK_UNDELEGATED_QUANTIZED_OPS = frozenset({"SOFTMAX"})


def _read_mask(path: Path) -> np.ndarray:
    """The golden mask PNG as uint8 ``(H, W)`` (OpenCV where installed, else Pillow)."""
    try:
        import cv2
    except ImportError:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im)
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _golden(bundle: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    rows = []
    for f in sorted((bundle / "golden").glob("*.input.npy")):
        name = f.name[: -len(".input.npy")]
        mask = _read_mask(bundle / "golden" / f"{name}.mask.png")
        rows.append((name, np.load(f), np.load(bundle / "golden" / f"{name}.output.npy"), mask))
    if not rows:
        sys.exit(f"error: {bundle}/golden: no NAME.input.npy files")
    return rows


def _card(bundle: Path) -> dict:
    return json.loads((bundle / "model.json").read_text(encoding="utf-8"))


def _mask(conf: np.ndarray, threshold: float) -> np.ndarray:
    """0/255 for one channel (conf > threshold), else the class index scaled as kseg writes it."""
    if conf.shape[-1] == 1:
        return ((conf[..., 0] > threshold) * 255).astype(np.uint8)
    k = conf.shape[-1]
    return (conf.argmax(-1) * (255 // (k - 1))).astype(np.uint8)


def compare_output(
    y: np.ndarray,
    gold: np.ndarray,
    gold_mask: np.ndarray,
    scale: float,
    zero_point: int,
    threshold: float,
) -> dict:
    """One output tensor ``(1, H, W, K)`` against a golden tensor and a golden mask PNG.

    Returns ``max_diff`` (the largest element difference: quantization steps for an integer
    tensor), ``exact`` (equal, or within FLOAT_TOLERANCE for a float tensor) and
    ``pixel_agreement`` of its mask (K = 1: confidence > threshold as 0/255; K > 1: argmax as
    ``_mask`` scales it, the way kseg writes ``NAME.mask.png``) with ``gold_mask``.
    """
    if y.shape != gold.shape:
        raise ValueError(f"output shape {y.shape} differs from the golden {gold.shape}")
    tol = 0.0 if np.dtype(y.dtype).kind in "iu" else FLOAT_TOLERANCE
    diff = float(np.abs(y.astype(np.float64) - gold.astype(np.float64)).max())
    conf = (y.astype(np.float32) - zero_point) * scale if scale else y.astype(np.float32)
    mask = _mask(conf[0], threshold)
    if mask.shape != gold_mask.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the golden mask {gold_mask.shape}")
    return {
        "max_diff": diff,
        "exact": diff <= tol,
        "pixel_agreement": float((mask == gold_mask).mean()),
    }


def xnnpack_exact_expected(op_names: list[str], integer_output: bool) -> bool:
    """Whether LiteRT's XNNPACK path must reproduce ``output.npy`` bit for bit on another CPU:
    yes unless a quantized graph holds an op XNNPACK leaves to the builtin kernels."""
    return not (integer_output and XNNPACK_UNDELEGATED_QUANTIZED_OPS & set(op_names))


def sample_bar(row: dict, builtin_min_agreement: float) -> float:
    """The mask agreement a sample's non-exact paths must reach: ``builtin_min_agreement``, or
    x86-64's own builtin agreement with ``NAME.mask.png`` less ``ARM64_SLACK`` where that is
    lower (a bundle's golden files cannot ask more of arm64 than of the CPU that wrote them)."""
    x86 = row.get("x86_builtin_agreement", 1.0)
    return round(min(builtin_min_agreement, x86 - ARM64_SLACK), 4)


def arm64_problems(result: dict, builtin_min_agreement: float) -> list[str]:
    """Why an arm64 result (``check_arm64``) fails its gates: XNNPACK must reproduce
    ``output.npy`` on every sample (where ``result["xnnpack_exact_expected"]``; else it is held to
    the mask gate), the builtin kernels must agree with ``NAME.mask.png`` on at least
    ``sample_bar`` of the pixels of every sample."""
    problems = []
    exact = result.get("xnnpack_exact_expected", True)
    for r in result["samples"]:
        x, b = r["xnnpack"], r["builtin"]
        bar = sample_bar(r, builtin_min_agreement)
        if exact and not x["exact"]:
            problems.append(f"{r['name']}: XNNPACK differs from output.npy by {x['max_diff']:g}")
        for family, row in (("XNNPACK", x), ("builtin kernels", b)):
            if row["pixel_agreement"] < bar:
                problems.append(
                    f"{r['name']}: {family}' mask agreement {row['pixel_agreement']:.4f} < {bar}"
                )
    if not result["samples"]:
        problems.append("no golden samples")
    return problems


def arm64_summary(result: dict) -> str:
    """One line for the log: both kernel families against both golden tensors and the masks."""
    n = len(result["samples"])
    exact = sum(r["xnnpack"]["exact"] for r in result["samples"])
    return (
        f"{result['consumer']}, {result['machine']} ({result['cpu']}), K={result['channels']}: "
        f"XNNPACK reproduces output.npy {exact}/{n} (max {result['xnnpack_max_diff']:g} steps"
        + (
            ""
            if result.get("xnnpack_exact_expected", True)
            else f", not required: {'/'.join(sorted(XNNPACK_UNDELEGATED_QUANTIZED_OPS))} runs on "
            f"the builtin kernels; mask agreement >= {result['xnnpack_min_pixel_agreement']:.4f}"
        )
        + "); "
        f"builtin kernels differ from output_builtin.npy by up to "
        f"{result['builtin_max_diff_vs_output_builtin']:g} steps and from output.npy by up to "
        f"{result['builtin_max_diff_vs_output']:g}, mask agreement >= "
        f"{result['builtin_min_pixel_agreement']:.4f} (gate {lowest_bar(result)}"
        + (
            f"; x86-64's own builtin kernels: >= {x86:.4f}"
            if (x86 := result.get("x86_builtin_min_pixel_agreement")) is not None
            else ""
        )
        + ")"
    )


def lowest_bar(result: dict) -> float:
    """The lowest mask-agreement bar over a result's samples (``sample_bar``)."""
    gate = result["builtin_min_agreement"]
    return min((sample_bar(r, gate) for r in result["samples"]), default=gate)


def _median_ms(fn, runs: int) -> float | None:
    if runs <= 0:
        return None
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times))


def check_tflite_runtime(bundle: Path, runs: int) -> dict:
    import tflite_runtime
    from tflite_runtime.interpreter import Interpreter

    card = _card(bundle)
    it = Interpreter(model_path=str(bundle / "model.tflite"), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = out["quantization"]
    tol = 0.0 if np.dtype(out["dtype"]).kind in "iu" else FLOAT_TOLERANCE
    rows = []
    for name, x, gold_xnn, xnn_mask in _golden(bundle):
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"])
        # tflite-runtime runs TFLite's builtin kernels: output_builtin.npy is its golden tensor
        gold = np.load(bundle / "golden" / f"{name}.output_builtin.npy")
        thr = card["output"]["threshold"]

        def conf(t):
            return (t.astype(np.float32) - zp) * scale if scale else t.astype(np.float32)

        mask = _mask(conf(y)[0], thr)
        rows.append(
            {
                "name": name,
                "exact": bool(np.array_equal(y, gold)),
                # an integer tensor must be equal; float kernels may differ in the last bits
                "reproduced": bool(np.abs(y.astype(np.float64) - gold).max() <= tol),
                # integer tensors: differences in quantization steps
                "max_diff": float(np.abs(y.astype(np.float64) - gold).max()),
                "pixel_agreement": float((mask == _mask(conf(gold)[0], thr)).mean()),
                "max_diff_vs_xnnpack": float(np.abs(y.astype(np.float64) - gold_xnn).max()),
                "pixel_agreement_vs_xnnpack": float((mask == xnn_mask).mean()),
            }
        )
    x0 = _golden(bundle)[0][1]

    def call():
        it.set_tensor(inp["index"], x0)
        it.invoke()
        it.get_tensor(out["index"])

    return {
        "consumer": f"tflite-runtime {tflite_runtime.__version__}, numpy {np.__version__}",
        "samples": rows,
        "tolerance": tol,
        "all_reproduced": all(r["reproduced"] for r in rows),
        "min_pixel_agreement": min(r["pixel_agreement"] for r in rows),
        "min_pixel_agreement_vs_xnnpack": min(r["pixel_agreement_vs_xnnpack"] for r in rows),
        "latency_ms": _median_ms(call, runs),
    }


def check_mediapipe(bundle: Path, runs: int) -> dict:
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    card = _card(bundle)
    k = int(card["output"]["shape"][-1])
    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=str(bundle / "model.tflite")),
        running_mode=vision.RunningMode.IMAGE,
        output_confidence_masks=True,
        output_category_mask=k > 1,  # K classes: the class id per pixel, as an app reads it
    )
    labels = (bundle / "labels.txt").read_text(encoding="utf-8").split()
    rows = []
    with vision.ImageSegmenter.create_from_options(options) as seg:
        seen_labels = list(seg.labels)
        for name, x, _, gold_mask in _golden(bundle):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(x[0]))
            result = seg.segment(image)
            conf = np.stack(
                [m.numpy_view().reshape(x.shape[1:3]) for m in result.confidence_masks], -1
            )
            mask = _mask(conf, card["output"]["threshold"])
            row = {"name": name, "confidence_agreement": float((mask == gold_mask).mean())}
            row["pixel_agreement"] = row["confidence_agreement"]
            if k > 1:
                category = result.category_mask.numpy_view().reshape(x.shape[1:3])
                gold = cv2.imread(
                    str(bundle / "golden" / f"{name}.category.png"), cv2.IMREAD_UNCHANGED
                )
                row["category_agreement"] = float((category == gold).mean())
                row["category_classes"] = {
                    labels[c]: int((category == c).sum()) for c in range(min(k, len(labels)))
                }
                row["pixel_agreement"] = min(row["pixel_agreement"], row["category_agreement"])
            rows.append(row)
        first = mp.Image(
            image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(_golden(bundle)[0][1][0])
        )
        latency = _median_ms(lambda: seg.segment(first), runs)
    return {
        "consumer": f"mediapipe {mp.__version__} ImageSegmenter, numpy {np.__version__}",
        "labels_from_metadata": seen_labels,
        "labels_match": seen_labels == labels,
        "category_mask": k > 1,
        "samples": rows,
        "min_pixel_agreement": min(r["pixel_agreement"] for r in rows),
        "latency_ms": latency,
    }


def check_metadata(bundle: Path, runs: int) -> dict:
    from tflite_support import metadata

    d = metadata.MetadataDisplayer.with_model_file(str(bundle / "model.tflite"))
    md = json.loads(d.get_metadata_json())
    packed = d.get_packed_associated_file_list()
    recorded = json.loads((bundle / "metadata.json").read_text(encoding="utf-8"))
    labels_inside = d.get_associated_file_buffer("labels.txt") if "labels.txt" in packed else b""
    return {
        "consumer": "tflite-support MetadataDisplayer",
        "name": md.get("name"),
        "packed_files": packed,
        "matches_metadata_json": md == recorded["metadata"],
        "labels_match": labels_inside == (bundle / "labels.txt").read_bytes(),
        "input_normalization": md["subgraph_metadata"][0]["input_tensor_metadata"][0].get(
            "process_units"
        ),
    }


def check_arm64(bundle: Path, runs: int) -> dict:
    import os
    import platform
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if platform.machine() not in ("aarch64", "arm64"):
        sys.exit(f"error: the arm64 consumer runs on aarch64, this is {platform.machine()}")
    card = _card(bundle)
    thr = card["output"]["threshold"]
    kernels = {
        "xnnpack": {},
        "builtin": {
            "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        },
    }
    golden = _golden(bundle)
    rows = [{"name": name} for name, *_ in golden]
    gold_builtins = [np.load(bundle / "golden" / f"{r['name']}.output_builtin.npy") for r in rows]
    ops: list[str] = []
    for family, kw in kernels.items():
        it = Interpreter(model_path=str(bundle / "model.tflite"), num_threads=1, **kw)
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        if family == "builtin":  # without a delegate node: the graph's own ops
            ops = sorted({o["op_name"] for o in it._get_ops_details()})
        scale, zp = out["quantization"]
        for row, (_, x, gold_xnn, gold_mask), gold_builtin in zip(
            rows, golden, gold_builtins, strict=True
        ):
            it.set_tensor(inp["index"], x)
            it.invoke()
            y = it.get_tensor(out["index"])
            if family == "builtin":  # x86-64's builtin kernels against the XNNPACK golden mask:
                # how far the two kernel families already are apart on the CPU that wrote it
                row["x86_builtin_agreement"] = compare_output(
                    gold_builtin, gold_xnn, gold_mask, scale, zp, thr
                )["pixel_agreement"]
            row[family] = compare_output(y, gold_xnn, gold_mask, scale, zp, thr)
            row[family]["max_diff_vs_builtin_golden"] = compare_output(
                y, gold_builtin, gold_mask, scale, zp, thr
            )["max_diff"]
    return {
        "consumer": f"ai-edge-litert {version('ai-edge-litert')}, numpy {np.__version__}",
        "machine": platform.machine(),
        "cpu": os.environ.get("QEMU_CPU", "native"),
        "channels": int(golden[0][2].shape[-1]),
        "ops": ops,
        "xnnpack_exact_expected": xnnpack_exact_expected(ops, golden[0][2].dtype.kind in "iu"),
        "samples": rows,
        # differences in quantization steps for an integer output
        "xnnpack_all_exact": all(r["xnnpack"]["exact"] for r in rows),
        "xnnpack_max_diff": max(r["xnnpack"]["max_diff"] for r in rows),
        "builtin_max_diff_vs_output": max(r["builtin"]["max_diff"] for r in rows),
        "builtin_max_diff_vs_output_builtin": max(
            r["builtin"]["max_diff_vs_builtin_golden"] for r in rows
        ),
        "xnnpack_min_pixel_agreement": min(r["xnnpack"]["pixel_agreement"] for r in rows),
        "builtin_min_pixel_agreement": min(r["builtin"]["pixel_agreement"] for r in rows),
        "x86_builtin_min_pixel_agreement": min(r["x86_builtin_agreement"] for r in rows),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("consumer", choices=["tflite_runtime", "mediapipe", "metadata", "arm64"])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--min-agreement", type=float, default=0.999)
    ap.add_argument(
        "--builtin-min-agreement",
        type=float,
        default=ARM64_BUILTIN_MIN_AGREEMENT,
        help="arm64: pixel agreement of the builtin kernels' masks with NAME.mask.png",
    )
    args = ap.parse_args(argv)
    if not (args.bundle / "model.tflite").is_file():
        sys.exit(f"error: {args.bundle}: no model.tflite (not a kseg bundle)")
    check = {
        "tflite_runtime": check_tflite_runtime,
        "mediapipe": check_mediapipe,
        "metadata": check_metadata,
        "arm64": check_arm64,
    }[args.consumer]
    result = check(args.bundle, args.runs)
    if args.consumer == "metadata":
        ok = result["matches_metadata_json"] and result["labels_match"]
    elif args.consumer == "arm64":
        result["builtin_min_agreement"] = args.builtin_min_agreement
        result["problems"] = arm64_problems(result, args.builtin_min_agreement)
        result["mask_bar"] = lowest_bar(result)
        result["summary"] = arm64_summary(result)
        ok = not result["problems"]
    else:
        ok = result["min_pixel_agreement"] >= args.min_agreement
        if args.consumer == "tflite_runtime":
            ok = ok and result["all_reproduced"]
        if args.consumer == "mediapipe":
            ok = ok and result["labels_match"]
    result["passed"] = bool(ok)
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
