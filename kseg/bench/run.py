"""``kseg bench`` as a library call: measure files, calibrate the machine, emulate devices.

Example:
    >>> report = run_benchmark(["a_int8.tflite", "a_float.tflite"], threads=[1, 2],
    ...                        npu=["edgetpu"], baseline="a_float.tflite")
    >>> report["results"][0]["latency_ms"]["p50"]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from kseg.bench.analyze import analyze_model
from kseg.bench.devices import load_profile
from kseg.bench.latency import calibrate_peak, machine_info, measure, measure_isolated
from kseg.bench.npu import emulate
from kseg.errors import ConfigError, ModelError
from kseg.runtime.model import check_tflite_file, read_card
from kseg.runtime.onnx_model import check_onnx_file, is_onnx

#: Top-level keys copied from the baseline's (or the only) result, for scripts that read one number.
SUMMARY_KEYS = ("latency_ms", "init_ms", "first_ms", "peak_rss_mb", "size_bytes", "throughput_ips")


def parse_int_list(text: str | Sequence[int] | None, what: str) -> list[int] | None:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (positive integers), None stays None."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        return [int(t) for t in text]
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(
            f"{what} must be comma-separated integers like 1,2,4; got {text!r}"
        ) from None
    if not values or any(v < 0 for v in values):
        raise ConfigError(f"{what} must be non-negative integers like 1,2,4; got {text!r}")
    return values


def run_benchmark(
    files: Sequence[str | os.PathLike[str]],
    *,
    threads: Sequence[int] = (1,),
    runs: int = 50,
    warmup: int = 5,
    runtime: str = "auto",
    delegate: str | None = None,
    npu: Sequence[str] = (),
    baseline: str | os.PathLike[str] | None = None,
    cpus: Sequence[int] | None = None,
    isolate: bool = True,
    calibrate: bool = True,
    measure_latency: bool = True,
    vela: str = "auto",
    profile: bool = False,
) -> dict[str, Any]:
    """Benchmark ``files`` and return the report dict (see :mod:`kseg.bench.report`).

    ``vela``: for device profiles with a ``vela_accelerator`` (Arm Ethos-U), ``"auto"`` adds Vela's
    cycle estimate when ``ethos-u-vela`` is installed, ``"yes"`` requires it, ``"no"`` skips it.

    ``.onnx`` files run on ONNX Runtime (CPU provider, the same thread count) beside the
    ``.tflite`` files, in the same table; static analysis and device emulation are TFLite-only.

    ``profile=True`` adds ``report["profiles"]``: per-op latency of each file at the first thread
    count (:func:`kseg.bench.profile.profile_ops`).
    """
    paths = [_check_file(f) for f in files]
    if not paths:
        raise ConfigError("no model given; pass one or more FILE.tflite")
    base = None
    if baseline is not None:
        base = _check_file(baseline)
        if base.resolve() not in [p.resolve() for p in paths]:
            paths.insert(0, base)
    profiles = [load_profile(n) for n in npu]  # validate before spending time measuring
    if vela not in ("auto", "yes", "no"):
        raise ConfigError(f"vela must be auto, yes or no; got {vela!r}")
    use_vela = vela != "no" and any(p.vela_accelerator for p in profiles)
    if use_vela:
        from kseg.bench import vela as vela_mod

        if vela == "yes":
            vela_mod._require_vela()
        use_vela = vela_mod.vela_available()
    cpu_list = list(cpus) if cpus else None
    report: dict[str, Any] = {
        "format": "kseg-bench/1",
        "machine": machine_info(),
        "runtime": runtime,
        "delegate": delegate,
        "cpus": cpu_list,
        "baseline": str(base) if base else None,
        "models": [],
        "results": [],
        "npu": [],
        "calibration": {},
    }
    infos = {}
    for p in paths:
        card = read_card(p)
        if is_onnx(p):
            infos[p] = None
            macs = ((card or {}).get("source") or {}).get("macs")
            report["models"].append(
                {
                    "path": str(p),
                    "format": "onnx",
                    "size_bytes": p.stat().st_size,
                    "macs": macs,
                    "card": _card_summary(card),
                }
            )
            continue
        try:
            info = analyze_model(p)
        except ModelError as e:
            if "tflite" not in str(e) or "pip install" not in str(e):
                raise
            info = None  # no schema bindings on this device: latency only
            report.setdefault("notes", []).append(str(e))
        infos[p] = info
        entry = info.summary() if info else {"path": str(p), "size_bytes": p.stat().st_size}
        entry["card"] = _card_summary(card)
        report["models"].append(entry)
    if measure_latency:
        measure_file = partial(
            measure_isolated if isolate else measure,
            runs=runs,
            warmup=warmup,
            runtime=runtime,
            delegate=delegate,
            cpus=cpu_list,
        )
        for t in threads:
            n = t or None
            peak = None
            if calibrate:
                peak = calibrate_peak(threads=n, runtime=runtime, cpus=cpu_list, isolate=isolate)
                report["calibration"][str(t)] = peak
            for p in paths:
                r = measure_file(p, threads=n)
                info = infos[p]
                macs = info.total_macs if info else _card_macs(p)
                r["macs"] = macs
                r["gmacs_per_s"] = macs / (r["latency_ms"]["p50"] * 1e-3) / 1e9 if macs else None
                r["peak_share"] = (
                    r["gmacs_per_s"] / peak["gmacs_per_s"] if (peak and r["gmacs_per_s"]) else None
                )
                report["results"].append(r)
        _ratios(report, base)
        first = next(
            (
                r
                for r in report["results"]
                if base is None or Path(r["file"]).resolve() == base.resolve()
            ),
            report["results"][0],
        )
        for k in SUMMARY_KEYS:
            report[k] = first[k]
    onnx_paths = [p for p in paths if is_onnx(p)]
    if profiles and onnx_paths:
        report.setdefault("notes", []).append(
            "device emulation is for .tflite files; skipped "
            + ", ".join(p.name for p in onnx_paths)
        )
    for p in paths:
        if infos[p] is None:
            continue
        for prof in profiles:
            d = emulate(infos[p], prof).to_dict()
            d["file"] = str(p)
            if prof.vela_accelerator:
                d["vela"] = _vela_entry(p, prof, d) if use_vela else None
                if not use_vela:
                    d["vela_note"] = (
                        "Vela skipped (--vela no)"
                        if vela == "no"
                        else "ethos-u-vela not installed: kseg's roofline estimate only "
                        "(pip install 'kseg[vela]' for Vela's cycle estimate)"
                    )
            report["npu"].append(d)
    if profile:
        from kseg.bench.latency import pinned
        from kseg.bench.profile import profile_ops

        report["profiles"] = []
        with pinned(cpu_list):
            for p in (p for p in paths if not is_onnx(p)):  # per-op timing is TFLite-only
                report["profiles"].append(
                    profile_ops(
                        p,
                        threads=(threads[0] or None) if threads else 1,
                        runs=max(min(runs, 30), 5),
                        warmup=min(warmup, 3),
                        runtime=runtime,
                        delegate=delegate,
                    )
                )
    if profiles and any(infos[p] is None for p in paths if not is_onnx(p)):
        raise ModelError("device emulation needs the 'tflite' package; pip install tflite")
    return report


def _vela_entry(path: Path, prof: Any, kseg_npu: dict[str, Any]) -> dict[str, Any]:
    """Vela's report for ``path`` on ``prof``'s accelerator, with the comparison to kseg's."""
    from kseg.bench.vela import compare, vela_report

    try:
        v = vela_report(
            path,
            prof.vela_accelerator,
            prof.vela_system_config,
            prof.vela_memory_mode,
        )
    except ModelError as e:  # Vela rejected this file (e.g. float); keep the rest of the report
        return {"error": str(e), "accelerator": prof.vela_accelerator}
    v.pop("summary", None)
    v["comparison"] = compare(kseg_npu, v)
    return v


