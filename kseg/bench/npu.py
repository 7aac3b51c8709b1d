"""Emulate a delegate/NPU from the flatbuffer: which ops it takes, partitions, handoffs, latency.

For each op in execution order the device profile decides whether the accelerator runs it (op
type, tensor types, static shapes, rank, kernel size, stride, dilation, fused activation, resize
modes) and, if not, why. Consecutive accelerator ops form a partition; every partition costs two
handoffs (host -> accelerator -> host). The latency is a per-op roofline,
``max(ops / (peak * utilization), bytes / bandwidth)`` (Williams et al., "Roofline: an insightful
visual performance model for multicore architectures", CACM 2009), plus the handoff costs: an
**estimate** for comparing models and devices, not a measurement.

Partitions follow execution order, as TFLite's delegate kernels see a topologically sorted graph;
a real delegate may merge independent branches into fewer partitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kseg.bench.analyze import ModelInfo, OpInfo
from kseg.bench.devices import DeviceProfile, OpRule

ESTIMATE_LABEL = "estimate (per-op roofline from the device profile; not measured)"


def check_op(profile: DeviceProfile, op: OpInfo) -> list[str]:
    """Reasons why ``profile``'s accelerator cannot run ``op`` (empty: it can)."""
    if profile.is_cpu and profile.all_ops:
        return []
    rule: OpRule | None = profile.ops.get(op.name)
    if rule is None and not profile.all_ops:
        return [f"{op.name} is not supported by {profile.name}"]
    reasons = []
    allowed = set(rule.dtypes if rule and rule.dtypes else profile.dtypes)
    bad = sorted({t.dtype for t in op.inputs + op.outputs if t.dtype not in allowed})
    if bad:
        reasons.append(f"{'/'.join(bad)} tensors (supports {', '.join(sorted(allowed))})")
    if profile.static_shapes and op.is_dynamic:
        reasons.append("dynamic shape (a dimension is unknown until run time)")
    max_rank = rule.max_rank if rule and rule.max_rank else profile.max_rank
    rank = max((len(t.shape) for t in op.inputs + op.outputs), default=0)
    if rank > max_rank:
        reasons.append(f"rank {rank} > {max_rank}")
    if rule is None:
        return reasons
    o = op.options
    if "filter" in o:
        kh, kw = o["filter"]
        if rule.kernel_max is not None and max(kh, kw) > rule.kernel_max:
            reasons.append(f"kernel {kh}x{kw} > {rule.kernel_max}")
        if rule.kernel_sizes is not None and (
            kh not in rule.kernel_sizes or kw not in rule.kernel_sizes
        ):
            reasons.append(f"kernel {kh}x{kw} not in {list(rule.kernel_sizes)}")
    if (
        rule.strides is not None
        and "stride" in o
        and any(s not in rule.strides for s in o["stride"])
    ):
        reasons.append(f"stride {o['stride']} not in {list(rule.strides)}")
    if (
        rule.dilations is not None
        and "dilation" in o
        and any(d not in rule.dilations for d in o["dilation"])
    ):
        reasons.append(f"dilation {o['dilation']} not in {list(rule.dilations)}")
    if rule.activations is not None and o.get("activation", "NONE") not in rule.activations:
        reasons.append(f"fused activation {o['activation']} not in {list(rule.activations)}")
    for key in ("align_corners", "half_pixel_centers"):
        allowed_vals = getattr(rule, key)
        if allowed_vals is not None and key in o and o[key] not in allowed_vals:
            reasons.append(f"{key}={o[key]} not supported")
    reasons += _resize_reasons(rule, op)
    if rule.max_channels is not None and op.outputs and op.outputs[0].shape:
        c = op.outputs[0].shape[-1]
        if c > rule.max_channels:
            reasons.append(f"{c} channels > {rule.max_channels}")
    if reasons and rule.note:
        reasons.append(f"note: {rule.note}")
    return reasons


def _resize_reasons(rule: OpRule, op: OpInfo) -> list[str]:
    """``scale_factors`` / ``half_pixel_scale_factors`` of a RESIZE_* op (Vela's rule)."""
    if rule.scale_factors is None and rule.half_pixel_scale_factors is None:
        return []
    if not op.inputs or not op.outputs:
        return []
    ifm, ofm = op.inputs[0].shape, op.outputs[0].shape
    if len(ifm) != 4 or len(ofm) != 4:
        return []
    (ih, iw), (oh, ow) = ifm[1:3], ofm[1:3]
    if (ih == iw == 1) or tuple(ifm) == tuple(ofm):
        return []
    align = bool(op.options.get("align_corners"))

    def factor(i: int, o: int) -> float | None:
        if align:
            return (o - 1) / (i - 1) if i > 1 else None
        return o / i

    fh, fw = factor(ih, oh), factor(iw, ow)
    if fh is None or fw is None or fh != fw:
        return [f"scale {ih}x{iw} -> {oh}x{ow} differs between height and width"]
    half = bool(op.options.get("half_pixel_centers"))
    allowed = rule.half_pixel_scale_factors if half else rule.scale_factors
    if allowed is None:
        allowed = rule.scale_factors if half else None
    if allowed is not None and (fh != int(fh) or int(fh) not in allowed):
        mode = "with half_pixel_centers " if half else ""
        return [f"scale factor {fh:g} {mode}not in {list(allowed)}"]
    return []


@dataclass
class Placement:
    op: OpInfo
    device: str  # "device" (the profiled accelerator) or "host" (CPU fallback)
    reasons: list[str] = field(default_factory=list)
    time_s: float = 0.0


