"""Folder datasets: ``DIR/images/*`` and ``DIR/masks/*`` matched by file stem.

Layout::

    DIR/images/case01.png     png, jpg, bmp or tif; grayscale or RGB; any size
    DIR/masks/case01.png      same stem; 0/255, 0/1, label image, palette (by index) or RGB
    DIR/manifest.csv          optional: image,mask,group,split (only ``image`` is required);
                              any other column (class, source file, scanner, ...) is kept as
                              metadata in ``Sample.meta``

The group of an image (patient, exam, well) comes from the manifest's ``group`` column (or the
column named by ``group_column``), else from ``group_regex`` on the file stem (first capture group,
or the whole match), else the stem itself.
Every problem is a :class:`~kseg.errors.DataError` with one line that names the files.

Example:
    >>> samples = scan_folder("data/thyroid", group_regex=r"^(patient\\d+)_")
    >>> check_sizes(samples)
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kseg.data.io import IMAGE_EXTENSIONS, _imread, header_size, is_image_file
from kseg.errors import DataError

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("image", "mask", "group", "split")
_SHOW = 5


@dataclass(frozen=True)
class Sample:
    """One image of a folder dataset.

    Attributes:
        name: file stem, unique in the dataset (the key of ``split.csv``).
        image: image file.
        mask: mask file, ``None`` for unlabelled data (``require_masks=False``).
        group: patient/exam/well; whole groups go to one split.
        split: ``"train"``/``"val"``/``"test"`` fixed by the manifest, else ``None``.
        meta: the manifest's other columns for this image (``{}`` without a manifest).
    """

    name: str
    image: Path
    mask: Path | None
    group: str
    split: str | None = None
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" (+{len(names) - _SHOW} more)" if len(names) > _SHOW else "")


def _index(folder: Path) -> dict[str, Path]:
    """``{stem: file}`` for the image files of a folder; duplicate stems are an error."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(folder.iterdir()):
        if is_image_file(p):
            by_stem[p.stem].append(p)
    dups = sorted(s for s, ps in by_stem.items() if len(ps) > 1)
    if dups:
        files = [p.name for s in dups for p in by_stem[s]]
        raise DataError(
            f"{folder}: {len(dups)} file stem(s) appear with several extensions ({_listing(files)}); "
            f"keep one file per stem"
        )
    return {s: ps[0] for s, ps in by_stem.items()}


def _group_of(stem: str, pattern: re.Pattern[str] | None, regex: str | None) -> str:
    if pattern is None:
        return stem
    m = pattern.search(stem)
    if m is None:
        raise DataError(
            f"group_regex {regex!r} does not match file {stem!r}; fix data.group_regex or add a "
            f"group column to {MANIFEST}"
        )
    return m.group(1) if pattern.groups >= 1 and m.group(1) is not None else m.group(0)


def _lookup(value: str, index: dict[str, Path]) -> Path | None:
    # a manifest cell may be a file name, a relative path ("images/a.png") or a bare stem
    name = Path(value.replace("\\", "/")).name
    stem = Path(name).stem if Path(name).suffix.lower() in IMAGE_EXTENSIONS else name
    path = index.get(stem)
    if path is None:
        return None
    if Path(name).suffix and path.name != name:
        return None
    return path