def _check_file(path: str | os.PathLike[str]) -> Path:
    return check_onnx_file(path) if is_onnx(path) else check_tflite_file(path)


def _card_macs(path: Path) -> int | None:
    """MACs of an ``.onnx`` from its card (counted on the Keras source model)."""
    return ((read_card(path) or {}).get("source") or {}).get("macs")


def _card_summary(card: dict[str, Any] | None) -> dict[str, Any] | None:
    if not card:
        return None
    keys = ("float_dice", "tflite_dice", "onnx_dice", "dice_drop", "size_bytes")
    out = {k: card[k] for k in keys if k in card}
    out["mode"] = (card.get("tflite") or card.get("onnx") or {}).get("mode")
    if "onnx" in card:
        out["format"] = "onnx"
    return out


def _ratios(report: dict[str, Any], base: Path | None) -> None:
    if base is None:
        return
    by_threads = {
        r["threads"]: r for r in report["results"] if Path(r["file"]).resolve() == base.resolve()
    }
    for r in report["results"]:
        b = by_threads.get(r["threads"])
        if b is None:
            continue
        r["ratio_vs_baseline"] = {
            "latency_p50": r["latency_ms"]["p50"] / b["latency_ms"]["p50"],
            "size": r["size_bytes"] / b["size_bytes"],
            "peak_rss": r["peak_rss_mb"] / b["peak_rss_mb"] if b["peak_rss_mb"] else None,
        }
