"""Arm's Ethos-U compiler (Vela) as an optional second opinion beside kseg's roofline estimate.

`ethos-u-vela <https://pypi.org/project/ethos-u-vela/>`_ compiles an INT8 ``.tflite`` for an
Ethos-U microNPU and reports a cycle-based performance estimate: inference time, SRAM used and the
traffic to off-chip memory, and which operators stay on the CPU. kseg runs it as a subprocess
(``vela`` is a command-line tool; nothing is imported from it), so kseg works without it and a Vela
in its own virtual environment (``tools/vela_check.sh`` makes one) serves as well.

The ``vela`` executable is found, in this order, at ``$KSEG_VELA``, on ``PATH``, beside the running
Python interpreter, and in ``/tmp/kseg-vela-venv/bin`` (``$KSEG_VELA_VENV``).

Example:
    >>> from kseg.bench.vela import vela_available, vela_report
    >>> if vela_available():
    ...     r = vela_report("model_int8.tflite", accelerator="ethos-u55-128")
    ...     print(r["latency_ms"], r["cpu_ops"], r["all_on_npu"])

:func:`calibrate` fits a device profile's ``utilization`` and ``memory_bandwidth_bytes_per_s``
so that kseg's per-op roofline (:mod:`kseg.bench.npu`) matches Vela's totals on a set of models.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from kseg.bench.devices import VELA_ACCELERATORS as ACCELERATORS
from kseg.errors import ConfigError, ModelError

VELA_ENV = "KSEG_VELA"
VELA_VENV_ENV = "KSEG_VELA_VENV"
DEFAULT_VELA_VENV = "/tmp/kseg-vela-venv"
#: What the tools/ scripts install; the CSV columns below are those of this release.
VELA_REQUIREMENT = "ethos-u-vela==5.2.0"
VELA_LABEL = "Vela cycle estimate (Arm Ethos-U compiler performance model; not measured)"
#: Vela's own defaults per NPU family, passed explicitly so that every run says what it assumed.
DEFAULT_SYSTEM_CONFIG = {
    "ethos-u55": "Ethos_U55_High_End_Embedded",
    "ethos-u65": "Ethos_U65_High_End",
    "ethos-u85": "Ethos_U85_SYS_DRAM_Mid",
}
DEFAULT_MEMORY_MODE = {
    "ethos-u55": "Shared_Sram",
    "ethos-u65": "Dedicated_Sram",
    "ethos-u85": "Dedicated_Sram",
}
#: The operator Vela puts in the compiled file for each part it runs on the NPU.
NPU_OP = "CUSTOM:ethos-u"


def find_vela() -> str | None:
    """Path of the ``vela`` executable, or None (search order in the module docstring)."""
    env = os.environ.get(VELA_ENV)
    if env:
        return env if Path(env).is_file() and os.access(env, os.X_OK) else None
    on_path = shutil.which("vela")
    if on_path:
        return on_path
    venv = Path(os.environ.get(VELA_VENV_ENV, DEFAULT_VELA_VENV))
    for cand in (Path(sys.executable).parent / "vela", venv / "bin" / "vela"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def vela_available() -> bool:
    """True when a working ``vela`` executable is found."""
    exe = find_vela()
    return exe is not None and _version(exe) is not None


def vela_version() -> str | None:
    exe = find_vela()
    return _version(exe) if exe else None


@cache
def _version(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip().splitlines()
    return text[-1].strip() if out.returncode == 0 and text else None


def _require_vela() -> str:
    exe = find_vela()
    if exe is None or _version(exe) is None:
        where = os.environ.get(VELA_ENV)
        hint = f"${VELA_ENV}={where} is not a working vela executable; " if where else ""
        raise ConfigError(
            f"{hint}Arm's Vela compiler is not installed; pip install '{VELA_REQUIREMENT}' "
            f"(or `bash tools/vela_check.sh --install`), or set {VELA_ENV}=/path/to/vela"
        )
    return exe


def family(accelerator: str) -> str:
    """``"ethos-u55-256"`` -> ``"ethos-u55"``."""
    return accelerator.rsplit("-", 1)[0]


def check_accelerator(accelerator: str) -> str:
    if accelerator not in ACCELERATORS:
        raise ConfigError(
            f"unknown Ethos-U accelerator {accelerator!r}; valid: {', '.join(ACCELERATORS)}"
        )
    return accelerator


def vela_report(
    tflite_path: str | os.PathLike[str],
    accelerator: str = "ethos-u55-256",
    system_config: str | None = None,
    memory_mode: str | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Compile ``tflite_path`` with Vela and return its performance summary.

    Args:
        tflite_path: an INT8 ``.tflite`` file.
        accelerator: a Vela ``--accelerator-config`` (``ethos-u55-128``, ``ethos-u55-256``, ...).
        system_config, memory_mode: sections of Vela's ``Arm/vela.ini``; None uses Vela's default
            for the NPU family (U55: ``Ethos_U55_High_End_Embedded`` at 500 MHz, ``Shared_Sram``).
        out_dir: keep Vela's outputs (compiled ``*_vela.tflite``, summary CSV, log) there;
            default: a temporary folder, deleted.

    Returns:
        ``latency_ms``, ``cycles``, ``clock_hz``, ``ops_total`` (TFLite ops of the input),
        ``npu_ops``, ``cpu_ops`` (op types left on the CPU, one entry per op), ``cpu_op_reasons``,
        ``all_on_npu``, ``sram_bytes``, ``offchip_read_bytes``, ``offchip_write_bytes``,
        ``offchip_bytes_by_memory``, ``macs``, ``vela_version``, ``accelerator``,
        ``system_config``, ``memory_mode``, ``label`` and ``summary`` (Vela's CSV row).

    Raises:
        ConfigError: Vela is not installed or the accelerator name is unknown.
        ModelError: the file is missing or Vela rejects it (one line with Vela's reason).
    """
    from kseg.bench.analyze import analyze_model
    from kseg.runtime.model import check_tflite_file

    path = check_tflite_file(tflite_path)
    check_accelerator(accelerator)
    exe = _require_vela()
    fam = family(accelerator)
    system_config = system_config or DEFAULT_SYSTEM_CONFIG[fam]
    memory_mode = memory_mode or DEFAULT_MEMORY_MODE[fam]
    with tempfile.TemporaryDirectory(prefix="kseg-vela-") as tmp:
        out = Path(out_dir) if out_dir is not None else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        cmd = [
            exe, str(path.resolve()), "--accelerator-config", accelerator,
            "--config", "Arm/vela.ini", "--system-config", system_config,
            "--memory-mode", memory_mode, "--output-dir", str(out.resolve()),
            "--show-cpu-operations",
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, cwd=str(out)
            )
        except subprocess.TimeoutExpired:
            raise ModelError(f"{path}: Vela did not finish within {timeout:.0f} s") from None
        log = proc.stdout + proc.stderr
        if out_dir is not None:
            (out / f"{path.stem}_vela_{accelerator}.log").write_text(log, encoding="utf-8")
        csv_file = out / f"{path.stem}_summary_{system_config}.csv"
        compiled = out / f"{path.stem}_vela.tflite"
        if proc.returncode != 0 or not csv_file.is_file() or not compiled.is_file():
            raise ModelError(f"{path}: Vela failed for {accelerator}: {_error_line(log)}")
        row = parse_summary_csv(csv_file)
        ops_total = len(analyze_model(path).ops)
        cpu_ops = [op.name for op in analyze_model(compiled).ops if op.name != NPU_OP]
    report = summary_from_row(row)
    report.update(
        {
            "file": str(path),
            "ops_total": ops_total,
            "npu_ops": ops_total - len(cpu_ops),
            "cpu_ops": cpu_ops,
            "cpu_op_reasons": parse_cpu_reasons(log),
            "all_on_npu": not cpu_ops,
            "vela_version": _version(exe),
            "vela": exe,
            "accelerator": accelerator,
            "label": VELA_LABEL,
        }
    )
    m = re.search(r"CPU operators = (\d+)", log)
    n = re.search(r"NPU operators = (\d+)", log)
    report["vela_op_counts"] = {
        "cpu": int(m.group(1)) if m else None,
        "npu": int(n.group(1)) if n else None,
    }
    if out_dir is not None:
        report["compiled"] = str(compiled)
        report["summary_csv"] = str(csv_file)
    return report


