"""Benchmark reports: JSON, a Markdown table and PNG charts (matplotlib, Agg backend).

Charts: the latency distribution of every run, p50 latency against thread count, and (when the
models have cards with a Dice score) size vs Dice vs latency, so models can be compared at a
glance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kseg.atomic import atomic_path, write_json, write_text


def _name(result: dict[str, Any]) -> str:
    return Path(result["file"]).name


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def to_markdown(report: dict[str, Any]) -> str:
    """A Markdown report: machine, calibration, one row per (file, threads), NPU emulation."""
    m = report.get("machine", {})
    lines = [
        "# kseg bench",
        "",
        f"Machine: {m.get('machine', '?')} {m.get('cpu', '')}, {m.get('cpu_count', '?')} CPUs; "
        f"runtime {report.get('runtime', '?')}, delegate {report.get('delegate') or 'xnnpack'}.",
        "",
    ]
    cal = report.get("calibration") or {}
    if cal:
        lines.append(
            "Measured INT8 peak (large INT8 conv): "
            + ", ".join(f"{t} thread(s): {c['gmacs_per_s']:.1f} GMAC/s" for t, c in cal.items())
            + "."
        )
        lines.append("")
    results = report.get("results", [])
    if results:
        lines += [
            "| model | threads | size KiB | init ms | first ms | p50 ms | p90 ms | p99 ms | mean ± std ms "
            "| img/s | peak RSS MiB | GMAC/s | % of peak | vs baseline |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results:
            lat = r["latency_ms"]
            ratio = r.get("ratio_vs_baseline", {}).get("latency_p50")
            share = r.get("peak_share")
            lines.append(
                f"| {_name(r)} | {r['threads']} | {r['size_bytes'] / 1024:.1f} | {r['init_ms']:.1f} "
                f"| {r['first_ms']:.2f} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} "
                f"| {lat['mean']:.2f} ± {lat['std']:.2f} | {r['throughput_ips']:.1f} "
                f"| {r['peak_rss_mb']:.1f} | {_fmt(r.get('gmacs_per_s'), 1)} "
                f"| {'-' if share is None else f'{100 * share:.0f}%'} "
                f"| {'-' if ratio is None else f'{ratio:.2f}x'} |"
            )
        lines.append("")
        if report.get("baseline"):
            lines.append(f"Ratios are p50 latency against `{Path(report['baseline']).name}`.")
            lines.append("")
    for model in report.get("models", []):
        card = model.get("card") or {}
        dice = card.get("tflite_dice")
        lines.append(
            f"- `{Path(model['path']).name}`: {model['num_ops']} ops, {model['macs'] / 1e6:.1f} M MACs, "
            f"weights {model['weights_bytes'] / 1024:.1f} KiB, peak activations "
            f"{model['peak_activation_bytes'] / 1024:.1f} KiB"
            + (f", Dice {dice:.4f}" if isinstance(dice, (int, float)) else "")
            + (
                f"; float ops: {', '.join(model['float_ops'][:6])}"
                if model["float_ops"] and model["int8_intended"]
                else ""
            )
            + (f"; dynamic-shape ops: {len(model['dynamic_ops'])}" if model["dynamic_ops"] else "")
        )
    if report.get("models"):
        lines.append("")
    npu = report.get("npu", [])
    if npu:
        lines += [
            "## Device emulation (static analysis; latency is an estimate)",
            "",
            "| model | profile | ops on device | partitions | handoffs | peak act. KiB / SRAM KiB "
            "| est. latency ms | main fallback reasons |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for n in npu:
            reasons: dict[str, int] = {}
            for fb in n["fallbacks"]:
                key = f"{fb['op']}: {fb['reasons'][0]}"
                reasons[key] = reasons.get(key, 0) + 1
            top = "; ".join(
                f"{k} (x{v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
            )
            lines.append(
                f"| {Path(n['file']).name} | {n['profile']} | {n['ops_on_device']}/{n['ops_total']} "
                f"| {n['num_partitions']} | {n['handoffs']} "
                f"| {n['peak_activation_bytes'] / 1024:.0f} / {n['sram_bytes'] / 1024:.0f} "
                f"| {n['estimated_latency_ms']['total']:.2f} | {top or '-'} |"
            )
        lines.append("")
        lines += _vela_markdown(npu)
        for n in npu:
            for w in n["warnings"]:
                lines.append(f"- warning ({Path(n['file']).name} on {n['profile']}): {w}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _vela_markdown(npu: list[dict[str, Any]]) -> list[str]:
    """Arm Ethos-U rows: Vela's cycle estimate beside kseg's roofline estimate, or a note."""
    rows = [n for n in npu if "vela" in n]
    if not rows:
        return []
    lines: list[str] = []
    with_vela = [n for n in rows if n["vela"] and "error" not in n["vela"]]
    if with_vela:
        v0 = with_vela[0]["vela"]
        lines += [
            f"### Arm Ethos-U: Vela {v0['vela_version']} beside kseg's estimate",
            "",
            f"Vela: {v0['label']}; {v0['system_config']}, {v0['memory_mode']}, "
            f"{v0['clock_hz'] / 1e6:.0f} MHz. kseg: per-op roofline from the device profile.",
            "",
            "| model | profile | accelerator | Vela ms | kseg est. ms | kseg / Vela | Vela NPU ops "
            "| kseg device ops | Vela SRAM KiB | off-chip read KiB | off-chip write KiB |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n in with_vela:
            v, c = n["vela"], n["vela"]["comparison"]
            ratio = c["ratio_kseg_over_vela"]
            vela_ms = f"{v['latency_ms']:.2f}" if v["npu_ops"] else "- (nothing on the NPU)"
            lines.append(
                f"| {Path(n['file']).name} | {n['profile']} | {v['accelerator']} "
                f"| {vela_ms} | {c['kseg_estimate_ms']:.2f} "
                f"| {'-' if ratio is None else f'{ratio:.2f}'} | {v['npu_ops']}/{v['ops_total']} "
                f"| {n['ops_on_device']}/{n['ops_total']} | {v['sram_bytes'] / 1024:.0f} "
                f"| {v['offchip_read_bytes'] / 1024:.0f} | {v['offchip_write_bytes'] / 1024:.0f} |"
            )
        lines.append("")
        for n in with_vela:
            if n["vela"]["cpu_ops"]:
                lines.append(
                    f"- Vela leaves {len(n['vela']['cpu_ops'])} op(s) of {Path(n['file']).name} on the "
                    f"CPU ({n['vela']['accelerator']}): {', '.join(n['vela']['cpu_ops'][:8])}"
                )
    for n in rows:
        if n["vela"] is None:
            lines.append(
                f"- {Path(n['file']).name} on {n['profile']}: {n.get('vela_note', '')}; the latency "
                "above is kseg's estimate."
            )
        elif "error" in n["vela"]:
            lines.append(f"- {Path(n['file']).name} on {n['profile']}: {n['vela']['error']}")
    lines.append("")
    return lines


def write_json_report(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    return write_json(path, report)


def write_markdown(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    return write_text(path, to_markdown(report))


def write_charts(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """PNG charts into ``out_dir``; returns the files written ([] without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out = Path(out_dir)
    written: list[Path] = []
    results = report.get("results", [])
    if not results:
        return written

    def save(fig: Any, name: str) -> None:
        target = out / name
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)
        written.append(target)

    # 1. latency distribution per (model, threads)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(results) + 2), 4))
    data = [r["runs_ms"] for r in results if r.get("runs_ms")]
    labels = [f"{_name(r)}\n{r['threads']} thr" for r in results if r.get("runs_ms")]
    if data:
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        flat = [v for d in data for v in d]
        if max(flat) > 10 * sorted(flat)[len(flat) // 2]:
            ax.set_yscale("log")  # a few stalls on a busy machine would squash the boxes
        ax.set_ylabel("latency per inference (ms)")
        ax.set_title("Latency distribution")
        ax.grid(axis="y", alpha=0.3)
        save(fig, "latency_distribution.png")
    else:
        plt.close(fig)

    # 2. p50 latency vs threads
    by_file: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        by_file.setdefault(_name(r), []).append((int(r["threads"] or 0), r["latency_ms"]["p50"]))
    if any(len(v) > 1 for v in by_file.values()):
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, pts in by_file.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel("threads")
        ax.set_ylabel("p50 latency (ms)")
        ax.set_title("Latency vs threads")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, "latency_vs_threads.png")

    # 3. size vs Dice vs latency (needs Dice from model cards)
    cards = {Path(m["path"]).name: m.get("card") or {} for m in report.get("models", [])}
    pts3 = []
    for name, pts in by_file.items():
        dice = cards.get(name, {}).get("tflite_dice")
        size = next(r["size_bytes"] for r in results if _name(r) == name)
        if isinstance(dice, (int, float)):
            pts3.append((name, min(p[1] for p in pts), float(dice), size))
    if pts3:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        biggest = max(p[3] for p in pts3)
        for name, lat, dice, size in pts3:
            ax.scatter(lat, dice, s=40 + 400 * size / biggest, alpha=0.6)
            ax.annotate(f"{name}\n{size / 1024:.0f} KiB", (lat, dice), fontsize=7)
        ax.set_xlabel("p50 latency (ms)")
        ax.set_ylabel("Dice (model card)")
        ax.set_title("Size (marker area) vs Dice vs latency")
        ax.grid(alpha=0.3)
        save(fig, "size_dice_latency.png")
    return written
