"""Compare filter chains on a data set: speckle metrics, fidelity to the clean image, time, and
(optionally) what each chain does to a segmentation network's Dice.

For each chain and image (at the data's own size, or ``size`` when given):

- ``enl``: equivalent number of looks of the background ring (higher: smoother);
- ``speckle_index``: mean local std/mean inside the imaged area (lower: smoother);
- ``cnr``: contrast-to-noise ratio between lesion and background ring (the masks give both);
- ``epi``: edge preservation index against the clean image when there is one, else against the
  unfiltered input (1: edges kept);
- ``psnr`` / ``ssim`` against the clean image (synthetic data, or a folder with ``clean/``);
- ``ms_per_image``: filter time per image.

Written to ``OUT``: ``compare.json``, ``compare.md`` (a table) and ``compare.png`` (image, chains
side by side). With ``ablation=True`` the same short training recipe runs once per chain (no
filter and the two best chains: best SSIM when clean images exist, else best CNR) and
``ablation.json`` / the Markdown report validation Dice, whatever it shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kseg.errors import ConfigError, DataError
from kseg.filters.chain import Chain
from kseg.preprocess.metrics import cnr, enl, epi, psnr, regions, speckle_index, ssim
from kseg.runtime import open_model

#: chains compared when ``--filters`` is not given
DEFAULT_CHAINS = (
    "none",
    "lee",
    "enhanced_lee",
    "kuan",
    "frost",
    "srad",
    "median",
    "gaussian",
    "bilateral",
    "nlm",
    "clahe",
    "lee+clahe",
    "srad+clahe",
)
METRICS = ("enl", "speckle_index", "cnr", "epi", "psnr", "ssim", "ms_per_image")


@dataclass
class Dataset:
    """Grey images (list of uint8 ``(H, W)``), masks, optional clean images and a description."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    clean: list[np.ndarray] | None
    names: list[str]
    description: str
    source: str


def load_source(
    source: str, *, n: int | None = None, size: int | None = None, seed: int = 0
) -> Dataset:
    """``synthetic:KIND[:N]`` or a folder with ``images/``, ``masks/`` (and optionally ``clean/``).

    Images are read as grayscale (speckle statistics are per intensity). ``n`` limits the number
    of images (folders: evenly spaced over the sorted names); ``size`` resizes to ``size x size``.
    """
    import cv2

    from kseg.data.io import fit_to_size, read_image, read_mask

    if source.startswith("synthetic:"):
        from kseg.data.synthetic import parse_synthetic_spec, synthesize

        kind, count = parse_synthetic_spec(source, "SOURCE", default_n=n or 24)
        s = synthesize(kind, count, size or 256, seed)
        gray = [
            cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) if im.shape[-1] == 3 else im[..., 0]
            for im in s.images
        ]
        clean = [
            cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) if im.shape[-1] == 3 else im[..., 0]
            for im in s.clean
        ]
        desc = f"synthetic {kind}, {count} images {size or 256}x{size or 256}, seed {seed}"
        return Dataset(gray, list(s.masks), clean, list(s.names), desc, source)
    from kseg.data.folder import scan_folder

    samples = scan_folder(source)
    if n is not None and n < len(samples):
        idx = np.linspace(0, len(samples) - 1, n).round().astype(int)
        samples = [samples[i] for i in idx]
    clean_dir = Path(source) / "clean"
    has_clean = clean_dir.is_dir() and all((clean_dir / s.image.name).is_file() for s in samples)
    images, masks, cleans = [], [], []
    for s in samples:
        img, m = read_image(s.image, 1), read_mask(s.mask)
        c = read_image(clean_dir / s.image.name, 1) if has_clean else None
        if size:
            img, _ = fit_to_size(img, size, "stretch")
            m, _ = fit_to_size(m, size, "stretch", is_mask=True)
            c = fit_to_size(c, size, "stretch")[0] if c is not None else None
        images.append(np.ascontiguousarray(img[..., 0]))
        masks.append(m)
        if c is not None:
            cleans.append(np.ascontiguousarray(c[..., 0]))
    shape = "x".join(map(str, images[0].shape[::-1])) if size is None else f"{size}x{size}"
    desc = f"folder {source}, {len(images)} images ({'first ' if size is None else ''}{shape})"
    return Dataset(
        images, masks, cleans if has_clean else None, [s.name for s in samples], desc, source
    )


