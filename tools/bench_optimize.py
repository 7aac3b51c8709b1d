"""Benchmark of kseg.optimize: PTQ vs QAT INT8, pruning + INT8 size, distillation.

For each data set (synthetic ultrasound, ../shared/data/hc18) and model (unet, attention_unet):
train a float model, then measure on the validation split

- full-integer PTQ INT8: Dice drop vs the float Keras model (target <= 0.02), size vs float32
  .tflite (target <= 0.27x);
- QAT INT8: Dice drop (target <= 0.005);
- 50 % pruning + pruning-preserving QAT + INT8: gzip size vs the unpruned INT8 gzip size
  (target <= 0.6x), sparsity in the stripped model and in the INT8 file;
- distillation (teacher = the first model): mobile_unet student (<= 0.5 M params) within 0.02
  Dice of the teacher and better than the same student trained alone with the same budget
  (epochs, steps, learning-rate schedule, augmentation, seed and initial weights). On synthetic
  data the distilled student also sees unlabeled generator images that the teacher labels (a
  transfer set, ``kseg optimize distill --unlabeled``); HC18 has no images beyond its labeled
  ones, so there it has none.

Writes OUT/bench_optimize.json after every measurement (partial results survive) and
OUT/bench_optimize.md at the end.

    python tools/bench_optimize.py --datasets synthetic,hc18 --models unet,attention_unet --out bench_results/optimize
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGETS = {
    "ptq_drop": 0.02,
    "qat_drop": 0.005,
    "int8_size_ratio": 0.27,
    "pruned_gzip_ratio": 0.6,
    "distill_gap": 0.02,
    "student_params": 500_000,
}


EXTRA_VAL_SEED_OFFSET = 20_011  # extra synthetic validation images: their own stream


def load(dataset: str, size: int, n_synth: int, seed: int, extra_val: int = 0) -> tuple[Any, str]:
    """FitData for ``dataset`` at ``size``; synthetic data can get ``extra_val`` more validation
    images (another generator stream, never trained on) to shrink the standard errors."""
    from kseg.config import from_dict
    from kseg.data.pipeline import load_splits
    from kseg.data.synthetic import synthesize
    from kseg.optimize._train import FitData

    if dataset == "synthetic":
        raw = {
            "path": None,
            "synthetic_kind": "ultrasound",
            "synthetic_n": n_synth,
            "img_size": size,
        }
        desc = f"synthetic ultrasound n={n_synth}"
    else:
        path = REPO.parent / "shared" / "data" / "hc18"
        raw = {"path": str(path), "img_size": size}
        desc = f"HC18 ({path})"
    cfg = from_dict({"data": raw}).data
    data = FitData.from_splits(load_splits(cfg, seed=seed, progress=False))
    if dataset == "synthetic" and extra_val > 0:
        extra = synthesize("ultrasound", extra_val, size, seed + EXTRA_VAL_SEED_OFFSET)
        data = FitData(
            data.x_train,
            data.y_train,
            np.concatenate([data.x_val, extra.images]),
            np.concatenate([data.y_val, extra.masks[..., None]]),
        )
        desc += f" + {extra_val} validation-only images"
    return data, f"{desc} at {size}x{size}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="synthetic,hc18")
    ap.add_argument("--models", default="unet,attention_unet")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--prune-epochs", type=int, default=4)
    ap.add_argument("--distill-epochs", type=int, default=60)
    ap.add_argument(
        "--student-options",
        default="depth=3,width=2.75",
        help="mobile_unet options KEY=VALUE,... (default: 3 levels and width 2.5 for 64 px "
        "inputs, 0.44 M parameters; the zoo default is built for 256 px)",
    )
    ap.add_argument("--distill-alpha", type=float, default=0.1, help="weight of the task loss")
    ap.add_argument("--distill-temperature", type=float, default=2.0)
    ap.add_argument("--distill-lr-schedule", default="cosine", choices=["constant", "cosine"])
    ap.add_argument("--no-distill-augment", action="store_true")
    ap.add_argument(
        "--unlabeled-synthetic",
        type=int,
        default=2880,
        help="unlabeled generator images for the distilled student on synthetic data (0: none)",
    )
    ap.add_argument("--n-synthetic", type=int, default=240)
    ap.add_argument(
        "--synthetic-extra-val",
        type=int,
        default=432,
        help="more synthetic validation images (not trained on): 48 + 432 = 480 in all",
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--skip-distill", action="store_true")
    ap.add_argument(
        "--gzip-sweep",
        default="0.6,0.7",
        help="extra sparsities for the gzip-vs-sparsity curve (first model per data set)",
    )
    ap.add_argument("--clusters", type=int, default=16, help="clusters for pruned + clustered INT8")
    ap.add_argument(
        "--reuse",
        type=Path,
        help="an earlier bench_optimize.json: its distillation rows and gzip sweeps are kept where "
        "this run does not measure them (--skip-distill, --gzip-sweep '')",
    )
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "optimize")
    args = ap.parse_args()

    from kseg._cli import parse_key_values
    from kseg._keras import keras
    from kseg.atomic import write_json, write_text
    from kseg.models import create_model
    from kseg.optimize import cluster, prune, qat
    from kseg.optimize._convert import (
        convert_float,
        convert_int8,
        float_ops,
        gzip_size,
        tflite_predict,
        tflite_weight_entropy,
        tflite_weight_sparsity,
    )
    from kseg.optimize._train import dice_iou, fit, predict, steps_per_epoch
    from kseg.optimize.distill import distill_with_baseline
    from kseg.optimize.steps import load_unlabeled

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "settings": vars(args) | {"out": str(out)},
        "targets": TARGETS,
        "runs": [],
    }

    def save() -> None:
        write_json(out / "bench_optimize.json", results)

    def tfl_scores(flat: bytes, data: Any) -> dict[str, Any]:
        return dice_iou(tflite_predict(flat, data.x_val), data.y_val)

    def tfl_dice(flat: bytes, data: Any) -> float:
        return tfl_scores(flat, data)["dice"]

    def drop_vs(reference: dict[str, Any], flat: bytes, data: Any) -> dict[str, Any]:
        """Dice of ``flat`` and its drop against ``reference`` with the paired standard error
        (per-image Dice differences on the same validation images), so a drop can be told from
        noise."""
        scores = tfl_scores(flat, data)
        diff = np.asarray(reference["per_image_dice"]) - np.asarray(scores["per_image_dice"])
        return {
            "dice": scores["dice"],
            "drop": reference["dice"] - scores["dice"],
            "drop_se": float(diff.std(ddof=1) / np.sqrt(len(diff))),
        }

    def pruned_int8(model: Any, sparsity: float, *, clustered: bool = False) -> dict[str, Any]:
        """Prune to ``sparsity``, strip, pruning-preserving QAT, INT8; sizes and Dice.

        With ``clustered`` also: the stripped pruned model -> sparsity-preserving clustering
        (``--clusters``, 3 epochs) -> strip -> full-integer PTQ INT8."""
        total = args.prune_epochs * steps_per_epoch(data, args.batch_size)
        wrapped, plan = prune.prune_model(model, sparsity, total_steps=total)
        fit(
            wrapped,
            data,
            epochs=args.prune_epochs,
            batch_size=args.batch_size,
            learning_rate=1e-4,
            callbacks=prune.pruning_callbacks(),
            seed=args.seed,
        )
        stripped = prune.strip(wrapped)
        rep = prune.sparsity_report(stripped, plan)
        pq, _ = qat.quantize_model(stripped, scheme="prune_preserve", calibration=calib)
        fit(
            pq,
            data,
            epochs=args.qat_epochs,
            batch_size=args.batch_size,
            learning_rate=1e-4,
            seed=args.seed,
        )
        pflat = convert_int8(pq, calib)
        result = {
            "target": sparsity,
            "sparsity_pruned_layers": rep["overall_pruned"],
            "sparsity_all_kernels": rep["overall"],
            "int8_sparsity": tflite_weight_sparsity(pflat)["overall"],
            "weight_entropy": tflite_weight_entropy(pflat),
            "float_dice": dice_iou(predict(stripped, data.x_val), data.y_val)["dice"],
            "int8_dice": tfl_dice(pflat, data),
            "bytes": len(pflat),
            "gzip": gzip_size(pflat),
        }
        if clustered:
            wrapped_c, plan_c = cluster.cluster_model(stripped, args.clusters)
            fit(
                wrapped_c,
                data,
                epochs=3,
                batch_size=args.batch_size,
                learning_rate=1e-4,
                seed=args.seed,
            )
            clustered_model = cluster.strip(wrapped_c)
            cflat = convert_int8(clustered_model, calib)
            result["clustered"] = {
                "clusters": args.clusters,
                "max_unique": cluster.cluster_report(clustered_model, plan_c)["max_unique"],
                "int8_sparsity": tflite_weight_sparsity(cflat)["overall"],
                "float_dice": dice_iou(predict(clustered_model, data.x_val), data.y_val)["dice"],
                "int8_dice": tfl_dice(cflat, data),
                "bytes": len(cflat),
                "gzip": gzip_size(cflat),
            }
        return result

    student_options = parse_key_values(
        tuple(kv for kv in args.student_options.split(",") if kv),
        flag="--student-options",
        example="depth=3,width=2.5",
    )
    for dataset in args.datasets.split(","):
        data, desc = load(dataset, args.size, args.n_synthetic, args.seed, args.synthetic_extra_val)
        rng = np.random.default_rng(args.seed)
        calib = data.x_train[np.sort(rng.permutation(len(data.x_train))[:64])]
        teacher = None
        for name in args.models.split(","):
            run: dict[str, Any] = {
                "dataset": dataset,
                "data": desc,
                "model": name,
                **data.describe(),
            }
            results["runs"].append(run)
            t0 = time.time()

            def build(name: str = name) -> Any:
                return create_model(
                    name,
                    input_shape=(args.size, args.size, 1),
                    depth=args.depth,
                    filters=args.filters,
                )

            keras.utils.set_random_seed(args.seed)  # the initial weights too
            model = build()
            fit(
                model,
                data,
                epochs=args.epochs,
                batch_size=args.batch_size,
                learning_rate=1e-3,
                seed=args.seed,
            )
            # The float reference gets the same low-learning-rate epochs as QAT (from the same
            # weights), so the QAT drop measures quantization, not extra training.
            before_finetune = model.get_weights()
            fit(
                model,
                data,
                epochs=args.qat_epochs,
                batch_size=args.batch_size,
                learning_rate=1e-4,
                seed=args.seed,
            )
            run["params"] = int(model.count_params())
            float_scores = dice_iou(predict(model, data.x_val), data.y_val)
            run["float_dice"] = float_scores["dice"]
            f32 = convert_float(model)
            run["float32_tflite_bytes"] = len(f32)
            run["train_seconds"] = round(time.time() - t0, 1)
            save()
            # full-integer PTQ
            ptq = convert_int8(model, calib)
            run["ptq"] = {
                **drop_vs(float_scores, ptq, data),
                "bytes": len(ptq),
                "gzip": gzip_size(ptq),
                "float_ops": len(float_ops(ptq)),
            }
            run["ptq"]["size_ratio"] = len(ptq) / len(f32)
            save()
            # QAT
            qat_start = build()
            qat_start.set_weights(before_finetune)
            q, report = qat.quantize_model(qat_start, calibration=calib)
            fit(
                q,
                data,
                epochs=args.qat_epochs,
                batch_size=args.batch_size,
                learning_rate=1e-4,
                seed=args.seed,
            )
            qflat = convert_int8(q, calib)
            run["qat"] = {
                **drop_vs(float_scores, qflat, data),
                "keras_dice": dice_iou(predict(q, data.x_val), data.y_val)["dice"],
                "bytes": len(qflat),
                "gzip": gzip_size(qflat),
                "float_ops": len(float_ops(qflat)),
                "left_float": report.left_float,
                "weight_entropy": tflite_weight_entropy(qflat),
            }
            run["qat"]["size_ratio"] = len(qflat) / len(f32)
            save()
            # 50 % pruning -> pruning-preserving QAT -> INT8
            run["pruned"] = pruned_int8(model, 0.5, clustered=args.clusters > 0)
            if teacher is None:  # gzip ratio against sparsity, first model of each data set
                run["gzip_sweep"] = {}
                for sp in [float(v) for v in args.gzip_sweep.split(",") if v]:
                    r = pruned_int8(model, sp)
                    r["gzip_ratio_vs_int8"] = r["gzip"] / run["qat"]["gzip"]
                    run["gzip_sweep"][f"{sp:.2f}"] = r
                    save()
            run["pruned"]["gzip_ratio_vs_int8"] = run["pruned"]["gzip"] / run["qat"]["gzip"]
            if "clustered" in run["pruned"]:
                c = run["pruned"]["clustered"]
                c["gzip_ratio_vs_int8"] = c["gzip"] / run["qat"]["gzip"]
            run["seconds"] = round(time.time() - t0, 1)
            save()
            if teacher is None:
                teacher = model
        if args.skip_distill or teacher is None:
            continue
        t0 = time.time()

        def make_student() -> Any:
            return create_model(
                "mobile_unet", input_shape=(args.size, args.size, 1), **student_options
            )

        unlabeled, unlabeled_text = None, "none"
        if dataset == "synthetic" and args.unlabeled_synthetic > 0:
            unlabeled, unlabeled_text = load_unlabeled(
                f"synthetic:ultrasound:{args.unlabeled_synthetic}",
                args.size,
                1,
                seed=args.seed,
                progress=False,
            )
        res = distill_with_baseline(
            teacher,
            make_student,
            data,
            epochs=args.distill_epochs,
            batch_size=args.batch_size,
            learning_rate=1e-3,
            lr_schedule=args.distill_lr_schedule,
            augment=not args.no_distill_augment,
            unlabeled=unlabeled,
            seed=args.seed,
            alpha=args.distill_alpha,
            temperature=args.distill_temperature,
        )
        m = res["metrics"]
        results.setdefault("distill", []).append(
            {
                "dataset": dataset,
                "teacher": teacher.name,
                "student": "mobile_unet",
                "student_options": student_options,
                "unlabeled": unlabeled_text,
                "params": res["params"],
                "teacher_dice": m["teacher"]["dice"],
                "student_dice": m["student"]["dice"],
                "alone_dice": m["baseline"]["dice"],
                "gap_to_teacher": m["teacher_minus_student_dice"],
                "gain_over_alone": m["student_minus_baseline_dice"],
                "seconds": round(time.time() - t0, 1),
            }
        )
        save()
    if args.reuse and args.reuse.is_file():
        old = json.loads(args.reuse.read_text())
        note = f"carried over from {args.reuse.name} (settings {old.get('settings', {})})"
        if not results.get("distill") and old.get("distill"):
            results["distill"] = old["distill"]
            results["distill_source"] = old.get("distill_source", note)  # where they were measured
        for run in results["runs"]:
            prev = next(
                (
                    r
                    for r in old.get("runs", [])
                    if (r["dataset"], r["model"]) == (run["dataset"], run["model"])
                    and r.get("gzip_sweep")
                ),
                None,
            )
            if prev and not run.get("gzip_sweep") and "pruned" in run:
                run["gzip_sweep"] = prev["gzip_sweep"]
                run["gzip_sweep_base"] = prev.get("gzip_sweep_base", prev["pruned"])
                results["gzip_sweep_source"] = old.get("gzip_sweep_source", note)
    save()
    write_text(out / "bench_optimize.md", render(results))
    print(f"wrote {out / 'bench_optimize.json'} and {out / 'bench_optimize.md'}")


def _floor(run: dict[str, Any]) -> str:
    pruned = run["pruned"].get("weight_entropy")
    dense = run["qat"].get("weight_entropy")
    if not pruned or not dense:
        return "n/a"
    return (
        f"{pruned['ideal_bytes'] / dense['ideal_bytes']:.3f} "
        f"({pruned['bits_per_weight']:.2f} vs {dense['bits_per_weight']:.2f} bits/weight)"
    )


def _opts(options: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (options or {}).items()) or "defaults"


def _ok(value: float, target: float) -> str:
    return "yes" if value <= target else "**no**"


def _se(entry: dict[str, Any]) -> str:
    return f" ± {entry['drop_se']:.4f}" if "drop_se" in entry else ""


def render(results: dict[str, Any]) -> str:
    t = results["targets"]
    s = results["settings"]
    lines = [
        "# kseg optimize benchmark",
        "",
        f"Input {s['size']}x{s['size']}, depth {s['depth']}, filters {s['filters']}; float training {s['epochs']} epochs "
        f"at 1e-3, then {s['qat_epochs']} epochs at 1e-4 for the float reference and, from the same "
        f"weights, {s['qat_epochs']} QAT epochs at 1e-4 (activation ranges calibrated on 64 training "
        f"images first); pruning {s['prune_epochs']} epochs. Dice = mean per-image Dice on the "
        f"validation split; seed {s['seed']} (initial weights included).",
        "",
        "## Quantization and pruning",
        "",
        "| data | model | params | float Dice | PTQ INT8 drop | QAT INT8 drop | INT8/f32 size | pruned sparsity (model / INT8) | pruned+INT8 gzip / INT8 gzip | entropy floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        if "pruned" not in r:
            continue
        p = r["pruned"]
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['params']} | {r['float_dice']:.4f} | "
            f"{r['ptq']['drop']:+.4f}{_se(r['ptq'])} ({_ok(r['ptq']['drop'], t['ptq_drop'])}) | "
            f"{r['qat']['drop']:+.4f}{_se(r['qat'])} ({_ok(r['qat']['drop'], t['qat_drop'])}; QAT Keras->INT8 "
            f"{r['qat']['keras_dice'] - r['qat']['dice']:+.4f}) | "
            f"{r['qat']['size_ratio']:.3f} ({_ok(r['qat']['size_ratio'], t['int8_size_ratio'])}) | "
            f"{p['sparsity_all_kernels']:.3f} / {p['int8_sparsity']:.3f} | "
            f"{p['gzip_ratio_vs_int8']:.3f} ({_ok(p['gzip_ratio_vs_int8'], t['pruned_gzip_ratio'])}) | "
            f"{_floor(r)} |"
        )
    lines += [
        "",
        f"Targets: PTQ drop <= {t['ptq_drop']}, QAT drop <= {t['qat_drop']}, INT8 size <= {t['int8_size_ratio']}x "
        f"float32, pruned gzip <= {t['pruned_gzip_ratio']}x unpruned INT8 gzip. Drop = float Dice - INT8 Dice "
        "(negative: INT8 scored higher); ± is the paired standard error of the per-image Dice "
        "differences (a drop within about two of them of the target is not told apart from it by "
        "this validation set). Entropy floor: the bytes an ideal coder of independent int8 filter "
        "values needs for the pruned file's filters over those it needs for the unpruned file's "
        "(order-0 entropy times count, measured on both files); gzip cannot code the weights "
        "below it unless the zeros come in runs.",
    ]
    sweeps = [r for r in results["runs"] if r.get("gzip_sweep")]
    if sweeps:
        lines += [
            "",
            "## gzip size against sparsity (pruning-preserving QAT INT8)",
            "",
            "| data | model | target sparsity | sparsity in INT8 | INT8 Dice | gzip / unpruned INT8 gzip |",
            "|---|---|---|---|---|---|",
        ]
        for r in sweeps:
            base = r.get("gzip_sweep_base", r["pruned"])
            points = {f"{base['target']:.2f}": base} | r["gzip_sweep"]
            for key in sorted(points):
                p = points[key]
                lines.append(
                    f"| {r['dataset']} | {r['model']} | {key} | {p['int8_sparsity']:.3f} | "
                    f"{p['int8_dice']:.4f} | {p['gzip_ratio_vs_int8']:.3f} |"
                )
        lines += [
            "",
            "Why 50 % is not enough for 0.6x: gzip codes the remaining int8 weights at close to their "
            "entropy. With per-channel int8 weights (about 6-7 bits each after gzip) and 50 % zeros at "
            "random positions (1 bit each to say where), the expected ratio is about "
            "(1 + 0.5 x 7) / 6.5 = 0.7; a numpy simulation with Laplacian weights gives 0.76 at 50 %, "
            "0.66 at 60 % and 0.54 at 70 %.",
        ]
        if results.get("gzip_sweep_source"):
            lines += ["", f"Sweep {results['gzip_sweep_source']}."]
    clustered = [r for r in results["runs"] if r.get("pruned", {}).get("clustered")]
    if clustered:
        lines += [
            "",
            "## 50 % pruned + sparsity-preserving clustering + INT8 (tfmot collaborative optimization)",
            "",
            "The stripped 50 % pruned model above, clustered (zeros kept) and fine-tuned 3 epochs, "
            "then full-integer PTQ. Each clustered float kernel has at most the given number of "
            "values; per-channel int8 quantization keeps at most that many per output channel.",
            "",
            "| data | model | clusters | sparsity in INT8 | float Dice | INT8 Dice | drop vs float model | gzip / unpruned INT8 gzip |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in clustered:
            c = r["pruned"]["clustered"]
            drop = r["float_dice"] - c["int8_dice"]
            lines.append(
                f"| {r['dataset']} | {r['model']} | {c['clusters']} | {c['int8_sparsity']:.3f} | "
                f"{c['float_dice']:.4f} | {c['int8_dice']:.4f} | {drop:+.4f} | "
                f"{c['gzip_ratio_vs_int8']:.3f} ({_ok(c['gzip_ratio_vs_int8'], t['pruned_gzip_ratio'])}) |"
            )
    if results.get("distill"):
        lines += [
            "",
            f"## Distillation ({s.get('distill_epochs')} student epochs, "
            f"{s.get('distill_lr_schedule', 'constant')} learning rate from 1e-3, "
            f"{'no ' if s.get('no_distill_augment', True) else ''}on-line augmentation, "
            f"alpha {s.get('distill_alpha', 0.5):g}, T {s.get('distill_temperature', 2.0):g}; "
            "the student alone: the same epochs, steps, "
            "schedule, augmentation, seed and initial weights, without the teacher and without "
            "the unlabeled images)",
            "",
            "| data | teacher (params) | student (params, options) | unlabeled images (distilled student only) | teacher Dice | student Dice | student alone | gap to teacher | gain over alone |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        if results.get("distill_source"):
            lines[-2:-2] = [f"Distillation rows {results['distill_source']}.", ""]
        for d in results["distill"]:
            lines.append(
                f"| {d['dataset']} | {d['teacher']} ({d['params']['teacher']}) | mobile_unet "
                f"({d['params']['student']}, {_opts(d.get('student_options'))}) | "
                f"{d.get('unlabeled', 'none')} | {d['teacher_dice']:.4f} | {d['student_dice']:.4f} | {d['alone_dice']:.4f} | "
                f"{d['gap_to_teacher']:+.4f} ({_ok(d['gap_to_teacher'], t['distill_gap'])}) | {d['gain_over_alone']:+.4f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