def _error_line(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "error" in ln.lower():
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def parse_summary_csv(path: str | os.PathLike[str]) -> dict[str, str]:
    """The single data row of Vela's ``*_summary_<system config>.csv`` as a dict."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise ModelError(f"{path}: expected one row in Vela's summary CSV, found {len(rows)}")
    return rows[0]


_MEMORIES = ("sram", "dram", "on_chip_flash", "off_chip_flash")
_OFFCHIP = ("dram", "off_chip_flash")


def _num(row: dict[str, str], key: str) -> float:
    try:
        value = float(row[key])
    except KeyError:
        raise ModelError(
            f"Vela's summary CSV has no column {key!r} (written by another Vela release; "
            f"kseg reads {VELA_REQUIREMENT})"
        ) from None
    except ValueError:
        return float("nan")
    return value


def summary_from_row(row: dict[str, str]) -> dict[str, Any]:
    """Latency, cycles, memory and traffic from one summary CSV row (units: ms, bytes, Hz)."""
    clock = _num(row, "core_clock")
    cycles = _num(row, "cycles_total")
    seconds = _num(row, "inference_time")
    traffic = {
        mem: {
            "read_bytes": int(
                _num(row, f"{mem}_feature_map_read_bytes") + _num(row, f"{mem}_weight_read_bytes")
            ),
            "write_bytes": int(
                _num(row, f"{mem}_feature_map_write_bytes") + _num(row, f"{mem}_weight_write_bytes")
            ),
        }
        for mem in _MEMORIES
    }
    return {
        "latency_ms": 1e3 * seconds,
        "cycles": int(cycles),
        "clock_hz": clock,
        "macs": int(_num(row, "nn_macs")),
        # Vela reports memory used in KiB
        "sram_bytes": int(round(1024 * _num(row, "sram_memory_used"))),
        "offchip_read_bytes": sum(traffic[m]["read_bytes"] for m in _OFFCHIP),
        "offchip_write_bytes": sum(traffic[m]["write_bytes"] for m in _OFFCHIP),
        "offchip_bytes_by_memory": {m: traffic[m] for m in _OFFCHIP},
        "sram_traffic_bytes": traffic["sram"]["read_bytes"] + traffic["sram"]["write_bytes"],
        "system_config": row.get("system_config"),
        "memory_mode": row.get("memory_mode"),
        "accelerator_configuration": row.get("accelerator_configuration"),
        "summary": dict(row),
    }


_REASON = re.compile(
    r"Warning \(supported operators\) operator: (\S+), ofm: '([^']*)'\s*\nReason: ([^\n]*)"
)


def parse_cpu_reasons(log: str) -> list[dict[str, str]]:
    """Vela's "supported operators" warnings: op type, output tensor and the reason it stays on CPU."""
    return [
        {"op": m.group(1), "ofm": m.group(2), "reason": m.group(3).strip()}
        for m in _REASON.finditer(log)
    ]


# ----------------------------------------------------------------------------- beside kseg


def compare(kseg_npu: dict[str, Any], vela: dict[str, Any]) -> dict[str, Any]:
    """kseg's emulation (``NpuReport.to_dict()``) beside a :func:`vela_report`: ratio and op agreement."""
    est = kseg_npu["estimated_latency_ms"]["total"]
    return {
        "kseg_estimate_ms": est,
        "vela_ms": vela["latency_ms"],
        "ratio_kseg_over_vela": est / vela["latency_ms"] if vela["npu_ops"] else None,
        "kseg_ops_on_host": kseg_npu["ops_on_host_cpu"],
        "vela_ops_on_cpu": len(vela["cpu_ops"]),
        "placement_agrees": kseg_npu["ops_on_host_cpu"] == len(vela["cpu_ops"]),
    }


# ----------------------------------------------------------------------------- calibration

#: The profile fields :func:`calibrate` fits.
CALIBRATED_FIELDS = ("utilization", "memory_bandwidth_bytes_per_s")


def _terms(report: Any) -> tuple[list[tuple[float, float]], float]:
    """Per device op (ops / peak, bytes), and the fixed rest (CPU fallback + handoffs) in s."""
    prof = report.profile
    fpeak = prof.float_peak_ops_per_s or prof.peak_ops_per_s
    dev = [
        (p.op.ops / (fpeak if p.op.is_float else prof.peak_ops_per_s), float(p.op.bytes_moved))
        for p in report.placements
        if p.device == "device"
    ]
    fixed = sum(p.time_s for p in report.placements if p.device != "device")
    return dev, fixed + report.handoffs * prof.handoff_cost_us * 1e-6


def _latency_s(terms: tuple[list[tuple[float, float]], float], util: float, bw: float) -> float:
    dev, fixed = terms
    return sum(max(c / util, b / bw) for c, b in dev) + fixed


def calibrate(
    pairs: Sequence[tuple[Any, float]],
    profile: Any,
    *,
    util_range: tuple[float, float] = (0.02, 1.0),
    bw_range: tuple[float, float] = (1e8, 1e12),
) -> dict[str, Any]:
    """Fit ``profile``'s utilization and bandwidth to Vela's latencies.

    Args:
        pairs: ``(ModelInfo, vela latency in ms)`` per model (at least one).
        profile: the :class:`~kseg.bench.devices.DeviceProfile` to calibrate.

    Minimises the mean squared log ratio ``log(kseg / vela)`` over a log-spaced grid, refined
    twice around the best point. Returns the fitted values, the profile with them
    (``"profile"``), and the ratio kseg / Vela per model before and after, with their geometric
    mean and worst factor (``max(r, 1/r)``).
    """
    from kseg.bench.npu import emulate

    if not pairs:
        raise ConfigError("calibration needs at least one model with a Vela estimate")
    terms = [_terms(emulate(info, profile)) for info, _ in pairs]
    targets = [ms * 1e-3 for _, ms in pairs]

    def loss(u: float, b: float) -> float:
        return sum(
            math.log(_latency_s(t, u, b) / y) ** 2 for t, y in zip(terms, targets, strict=True)
        )

    lu, hu = map(math.log, util_range)
    lb, hb = map(math.log, bw_range)
    best = (float("inf"), profile.utilization, profile.memory_bandwidth_bytes_per_s)
    for _ in range(3):
        for i in range(41):
            u = math.exp(lu + (hu - lu) * i / 40)
            for j in range(41):
                b = math.exp(lb + (hb - lb) * j / 40)
                val = loss(u, b)
                if val < best[0]:
                    best = (val, u, b)
        su, sb = (hu - lu) / 10, (hb - lb) / 10
        lu, hu = (
            max(math.log(util_range[0]), math.log(best[1]) - su),
            min(math.log(util_range[1]), math.log(best[1]) + su),
        )
        lb, hb = math.log(best[2]) - sb, math.log(best[2]) + sb
    _, util, bw = best
    fitted = dataclasses.replace(profile, utilization=util, memory_bandwidth_bytes_per_s=bw)
    util0, bw0 = profile.utilization, profile.memory_bandwidth_bytes_per_s
    before = [_latency_s(t, util0, bw0) / y for t, y in zip(terms, targets, strict=True)]
    after = [_latency_s(t, util, bw) / y for t, y in zip(terms, targets, strict=True)]
    return {
        "utilization": util,
        "memory_bandwidth_bytes_per_s": bw,
        "before": {
            "utilization": profile.utilization,
            "memory_bandwidth_bytes_per_s": profile.memory_bandwidth_bytes_per_s,
        },
        "ratios_before": before,
        "ratios_after": after,
        "summary_before": ratio_summary(before),
        "summary_after": ratio_summary(after),
        "profile": fitted,
    }


def ratio_summary(ratios: Sequence[float]) -> dict[str, float]:
    """Geometric mean of kseg / Vela and the worst factor either way."""
    logs = [math.log(r) for r in ratios]
    return {
        "geomean": math.exp(sum(logs) / len(logs)),
        "worst_factor": math.exp(max(abs(v) for v in logs)),
    }


def write_calibrated_profile(
    result: dict[str, Any], out: str | os.PathLike[str], *, note: str = ""
) -> Path:
    """Write the profile YAML of ``result["profile"]`` with the fitted values (atomic).

    The new file copies the calibrated profile's source YAML, replacing only the fitted fields,
    so op rules and the other figures stay as they were.
    """
    import yaml

    from kseg.atomic import write_text
    from kseg.bench.devices import load_raw_profile

    prof = result["profile"]
    raw = load_raw_profile(prof.path)  # with any `extends:` resolved, so the file stands alone
    raw["utilization"] = round(float(result["utilization"]), 4)
    raw["memory_bandwidth_bytes_per_s"] = float(f"{result['memory_bandwidth_bytes_per_s']:.4g}")
    header = (
        f"# {prof.name} calibrated against Vela: utilization and memory_bandwidth_bytes_per_s fitted\n"
        f"# (kseg.bench.vela.calibrate). kseg/Vela geomean {result['summary_before']['geomean']:.3f} "
        f"-> {result['summary_after']['geomean']:.3f}.{(' ' + note) if note else ''}\n"
    )
    return write_text(out, header + yaml.safe_dump(raw, sort_keys=False, width=120))


def one_ethos_profile(profiles: Sequence[str]) -> Any:
    """The single profile with a ``vela_accelerator`` among ``profiles`` (else a one-line error)."""
    from kseg.bench.devices import load_profile

    ethos = [p for p in (load_profile(n) for n in profiles) if p.vela_accelerator]
    if len(ethos) != 1:
        raise ConfigError(
            "--vela-calibrate needs exactly one Ethos-U profile in --npu (one with a "
            f"vela_accelerator), got {len(ethos)}: e.g. --npu ethos_u55_256"
        )
    return ethos[0]


def calibrate_from_report(
    report: dict[str, Any], profiles: Sequence[str], out: str | os.PathLike[str]
) -> str:
    """``kseg bench --vela-calibrate OUT``: fit the one Ethos-U profile of ``report``, write OUT.

    Uses the files Vela runs entirely on the NPU (its latency covers the NPU only). Returns a
    one-paragraph summary with the ratio kseg / Vela before and after, per file.
    """
    from kseg.bench.analyze import analyze_model

    prof = one_ethos_profile(profiles)
    rows = [
        n
        for n in report["npu"]
        if n["profile"] == prof.name and n.get("vela") and n["vela"].get("all_on_npu")
    ]
    if not rows:
        raise ConfigError(
            f"--vela-calibrate: Vela ran no file entirely on the NPU for {prof.name}; "
            "give INT8 models whose every op Vela places on the NPU"
        )
    pairs = [(analyze_model(n["file"]), n["vela"]["latency_ms"]) for n in rows]
    result = calibrate(pairs, prof)
    path = write_calibrated_profile(result, out, note=f"{len(pairs)} file(s) via kseg bench")
    lines = [
        f"calibrated {prof.name} on {len(pairs)} file(s): utilization {prof.utilization:.3f} -> "
        f"{result['utilization']:.3f}, memory bandwidth {prof.memory_bandwidth_bytes_per_s / 1e9:.2f}"
        f" -> {result['memory_bandwidth_bytes_per_s'] / 1e9:.2f} GB/s; kseg / Vela:"
    ]
    for n, b, a in zip(rows, result["ratios_before"], result["ratios_after"], strict=True):
        lines.append(f"  {Path(n['file']).name}: {b:.2f} before, {a:.2f} after")
    lines.append(f"wrote {path} (use it with --npu {path})")
    return "\n".join(lines)
