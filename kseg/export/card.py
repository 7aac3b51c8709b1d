"""Model cards: ``FILE.json`` (machine-readable) and ``FILE.md`` (for people) next to a ``.tflite``.

The JSON layout is documented in ``docs/ARCHITECTURE.md``; the runtime reads ``input`` and
``output`` from it (resize mode, normalization, threshold).
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

from kseg.atomic import write_json, write_text

CARD_FORMAT = "kseg-model-card/1"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def card_paths(tflite_path: str | Path) -> tuple[Path, Path]:
    p = Path(tflite_path)
    return p.with_suffix(".json"), p.with_suffix(".md")


def write_card(card: dict[str, Any], tflite_path: str | Path) -> tuple[Path, Path]:
    json_path, md_path = card_paths(tflite_path)
    write_json(json_path, card)
    write_text(md_path, render_markdown(card))
    return json_path, md_path


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if value is None:
        return "n/a"
    return str(value)


def render_markdown(card: dict[str, Any]) -> str:
    t, s, i, o = card["tflite"], card["source"], card["input"], card["output"]
    parity = card.get("parity") or {}
    status = {True: "PASSED", False: "FAILED", None: "not gated"}[parity.get("passed")]
    lines = [
        f"# Model card: {Path(t['path']).name}",
        "",
        f"- **Variant**: `{t['mode']}` — {t.get('description', '')}",
        f"- **Source model**: `{s['path']}` (`{s['name']}`), sha256 `{s['sha256'][:16]}…`",
        f"- **Parameters**: {s.get('params', 'n/a'):,}"
        if isinstance(s.get("params"), int)
        else "- **Parameters**: n/a",
        f"- **MACs**: {s.get('macs', 'n/a'):,}"
        if isinstance(s.get("macs"), int)
        else "- **MACs**: n/a",
        f"- **Size**: {t['size_bytes']:,} bytes ({t['gzip_bytes']:,} gzip)",
        f"- **Ops**: {', '.join(t.get('ops', [])) or 'n/a'}",
        f"- **Float tensors inside the graph**: {t.get('float_ops', 'n/a')}",
        f"- **Steps**: {' -> '.join(step['step'] for step in card.get('steps', [])) or 'convert'}",
        "",
        "## Input and output",
        "",
        "| | shape | dtype | scale | zero point | notes |",
        "|---|---|---|---|---|---|",
        f"| input | {i['shape']} | {i['dtype']} | {_fmt(i.get('scale'), 6)} | {i.get('zero_point')} | raw pixels {i['pixel_range']}, normalization {i['normalization']['applied']}, resize `{i['resize']}` |",
        f"| output | {o['shape']} | {o['dtype']} | {_fmt(o.get('scale'), 6)} | {o.get('zero_point')} | {o['activation']}, threshold {o['threshold']} |",
        "",
        f"## Parity against the float Keras model: {status}",
        "",
        f"Data: {card.get('data', {}).get('description', 'n/a')} ({parity.get('n_images', 0)} validation images).",
        "",
        "| | Dice | IoU |",
        "|---|---|---|",
        f"| float (Keras) | {_fmt(parity.get('float_dice'))} | {_fmt(parity.get('float_iou'))} |",
        f"| {t['mode']} (TFLite) | {_fmt(parity.get('tflite_dice'))} | {_fmt(parity.get('tflite_iou'))} |",
        "",
        f"Dice drop {_fmt(parity.get('dice_drop'))} (allowed {_fmt(parity.get('max_dice_drop'))}); "
        f"pixel agreement {_fmt(parity.get('pixel_agreement'))}.",
    ]
    if parity.get("review_png"):
        lines += [
            "",
            f"Review: `{Path(parity['review_png']).name}` (image | float | tflite | difference).",
        ]
    sel = card.get("threshold_selection")
    if sel:
        lines += [
            "",
            "## Threshold",
            "",
            f"{sel['threshold']} chosen on {sel.get('split', 'the validation split')} "
            f"({sel['n_images']} images): Dice {_fmt(sel['dice'])} against "
            f"{_fmt(sel['dice_at_default'])} at {sel['default']}. "
            "`kseg predict`/`kseg serve` use it unless given `--threshold`.",
        ]
    cal = card.get("calibration")
    if cal:
        lines += [
            "",
            "## Calibration",
            "",
            f"{cal['description']} ({cal['n_images']} images, sha256 `{cal['sha256'][:16]}…`).",
        ]
    return "\n".join(lines) + "\n"
