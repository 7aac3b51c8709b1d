"""Fine-tuning benchmark: HC18 with few labels, from scratch vs ``kseg train --init``.

1. Pretrain once on the embedded synthetic ultrasound set (``--pretrain-n`` images).
2. Make an HC18 subset folder (symlinks + ``manifest.csv``): ``--n-train`` labelled training
   images and a fixed ``--n-val`` validation images, the same for every run.
3. For each seed: train from scratch, and from the pretrained model (``--init``, optionally
   ``--freeze-encoder --unfreeze-after``), with the same recipe (epochs, steps, size, seed).
4. Report the validation Dice of each run (best epoch), the mean and the per-seed difference.

Writes OUT/finetune.json after every run (partial results survive) and OUT/finetune.md.

    nice -n 10 python tools/bench_finetune.py --out runs/bench/finetune
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))


def make_subset(out: Path, n_train: int, n_val: int) -> Path:
    """``out/images``, ``out/masks`` (symlinks) and a manifest fixing the split (evenly spaced)."""
    names = sorted(p.name for p in (HC18 / "images").iterdir() if p.suffix == ".png")
    step = len(names) / (n_train + n_val)
    picked = [names[int(i * step)] for i in range(n_train + n_val)]
    val = set(picked[1::2][:n_val]) if n_val <= n_train else set(picked[:n_val])
    train = [n for n in picked if n not in val][:n_train]
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for n in [*train, *sorted(val)]:
            link = out / sub / n
            if not link.exists():
                link.symlink_to(HC18 / sub / n)
    rows = ["image,mask,group,split"]
    rows += [f"{n},{n},{Path(n).stem},train" for n in train]
    rows += [f"{n},{n},{Path(n).stem},val" for n in sorted(val)]
    (out / "manifest.csv").write_text("\n".join(rows) + "\n")
    return out


def run_train(overrides: dict[str, Any], out: Path) -> dict[str, Any]:
    from kseg.config import load_config
    from kseg.training import train

    if (out / "metrics.json").is_file():  # finished earlier: reuse (the bench can be resumed)
        return json.loads((out / "metrics.json").read_text())
    if out.exists():
        import shutil

        shutil.rmtree(out)
    started = time.perf_counter()
    metrics = train(load_config(None, overrides), out, verbose=0)
    metrics["wall_seconds"] = time.perf_counter() - started
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "finetune")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=50)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--pretrain-n", type=int, default=200)
    ap.add_argument("--pretrain-epochs", type=int, default=8)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--freeze-epochs", type=int, default=0, help="--unfreeze-after N (0: none)")
    args = ap.parse_args(argv)
    if not (HC18 / "images").is_dir():
        print(f"HC18 not found at {HC18} (set KSEG_HC18)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    model = {"model.options": {"depth": args.depth, "filters": args.filters}}
    common = {
        **model,
        "data.img_size": args.size,
        "train.batch_size": 8,
        "train.early_stopping_patience": args.epochs,  # same epochs for every run
    }
    result: dict[str, Any] = {
        "settings": vars(args) | {"out": str(args.out)},
        "pretrain": None,
        "runs": [],
    }

    def save() -> None:
        (args.out / "finetune.json").write_text(json.dumps(result, indent=2, default=str))

    print("pretrain on synthetic ultrasound", file=sys.stderr, flush=True)
    pre = run_train(
        {
            **common,
            "data.synthetic_kind": "ultrasound",
            "data.synthetic_n": args.pretrain_n,
            "train.epochs": args.pretrain_epochs,
            "train.seed": 100,
        },
        args.out / "pretrain",
    )
    result["pretrain"] = {
        "dice": pre["dice"],
        "wall_seconds": pre.get("wall_seconds"),
        "n": args.pretrain_n,
    }
    save()
    subset = make_subset(args.out / "hc18_subset", args.n_train, args.n_val)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in ("scratch", "init"):
            over = {
                **common,
                "data.path": str(subset),
                "train.epochs": args.epochs,
                "train.seed": seed,
            }
            if arm == "init":
                over["train.init"] = str(args.out / "pretrain" / "best.keras")
                if args.freeze_epochs:
                    over["train.freeze_encoder"] = True
                    over["train.unfreeze_after"] = args.freeze_epochs
            print(f"seed {seed}: {arm}", file=sys.stderr, flush=True)
            m = run_train(over, args.out / f"{arm}_seed{seed}")
            result["runs"].append(
                {
                    "seed": seed,
                    "arm": arm,
                    "dice": m["dice"],
                    "n_val": m.get("n_images"),
                    "best_epoch": m.get("best_epoch"),
                    "wall_seconds": m.get("wall_seconds"),
                }
            )
            save()
    by = {
        arm: {r["seed"]: r["dice"] for r in result["runs"] if r["arm"] == arm}
        for arm in ("scratch", "init")
    }
    seeds = sorted(set(by["scratch"]) & set(by["init"]))
    diffs = [by["init"][s] - by["scratch"][s] for s in seeds]
    result["summary"] = {
        "scratch_mean": statistics.mean(by["scratch"].values()),
        "init_mean": statistics.mean(by["init"].values()),
        "diff_mean": statistics.mean(diffs),
        "diff_min": min(diffs),
        "diff_max": max(diffs),
        "init_better_seeds": sum(d > 0 for d in diffs),
        "n_seeds": len(seeds),
    }
    save()
    s = result["summary"]
    lines = [
        "# Fine-tuning: HC18 with few labels, scratch vs --init from synthetic ultrasound",
        "",
        f"unet depth {args.depth}, {args.filters} filters, {args.size} px, {args.epochs} epochs, "
        f"batch 8; HC18 subset: {args.n_train} training / {args.n_val} validation images (fixed); "
        f"pretrained {args.pretrain_epochs} epochs on {args.pretrain_n} synthetic ultrasound images "
        f"(its validation Dice {pre['dice']:.3f})"
        + (f"; encoder frozen for {args.freeze_epochs} epochs" if args.freeze_epochs else "")
        + ".",
        "",
        "| seed | scratch Dice | --init Dice | difference |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {sd} | {by['scratch'][sd]:.4f} | {by['init'][sd]:.4f} | {d:+.4f} |"
        for sd, d in zip(seeds, diffs, strict=True)
    ]
    lines += [
        f"| mean | {s['scratch_mean']:.4f} | {s['init_mean']:.4f} | {s['diff_mean']:+.4f} |",
        "",
        f"--init better on {s['init_better_seeds']} of {s['n_seeds']} seeds.",
        "",
        f"Command: `nice -n 10 python tools/bench_finetune.py {' '.join(argv or sys.argv[1:])}`",
    ]
    (args.out / "finetune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
