"""Does GAN-made data help when labelled scans are scarce? HC18 with 50 labelled images.

Arms (same fixed validation split of real HC18 images, same U-Net recipe, same number of
optimizer steps, 64 px):

* ``real50``       : the 50 labelled training images;
* ``real50+gan``   : the same 50 plus N pix2pix pairs (masks = jittered copies of the 50 training
  masks, images generated from them by a pix2pix model trained on the same 50 pairs);
* ``gan_only``     : the N generated pairs alone (how much of the task the generator captured).

Every stage is reused when its output exists, so a killed benchmark resumes.

    nice -n 10 python tools/bench_gan.py --seeds 0,1,2 --out runs/bench/gan

``--dcgan-only`` measures the unconditional DCGAN instead (no segmentation arms): ``kseg gan train
--kind dcgan`` at 64 px on every HC18 image outside the experiment's validation split (the 50
training images plus the 250 unused ones: 300 images), then the final generator's diversity and
nearest-training-image distance against the same figures of real images, into
``DOCS/gan_dcgan.json|md`` and a sample grid ``DOCS/gan_dcgan_samples.png``:

    python tools/bench_gan.py --dcgan-only --dcgan-epochs 120 --out runs/bench/gan
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


def make_split_folder(
    src: Path, out: Path, n_train: int, n_val: int, size: int, seed: int, *, rest: str = ""
) -> Path:
    """Resize HC18 to ``size`` px once; manifest fixes ``n_train`` train and ``n_val`` val images
    (and puts every other image in split ``rest`` when given: the same train/val, more images)."""
    if (out / "manifest.csv").is_file():
        return out
    from kseg.data.folder import scan_folder
    from kseg.data.io import read_image, read_mask

    samples = scan_folder(src)
    order = np.random.default_rng(seed).permutation(len(samples))
    pick = {int(i): "train" for i in order[:n_train]} | {
        int(i): "val" for i in order[n_train : n_train + n_val]
    }
    if rest:
        pick |= {int(i): rest for i in order[n_train + n_val :]}
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


def _tile(images01: np.ndarray, cols: int) -> np.ndarray:
    """``(N, S, S, 1)`` in ``[0, 1]`` -> one uint8 picture, ``cols`` per row, 2 px white gaps."""
    n, s = len(images01), images01.shape[1]
    rows = -(-n // cols)
    pic = np.full((rows * (s + 2) - 2, cols * (s + 2) - 2), 255, np.uint8)
    for k, im in enumerate(images01):
        r, c = divmod(k, cols)
        pic[r * (s + 2) : r * (s + 2) + s, c * (s + 2) : c * (s + 2) + s] = np.round(
            im[..., 0] * 255
        ).astype(np.uint8)
    return pic


def run_dcgan(args, docs: Path) -> int:
    """Train the DCGAN with ``kseg gan train`` and report its final diversity / memorisation."""
    import os
    import subprocess

    from kseg.gan.data import load_training_data
    from kseg.gan.monitor import nearest_distances, report, ssim_diversity, to_unit
    from kseg.gan.sample import generate, load_run

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    base = make_split_folder(
        args.data, out / "hc18_split_all", args.n_train, args.n_val, args.size, 0, rest="rest"
    )
    train_dir = subset_folder(base, out / "dcgan_train", {"train": "train", "rest": "train"}, None)
    val_dir = subset_folder(base, out / "dcgan_heldout", {"val": "val"}, None)
    run = out / "dcgan"
    cmd = [
        sys.executable, "-c", "from kseg.cli import main; main()", "gan", "train",
        "--data", str(train_dir), "--kind", "dcgan", "--size", str(args.size),
        "--epochs", str(args.dcgan_epochs), "--batch-size", "16", "--seed", "0", "--out", str(run),
    ]  # fmt: skip
    seconds = None
    if not (run / "gan.json").is_file():
        import shutil

        shutil.rmtree(run, ignore_errors=True)  # an interrupted run restarts cleanly
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        load_start = os.getloadavg()
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        seconds = time.perf_counter() - t
        atomic.write_json(
            out / "dcgan_time.json",
            {
                "seconds": round(seconds, 1),
                "load_avg_start": [round(x, 2) for x in load_start],
                "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            },
        )
    timing = json.loads((out / "dcgan_time.json").read_text())
    info, g = load_run(run)
    real, _ = load_training_data(train_dir, args.size, need_masks=False)
    held, _ = load_training_data(val_dir, args.size, need_masks=False)
    n = 64
    fake = to_unit(generate(info, g, n, seed=7))
    real_u, held_u = to_unit(real), to_unit(held)
    pick = np.random.default_rng(7).choice(len(real_u), n, replace=False)
    final = report(fake, real_u, real_u[pick])  # diversity of n real images, like the n samples
    held_nn, _ = nearest_distances(held_u, real_u)
    final["heldout_nn_rmse_mean"] = float(held_nn.mean())
    final["heldout_nn_rmse_min"] = float(held_nn.min())
    final["heldout_diversity_ssim"] = ssim_diversity(held_u[:n])
    fake_nn, _ = nearest_distances(fake, real_u)
    final["share_closer_than_heldout_min"] = float((fake_nn < held_nn.min()).mean())
    with open(run / "monitor.csv", newline="") as fh:
        curve = [
            {k: float(v) for k, v in r.items() if k in ("epoch", "diversity_ssim", "nn_rmse_mean")}
            for r in csv.DictReader(fh)
        ]
    doc = {
        "command": "kseg " + " ".join(cmd[3:]),
        "data": f"HC18, {len(real)} images at {args.size} px: every image outside the GAN "
        f"experiment's {args.n_val}-image validation split (its {args.n_train} training images "
        "included); held-out figures: those validation images",
        "gan": {k: info[k] for k in ("kind", "size", "epochs", "steps", "batch_size", "n_train")},
        "train_seconds": timing["seconds"],
        "load_avg_start": timing["load_avg_start"],
        "load_avg_end": timing["load_avg_end"],
        "final": final,
        "per_epoch": curve,
    }
    docs.mkdir(parents=True, exist_ok=True)
    atomic.write_json(docs / "gan_dcgan.json", doc)
    grid = _tile(np.concatenate([real_u[pick[:16]], fake[:48]]), 16)
    import cv2 as _cv2

    ok, buf = _cv2.imencode(".png", grid)
    atomic.write_bytes(docs / "gan_dcgan_samples.png", buf.tobytes())
    f = final
    lines = [
        "# Unconditional DCGAN on HC18 (64 px)",
        "",
        f"`{doc['command']}`; {doc['data']}. {info['epochs']} epochs, {info['steps']} steps of batch "
        f"{info['batch_size']}, {timing['seconds'] / 60:.1f} min (load average "
        f"{timing['load_avg_start'][0]} at start, {timing['load_avg_end'][0]} at end).",
        "",
        f"Final generator, {n} samples (`kseg.gan.monitor`; SSIM single scale, RMSE on pixels in "
        "[0, 1]):",
        "",
        "| figure | generated | real |",
        "|---|---:|---:|",
        f"| diversity: mean pairwise SSIM (lower = more varied) | {f['diversity_ssim']:.3f} "
        f"| {f['real_diversity_ssim']:.3f} (training), {f['heldout_diversity_ssim']:.3f} (held-out) |",
        f"| RMSE to the nearest training image, mean | {f['nn_rmse_mean']:.3f} "
        f"| {f['heldout_nn_rmse_mean']:.3f} (held-out images) |",
        f"| RMSE to the nearest training image, min | {f['nn_rmse_min']:.3f} "
        f"| {f['heldout_nn_rmse_min']:.3f} (held-out images) |",
        f"| training image to its nearest other training image, median | - "
        f"| {f['train_nn_rmse_median']:.3f} |",
        "",
        f"Share of samples closer to a training image than any held-out real image is: "
        f"{f['share_closer_than_heldout_min']:.2f}.",
        "",
        "![DCGAN samples: first row real, then generated](gan_dcgan_samples.png)",
        "",
    ]
    atomic.write_text(docs / "gan_dcgan.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


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
    ap.add_argument(
        "--dcgan-only",
        action="store_true",
        help="measure the unconditional DCGAN (kseg gan train --kind dcgan) instead of the arms",
    )
    ap.add_argument("--dcgan-epochs", type=int, default=120)
    ap.add_argument(
        "--docs", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
    )
    args = ap.parse_args(argv)
    if args.dcgan_only:
        return run_dcgan(args, args.docs)
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