def parse_chains(specs: list[str] | tuple[str, ...] | None) -> list[tuple[str, Chain]]:
    """``["none", "lee:size=7+clahe"]`` -> ``[(label, Chain), ...]`` (``none``: no filter)."""
    out: list[tuple[str, Chain]] = []
    for spec in specs or DEFAULT_CHAINS:
        spec = spec.strip()
        chain = (
            Chain()
            if spec in ("none", "")
            else Chain.parse(spec, where=f"--filters {spec}", open_model=open_model)
        )
        label = "none" if not chain else spec
        if label in (lbl for lbl, _ in out):
            raise ConfigError(f"--filters {spec}: given twice")
        out.append((label, chain))
    return out


def _score_chain(chain: Chain, data: Dataset) -> tuple[dict[str, float], list[np.ndarray]]:
    rows: dict[str, list[float]] = {k: [] for k in METRICS}
    outputs = []
    for i, (img, mask) in enumerate(zip(data.images, data.masks, strict=True)):
        start = time.perf_counter()
        out = chain(img) if chain else img
        rows["ms_per_image"].append((time.perf_counter() - start) * 1000.0)
        outputs.append(out)
        r = regions(mask, img)
        bg = out[r.background]
        rows["enl"].append(enl(bg) if bg.size > 16 else float("nan"))
        rows["speckle_index"].append(speckle_index(out, r.content))
        rows["cnr"].append(cnr(out, r.lesion, r.background))
        ref = data.clean[i] if data.clean is not None else img
        rows["epi"].append(epi(out, ref, r.content))
        if data.clean is not None:
            rows["psnr"].append(psnr(out, data.clean[i]))
            rows["ssim"].append(ssim(out, data.clean[i]))
    summary = {k: float(np.nanmean(v)) if len(v) else None for k, v in rows.items()}
    return summary, outputs