@dataclass
class NpuReport:
    """The emulation of one model on one device profile."""

    profile: DeviceProfile
    model: ModelInfo
    placements: list[Placement]
    partitions: list[tuple[int, int]]  # (first op index, last op index), inclusive

    @property
    def handoffs(self) -> int:
        return 0 if self.profile.is_cpu else 2 * len(self.partitions)

    @property
    def fallbacks(self) -> list[Placement]:
        return [p for p in self.placements if p.device == "host"]

    def latency_ms(self) -> dict[str, float]:
        acc = sum(p.time_s for p in self.placements if p.device == "device")
        cpu = sum(p.time_s for p in self.placements if p.device == "host")
        handoff = self.handoffs * self.profile.handoff_cost_us * 1e-6
        return {
            "total": 1e3 * (acc + cpu + handoff),
            "device": 1e3 * acc,
            "cpu_fallback": 1e3 * cpu,
            "handoffs": 1e3 * handoff,
        }

    def to_dict(self) -> dict[str, Any]:
        model, prof = self.model, self.profile
        peak, at = model.activation_memory()
        total_macs = model.total_macs or 1
        npu_macs = sum(p.op.macs for p in self.placements if p.device == "device")
        warnings = []
        if model.int8_intended and model.float_ops:
            warnings.append(
                f"{len(model.float_ops)} float op(s) in a model meant to be INT8: "
                + ", ".join(f"{op.index}:{op.name}" for op in model.float_ops[:8])
            )
        if model.dynamic_ops:
            warnings.append(
                f"{len(model.dynamic_ops)} op(s) with dynamic shapes (convert with a fixed batch of 1)"
            )
        if peak > prof.sram_bytes:
            warnings.append(
                f"peak activations {peak / 2**20:.2f} MiB exceed SRAM {prof.sram_bytes / 2**20:.2f} MiB "
                f"(spills to DRAM)"
            )
        return {
            "profile": prof.name,
            "profile_path": prof.path,
            "kind": prof.kind,
            "ops_total": len(self.placements),
            "ops_on_device": len(self.placements) - len(self.fallbacks),
            "ops_on_host_cpu": len(self.fallbacks),
            "macs_on_device_fraction": npu_macs / total_macs,
            "partitions": [
                {
                    "first_op": a,
                    "last_op": b,
                    "num_ops": b - a + 1,
                    "macs": sum(p.op.macs for p in self.placements[a : b + 1]),
                }
                for a, b in self.partitions
            ],  # fmt: skip
            "num_partitions": len(self.partitions),
            "handoffs": self.handoffs,
            "fallbacks": [
                {"index": p.op.index, "op": p.op.name, "reasons": p.reasons} for p in self.fallbacks
            ],
            "float_ops": [f"{op.index}:{op.name}" for op in model.float_ops],
            "dynamic_ops": [f"{op.index}:{op.name}" for op in model.dynamic_ops],
            "int8_intended": model.int8_intended,
            "peak_activation_bytes": peak,
            "peak_activation_op": at,
            "sram_bytes": prof.sram_bytes,
            "fits_sram": peak <= prof.sram_bytes,
            "estimated_latency_ms": self.latency_ms(),
            "latency_label": ESTIMATE_LABEL,
            "warnings": warnings,
        }


def _op_time(op: OpInfo, peak: float, bandwidth: float, utilization: float) -> float:
    return max(op.ops / (peak * utilization), op.bytes_moved / bandwidth)


def emulate(model: ModelInfo, profile: DeviceProfile) -> NpuReport:
    """Place every op of ``model`` on ``profile``'s accelerator or the host CPU."""
    placements: list[Placement] = []
    stopped = False
    for op in model.ops:
        reasons = check_op(profile, op)
        if not reasons and stopped:
            reasons = [
                f"after the first unsupported op ({profile.name} delegates only the first segment)"
            ]
        if reasons and profile.partition_policy == "first_only":
            stopped = True
        placements.append(Placement(op, "host" if reasons else "device", reasons))
    partitions = _runs(placements)
    if profile.max_partitions is not None and len(partitions) > profile.max_partitions:
        # like the TFLite NNAPI delegate: keep the largest partitions (by MACs, then op count)
        ranked = sorted(
            partitions,
            key=lambda ab: (
                -sum(p.op.macs for p in placements[ab[0] : ab[1] + 1]),
                -(ab[1] - ab[0]),
            ),
        )
        for a, b in ranked[profile.max_partitions :]:
            for p in placements[a : b + 1]:
                p.device = "host"
                p.reasons = [f"partition beyond max_partitions={profile.max_partitions}"]
        partitions = _runs(placements)
    if profile.is_cpu:
        partitions = [(0, len(placements) - 1)] if placements else []
    for p in placements:
        if p.device == "device":
            fpeak = profile.float_peak_ops_per_s or profile.peak_ops_per_s
            peak = fpeak if p.op.is_float else profile.peak_ops_per_s
            bw = profile.memory_bandwidth_bytes_per_s
            util = profile.utilization
        else:
            peak = profile.cpu_float_peak_ops_per_s if p.op.is_float else profile.cpu_peak_ops_per_s
            bw = profile.cpu_memory_bandwidth_bytes_per_s
            util = 0.5
        p.time_s = _op_time(p.op, peak, bw, util)
    return NpuReport(profile, model, placements, partitions)


def _runs(placements: list[Placement]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, p in enumerate(placements):
        if p.device == "device" and start is None:
            start = i
        if p.device != "device" and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(placements) - 1))
    return runs
