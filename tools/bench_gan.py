"""Does GAN-made data help when labelled scans are scarce? HC18 with 50 labelled images.

Arms (same fixed validation split of real HC18 images, same U-Net recipe, same number of
optimizer steps, 64 px):

* ``real50``       : the 50 labelled training images;
* ``real50+gan``   : the same 50 plus N pix2pix pairs (masks = jittered copies of the 50 training
  masks, images generated from them by a pix2pix model trained on the same 50 pairs);
* ``gan_only``     : the N generated pairs alone (how much of the task the generator captured).

Every stage is reused when its output exists, so a killed benchmark resumes.

    nice -n 10 python tools/bench_gan.py --seeds 0,1,2 --out runs/bench/gan
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kseg import atomic  # noqa: E402

HC18 = Path("/work/shared/data/hc18")


def make_split_folder(src: Path, out: Path, n_train: int, n_val: int, size: int, seed: int) -> Path:
    """Resize HC18 to ``size`` px once; manifest fixes ``n_train`` train and ``n_val`` val images."""
    if (out / "manifest.csv").is_file():
        return out
    from kseg.data.folder import scan_folder
    from kseg.data.io import read_image, read_mask

    samples = scan_folder(src)
    order = np.random.default_rng(seed).permutation(len(samples))
    pick = {int(i): "train" for i in order[:n_train]} | {
        int(i): "val" for i in order[n_train : n_train + n_val]
    }
    tmp = out.with_name(out.name + ".tmp")
    for sub in ("images", "masks"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    rows = [["image", "mask", "group", "split", "generated"]]
    for i, split in sorted(pick.items()):
        s = samples[i]
        im = cv2.resize(read_image(s.image, 1)[..., 0], (size, size), interpolation=cv2.INTER_AREA)
        m = cv2.resize(read_mask(s.mask), (size, size), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(tmp / "images" / f"{s.name}.png"), im)
        cv2.imwrite(str(tmp / "masks" / f"{s.name}.png"), m * 255)
        rows.append([f"{s.name}.png", f"{s.name}.png", s.name, split, 0])
    with open(tmp / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    tmp.rename(out)
    return out


def subset_folder(base: Path, out: Path, splits: dict[str, str], extra: Path | None) -> Path:
    """A folder with the ``base`` images whose split is in ``splits`` (renamed) plus ``extra``."""
    if (out / "manifest.csv").is_file():
        return out
    import shutil

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("images", "masks"):
        (tmp / sub).mkdir(parents=True)
    rows = [["image", "mask", "group", "split", "generated"]]
    with open(base / "manifest.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["split"] in splits:
                for sub in ("images", "masks"):
                    shutil.copy(base / sub / r["image"], tmp / sub / r["image"])
                rows.append([r["image"], r["mask"], r["group"], splits[r["split"]], 0])
    if extra is not None:
        with open(extra / "manifest.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                for sub in ("images", "masks"):
                    shutil.copy(extra / sub / r["image"], tmp / sub / r["image"])
                rows.append([r["image"], r["mask"], r["group"], "train", 1])
    with open(tmp / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    tmp.rename(out)
    return out


def train_seg(data: Path, out: Path, seed: int, epochs: int, steps: int, size: int) -> dict:
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    import shutil

    from kseg.config import load_config
    from kseg.training import train

    shutil.rmtree(out, ignore_errors=True)  # an interrupted run restarts cleanly
    cfg = load_config(
        None,
        {
            "data.path": str(data),
            "data.img_size": size,
            "data.channels": 1,
            "model.name": "unet",
            "model.options": {"depth": 3, "filters": 16},
            "train.epochs": epochs,
            "train.steps_per_epoch": steps,
            "train.batch_size": 8,
            "train.learning_rate": 2e-3,
            "train.early_stopping_patience": epochs,  # same budget for every arm
            "train.seed": seed,
        },
    )
    return train(cfg, out, verbose=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HC18)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/gan"))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n-train", type=int, default=50)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--n-gen", type=int, default=100)
    ap.add_argument("--gan-epochs", type=int, default=120)
    ap.add_argument("--seg-epochs", type=int, default=40)
    ap.add_argument("--steps", type=int, default=7, help="optimizer steps per epoch, every arm")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--arms", default="real50,real50+gan,gan_only")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()

    base = make_split_folder(args.data, out / "hc18_split", args.n_train, args.n_val, args.size, 0)
    train_only = subset_folder(base, out / "train50", {"train": "train"}, None)

    # 1) pix2pix on the 50 training pairs
    gan_run = out / "pix2pix"
    t_gan = 0.0
    if not (gan_run / "gan.json").is_file():
        import shutil

        from kseg.gan.data import load_training_data
        from kseg.gan.train import train_gan

        shutil.rmtree(gan_run, ignore_errors=True)
        images, masks = load_training_data(train_only, args.size, need_masks=True)
        t = time.perf_counter()
        train_gan(
            images,
            masks,
            gan_run,
            kind="pix2pix",
            epochs=args.gan_epochs,
            batch_size=8,
            data_name=str(train_only),
            log=lambda m: print(m, flush=True),
        )
        t_gan = time.perf_counter() - t
    gan_info = json.loads((gan_run / "gan.json").read_text())

    # 2) N pairs from jittered training masks
    gen = out / f"generated{args.n_gen}"
    if not (gen / "manifest.csv").is_file():
        from kseg.gan.sample import sample

        sample(gan_run, args.n_gen, gen, masks=str(train_only / "masks"), seed=0)
    # monitor figures of the final generator on 64 fresh samples vs the 50 training images
    from kseg.gan.data import load_training_data, masks_for_sampling
    from kseg.gan.monitor import report, to_unit
    from kseg.gan.sample import generate, load_run

    info, g = load_run(gan_run)
    real, _ = load_training_data(train_only, args.size, need_masks=False)
    fake = generate(info, g, 64, masks_for_sampling(train_only / "masks", args.size, 64, seed=7))
    final_monitor = report(to_unit(fake), to_unit(real), to_unit(real[:16]))

    # 3) segmentation arms
    folders = {
        "real50": subset_folder(base, out / "arm_real50", {"train": "train", "val": "val"}, None),
        "real50+gan": subset_folder(
            base, out / "arm_real50_gan", {"train": "train", "val": "val"}, gen
        ),
        "gan_only": subset_folder(base, out / "arm_gan_only", {"val": "val"}, gen),
    }
    arms = args.arms.split(",")
    results: dict[str, list[dict]] = {a: [] for a in arms}
    for seed in seeds:
        for arm in arms:
            run = out / "runs" / f"{arm.replace('+', '_')}_s{seed}"
            print(f"training {arm} seed {seed}", flush=True)
            m = train_seg(folders[arm], run, seed, args.seg_epochs, args.steps, args.size)
            results[arm].append(
                {
                    "seed": seed,
                    "dice": m["dice"],
                    "iou": m.get("iou"),
                    "train_seconds": m.get("train_seconds"),
                }
            )
            partial = {"arms": results, "seeds": seeds}
            atomic.write_json(out / "partial.json", partial)

    summary = {}
    for arm, rs in results.items():
        d = [r["dice"] for r in rs]
        summary[arm] = {
            "dice_mean": statistics.fmean(d) if d else None,
            "dice_std": statistics.stdev(d) if len(d) > 1 else 0.0,
            "n_seeds": len(d),
            "per_seed": rs,
        }
    doc = {
        "data": str(args.data),
        "size": args.size,
        "n_train": args.n_train,
        "n_val": args.n_val,
        "n_generated": args.n_gen,
        "gan": {
            "kind": "pix2pix",
            "epochs": gan_info["epochs"],
            "steps": gan_info["steps"],
            "train_seconds": round(t_gan, 1) or None,
            "final_monitor": final_monitor,
        },
        "seg_recipe": {
            "model": "unet depth 3 filters 16",
            "epochs": args.seg_epochs,
            "steps_per_epoch": args.steps,
            "batch_size": 8,
            "lr": 2e-3,
            "schedule": "plateau (kseg default)",
            "augment": "kseg default",
        },
        "arms": summary,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    atomic.write_json(out / "bench_gan.json", doc)
    lines = [
        "# GAN data on HC18 (50 labelled images, 64 px)",
        "",
        f"Validation: {args.n_val} real HC18 images (fixed). Segmentation: U-Net depth 3 / 16 filters, "
        f"{args.seg_epochs} epochs x {args.steps} steps, batch 8, same for every arm. "
        f"Generated: {args.n_gen} pix2pix pairs ({gan_info['epochs']} GAN epochs, {gan_info['steps']} steps), "
        "masks = jittered copies of the 50 training masks.",
        "",
        "| arm | val Dice mean | std | seeds | per seed |",
        "|---|---|---|---|---|",
    ]
    for arm, s in summary.items():
        per = ", ".join(f"{r['dice']:.3f}" for r in s["per_seed"])
        lines.append(
            f"| {arm} | {s['dice_mean']:.3f} | {s['dice_std']:.3f} | {s['n_seeds']} | {per} |"
        )
    fm = final_monitor
    lines += [
        "",
        f"Final generator (64 samples): diversity (mean pairwise SSIM) {fm['diversity_ssim']:.3f} "
        f"(real images {fm['real_diversity_ssim']:.3f}); nearest-training-image RMSE mean "
        f"{fm['nn_rmse_mean']:.3f}, min {fm['nn_rmse_min']:.3f} (train-train median "
        f"{fm['train_nn_rmse_median']:.3f}).",
        "",
    ]
    atomic.write_text(out / "bench_gan.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
