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


def _chain_text(stages: Any) -> str:
    if not stages:
        return "none"
    parts = []
    for stage in stages:
        for name, params in stage.items():
            inner = ", ".join(f"{k}={v}" for k, v in (params or {}).items())
            parts.append(f"`{name}({inner})`")
    return " -> ".join(parts)


def render_markdown(card: dict[str, Any]) -> str:
    kind = "onnx" if "onnx" in card else "tflite"  # the artifact section: ONNX cards say "onnx"
    label = {"tflite": "TFLite", "onnx": "ONNX Runtime"}[kind]
    t, s, i, o = card[kind], card["source"], card["input"], card["output"]
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
        f"| output | {o['shape']} | {o['dtype']} | {_fmt(o.get('scale'), 6)} | {o.get('zero_point')} | {o['activation']}, {_decision_text(o)} |",
        "",
        *_classes_lines(o),
        f"Preprocessing (applied by the runtime before the model): {_chain_text(i.get('preprocess'))}.",
        "",
        f"## Parity against the float Keras model: {status}",
        "",
        f"Data: {card.get('data', {}).get('description', 'n/a')} ({parity.get('n_images', 0)} validation images).",
        "",
        *_provenance_lines((card.get("data") or {}).get("provenance")),
        "| | Dice | Dice 95 % CI (bootstrap over images) | IoU |",
        "|---|---|---|---|",
        f"| float (Keras) | {_fmt(parity.get('float_dice'))} | {_ci(parity.get('float_dice_ci95'))} | {_fmt(parity.get('float_iou'))} |",
        f"| {t['mode']} ({label}) | {_fmt(parity.get(f'{kind}_dice'))} | {_ci(parity.get(f'{kind}_dice_ci95'))} | {_fmt(parity.get(f'{kind}_iou'))} |",
        "",
        f"Dice drop {_fmt(parity.get('dice_drop'))} (allowed {_fmt(parity.get('max_dice_drop'))}); "
        f"pixel agreement {_fmt(parity.get('pixel_agreement'))}.",
        *_per_class_lines(parity, kind, t["mode"]),
    ]
    if parity.get("review_png"):
        lines += [
            "",
            f"Review: `{Path(parity['review_png']).name}` (image | float | {kind} | difference).",
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


def _ci(interval: Any) -> str:
    """``0.62-0.73``: a bootstrap interval (``[low, high]``), or n/a (older cards have none)."""
    if not interval or any(v is None or v != v for v in interval[:2]):
        return "n/a"
    return f"{interval[0]:.2f}-{interval[1]:.2f}"


def _decision_text(output: dict[str, Any]) -> str:
    """How a pixel's class is decided: ``argmax`` over K channels, or ``p > threshold``."""
    if output.get("decision") == "argmax":
        return "argmax over classes"
    return f"threshold {output['threshold']}"


def _classes_lines(output: dict[str, Any]) -> list[str]:
    names = output.get("classes")
    if not names:
        return []
    listed = ", ".join(f"{i} `{n}`" for i, n in enumerate(names))
    return [f"Classes (output channel / label value: name): {listed}.", ""]


def _per_class_lines(parity: dict[str, Any], kind: str, mode: str) -> list[str]:
    """Per-class parity table of a multi-class card (gate: every class and the mean)."""
    per_class = parity.get("per_class")
    if not per_class:
        return []
    lines = [
        "",
        f"Per class (the gate holds each class's drop, and the foreground mean's, to "
        f"{_fmt(parity.get('max_dice_drop'))}):",
        "",
        f"| class | images | float Dice | {mode} Dice | {mode} Dice 95 % CI | drop | gate |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    gate = {True: "pass", False: "FAIL", None: "n/a"}
    for name, c in per_class.items():
        lines.append(
            f"| {name} | {c.get('n_images', 'n/a')} | {_fmt(c.get('float_dice'))} "
            f"| {_fmt(c.get(f'{kind}_dice'))} | {_ci(c.get(f'{kind}_dice_ci95'))} "
            f"| {_fmt(c.get('dice_drop'))} "
            f"| {gate[c.get('passed')]} |"
        )
    return lines


def _provenance_lines(prov: dict[str, Any] | None) -> list[str]:
    """The split's provenance, and a plain warning when the images may include training images."""
    if not prov:
        return []
    where = f"run `{prov['run']}` (its `split.csv`)" if prov.get("run") else "a new split"
    lines = [
        f"Split: {prov['split']} of {where}, seed {prov['seed']}, {prov['n_images']} of "
        f"{prov['n_files']} images, file list sha256 `{prov['files_sha256'][:16]}…`.",
        "",
    ]
    if prov.get("warning"):
        lines += [f"**Warning: {prov['warning']}.**", ""]
    return lines