def _read_manifest(
    path: Path,
    images: dict[str, Path],
    masks: dict[str, Path],
    group_column: str | None = None,
    need: tuple[str, ...] = (),
) -> dict[str, dict[str, str | Path | None]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        for key, col in (("data.group_column", group_column), *need):
            if col and col not in cols:
                raise DataError(
                    f"{path}: no column {col!r} ({key}); columns: {', '.join(cols) or 'none'}"
                )
        if "image" not in cols:
            raise DataError(
                f"{path}: needs an 'image' column (columns: {', '.join(MANIFEST_COLUMNS)})"
            )
        out: dict[str, dict[str, str | Path | None]] = {}
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            meta = {k: v for k, v in row.items() if k not in MANIFEST_COLUMNS}
            image = _lookup(row.get("image", ""), images)
            if image is None:
                raise DataError(
                    f"{path}: line {line}: image {row.get('image')!r} not found in {path.parent / 'images'}"
                )
            entry: dict[str, str | Path | None] = {}
            if row.get("mask"):
                mask = _lookup(row["mask"], masks)
                if mask is None:
                    raise DataError(
                        f"{path}: line {line}: mask {row['mask']!r} not found in {path.parent / 'masks'}"
                    )
                entry["mask"] = mask
            group_col = group_column or "group"
            if row.get(group_col):
                entry["group"] = row[group_col]
            entry["meta"] = meta  # type: ignore[assignment]
            if row.get("split"):
                if row["split"] not in ("train", "val", "test"):
                    raise DataError(
                        f"{path}: line {line}: split {row['split']!r} is not one of train, val, test"
                    )
                entry["split"] = row["split"]
            if image.stem in out:
                raise DataError(f"{path}: line {line}: image {image.name!r} is listed twice")
            out[image.stem] = entry
    return out


def scan_folder(
    path: str | os.PathLike[str] | None,
    group_regex: str | None = None,
    require_masks: bool = True,
    *,
    group_column: str | None = None,
    stratify: str | None = None,
) -> list[Sample]:
    """List the samples of a folder dataset, sorted by name, and validate the layout.

    Args:
        path: folder with ``images/`` and (unless ``require_masks=False``) ``masks/``.
        group_regex: regex searched in each file stem; its first capture group (or the whole
            match) is the group. The manifest's ``group`` column wins over it.
        require_masks: an image without a mask is an error (training); ``False`` for inference.
        group_column: manifest column naming the group (default ``group``).
        stratify: manifest column that must exist (``data.stratify``).

    Raises:
        DataError: missing or empty folder, image without mask, duplicate stems, bad manifest,
            a stem the regex does not match.
    """
    if path is None or str(path) == "":
        raise DataError("no data folder given; pass a folder with images/ and masks/")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root}: data folder not found; pass a folder with images/ and masks/")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; pass a folder with images/ and masks/")
    img_dir, mask_dir = root / "images", root / "masks"
    if not img_dir.is_dir():
        raise DataError(f"{root}: no images/ subfolder; put the images in {img_dir}")
    if require_masks and not mask_dir.is_dir():
        raise DataError(
            f"{root}: no masks/ subfolder; put one mask per image (same file stem) in {mask_dir}"
        )
    images = _index(img_dir)
    if not images:
        raise DataError(
            f"{img_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}); the folder is empty"
        )
    masks = _index(mask_dir) if mask_dir.is_dir() else {}

    pattern = None
    if group_regex:
        try:
            pattern = re.compile(group_regex)
        except re.error as exc:
            raise DataError(f"group_regex {group_regex!r} is not a valid regex ({exc})") from None

    manifest: dict[str, dict[str, str | Path | None]] = {}
    if (root / MANIFEST).is_file():
        need = (("data.stratify", stratify),) if stratify else ()
        manifest = _read_manifest(root / MANIFEST, images, masks, group_column, need)
        unlisted = sorted(set(images) - set(manifest))
        if unlisted:
            warnings.warn(
                f"{root / MANIFEST}: {len(unlisted)} image(s) not listed ({_listing(unlisted)}); "
                f"they are used with groups from the file name",
                stacklevel=2,
            )

    elif group_column or stratify:
        key = "data.group_column" if group_column else "data.stratify"
        raise DataError(
            f"{root}: {key} names a column of {MANIFEST}, but there is no {root / MANIFEST}"
        )

    samples: list[Sample] = []
    missing: list[str] = []
    for stem, image in sorted(images.items()):
        entry = manifest.get(stem, {})
        mask = entry.get("mask") or masks.get(stem)
        if mask is None and require_masks:
            missing.append(image.name)
            continue
        group = entry.get("group") or _group_of(stem, pattern, group_regex)
        samples.append(
            Sample(stem, image, mask, str(group), entry.get("split"), dict(entry.get("meta") or {}))  # type: ignore[arg-type]
        )
    if missing:
        raise DataError(
            f"{mask_dir}: no mask for {len(missing)} image(s): {_listing(missing)}; "
            f"give each image a mask with the same file stem"
        )
    used = {s.mask for s in samples if s.mask is not None}
    orphans = sorted(p.name for p in masks.values() if p not in used)
    if orphans:
        warnings.warn(
            f"{mask_dir}: {len(orphans)} mask(s) without an image are ignored: {_listing(orphans)}",
            stacklevel=2,
        )
    return samples


def _header_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from the header; decoded only when the header cannot be read."""
    size = header_size(path)
    if size is not None:
        return size[1], size[0]
    arr = _imread(path)
    return None if arr is None else (int(arr.shape[0]), int(arr.shape[1]))


def check_sizes(samples: list[Sample], workers: int | None = None) -> None:
    """Check that every mask has its image's height and width (and that both are readable).

    Raises:
        DataError: listing the first files that differ (``image HxW vs mask HxW``) or the first
            unreadable file.
    """
    paired = [s for s in samples if s.mask is not None]
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    paths = [p for s in paired for p in (s.image, s.mask)]
    with ThreadPoolExecutor(workers) as pool:
        sizes = list(pool.map(_header_size, paths))
    bad: list[str] = []
    for i, s in enumerate(paired):
        hi, hm = sizes[2 * i], sizes[2 * i + 1]
        for p, hw in ((s.image, hi), (s.mask, hm)):
            if hw is None:
                raise DataError(
                    f"{p}: cannot read image (corrupt or not an image); re-save it as PNG or remove it"
                )
        if hi != hm:
            bad.append(f"{s.image.name} {hi[0]}x{hi[1]} vs mask {s.mask.name} {hm[0]}x{hm[1]}")  # type: ignore[index,union-attr]
    if bad:
        raise DataError(
            f"mask size differs from its image for {len(bad)} file(s): {_listing(bad)}; "
            f"masks must have the image's height and width"
        )


__all__ = ["MANIFEST", "MANIFEST_COLUMNS", "Sample", "check_sizes", "scan_folder"]