def compare(
    source: str,
    filters: list[str] | None = None,
    out_dir: str | Path | None = None,
    *,
    n: int | None = None,
    size: int | None = None,
    seed: int = 0,
    ablation: bool = False,
    ablation_options: dict[str, Any] | None = None,
    show: int = 3,
) -> dict[str, Any]:
    """Score every chain on ``source``; write ``compare.json``, ``compare.md``, ``compare.png``.

    Returns:
        ``{"data": ..., "chains": [{"chain", "stages", **metrics}], "ablation": [...]}``.
    """
    from kseg.atomic import write_json, write_text

    chains = parse_chains(filters)
    out = (
        Path(out_dir) if out_dir else Path("runs") / f"preprocess-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: --out exists and is not an empty folder; choose a new one")
    data = load_source(source, n=n, size=size, seed=seed)
    if not data.images:
        raise DataError(f"{source}: no images")
    results, shown = [], []
    for label, chain in chains:
        summary, outputs = _score_chain(chain, data)
        results.append({"chain": label, "stages": chain.to_list(), **summary})
        shown.append(outputs[:show])
    report: dict[str, Any] = {
        "data": data.description,
        "n_images": len(data.images),
        "has_clean": data.clean is not None,
        "epi_reference": "clean image" if data.clean is not None else "unfiltered input",
        "chains": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    _figure(data, chains, shown, out / "compare.png")
    if ablation:
        report["ablation"] = run_ablation(
            source, results, chains, out / "ablation", seed=seed, **(ablation_options or {})
        )
    write_json(out / "compare.json", report)
    write_text(out / "compare.md", render_markdown(report))
    report["out"] = str(out)
    return report


def best_chains(results: list[dict[str, Any]], k: int = 2) -> list[str]:
    """The ``k`` best filtering chains: by SSIM when clean images exist, else by CNR."""
    key = "ssim" if any(r.get("ssim") is not None for r in results) else "cnr"
    ranked = sorted(
        (r for r in results if r["chain"] != "none" and r.get(key) is not None),
        key=lambda r: -r[key],
    )
    return [r["chain"] for r in ranked[:k]]


def run_ablation(
    source: str,
    results: list[dict[str, Any]],
    chains: list[tuple[str, Chain]],
    out: Path,
    *,
    seed: int = 0,
    epochs: int = 8,
    img_size: int = 96,
    n_train: int | None = None,
    model: str = "unet",
    model_options: dict[str, Any] | None = None,
    batch_size: int = 8,
    candidates: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Train the same short recipe once per chain (``none`` + the two best); validation Dice.

    Same data, split, seed, model and epochs for every chain; only ``data.preprocess`` differs.
    """
    from kseg.config import load_config
    from kseg.training import train

    by_label = dict(chains)
    picked = ["none", *(candidates or best_chains(results))]
    overrides: dict[str, Any] = {
        "data.img_size": img_size,
        "model.name": model,
        "model.options": model_options or {"depth": 3, "filters": 8},
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.seed": seed,
        "train.early_stopping_patience": epochs,
    }
    if source.startswith("synthetic:"):
        from kseg.data.synthetic import parse_synthetic_spec

        kind, count = parse_synthetic_spec(source, "SOURCE", default_n=200)
        overrides.update({"data.synthetic_kind": str(kind), "data.synthetic_n": n_train or count})
    else:
        overrides["data.path"] = source
    rows = []
    for label in picked:
        chain = by_label[label] if label in by_label else Chain.parse(label)
        cfg = load_config(None, {**overrides, "data.preprocess": chain.to_list()})
        start = time.perf_counter()
        metrics = train(cfg, out / label.replace("+", "_").replace(":", "-"), verbose=0)
        rows.append(
            {
                "chain": label,
                "dice": float(metrics["dice"]),
                "iou": float(metrics["iou"]),
                "best_epoch": metrics.get("best_epoch"),
                "seconds": round(time.perf_counter() - start, 1),
                "recipe": f"{model} {overrides['model.options']}, {img_size}px, {epochs} epochs, "
                f"batch {batch_size}, seed {seed}",
            }
        )
    return rows


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Filter comparison: {report['data']}",
        "",
        f"{report['n_images']} images; EPI against the {report['epi_reference']}"
        + (
            "; PSNR/SSIM against the clean image."
            if report["has_clean"]
            else "; no clean image, so no PSNR/SSIM."
        ),
        "",
        "| chain | ENL (bg) | speckle index | CNR | EPI | PSNR dB | SSIM | ms/image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["chains"]:
        lines.append(
            f"| `{r['chain']}` | {_fmt(r['enl'], 1)} | {_fmt(r['speckle_index'])} | {_fmt(r['cnr'], 2)} "
            f"| {_fmt(r['epi'])} | {_fmt(r['psnr'], 2)} | {_fmt(r['ssim'])} | {_fmt(r['ms_per_image'], 1)} |"
        )
    abl = report.get("ablation")
    if abl:
        base = next((a["dice"] for a in abl if a["chain"] == "none"), None)
        lines += [
            "",
            f"## Dice ablation ({abl[0]['recipe']})",
            "",
            "| chain | val Dice | vs none | IoU | best epoch | train s |",
            "|---|---|---|---|---|---|",
        ]
        for a in abl:
            delta = f"{a['dice'] - base:+.4f}" if base is not None else "n/a"
            lines.append(
                f"| `{a['chain']}` | {a['dice']:.4f} | {delta} | {a['iou']:.4f} | {a['best_epoch']} | {a['seconds']} |"
            )
    return "\n".join(lines) + "\n"


def _figure(
    data: Dataset, chains: list[tuple[str, Chain]], shown: list[list[np.ndarray]], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kseg.atomic import atomic_path

    rows = len(shown[0])
    cols = len(chains) + (1 if data.clean is not None else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows + 0.3), squeeze=False)
    for i in range(rows):
        c0 = 0
        if data.clean is not None:
            axes[i, 0].imshow(data.clean[i], cmap="gray", vmin=0, vmax=255)
            axes[i, 0].set_title("clean" if i == 0 else "", fontsize=7)
            c0 = 1
        for j, (label, _) in enumerate(chains):
            ax = axes[i, c0 + j]
            ax.imshow(shown[j][i], cmap="gray", vmin=0, vmax=255)
            if i == 0:
                ax.set_title(label, fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


__all__ = [
    "DEFAULT_CHAINS",
    "best_chains",
    "compare",
    "load_source",
    "parse_chains",
    "run_ablation",
]
