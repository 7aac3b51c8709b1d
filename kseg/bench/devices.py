"""Device profiles (``configs/devices/*.yaml``): what an NPU, DSP or CPU runs and how fast.

A profile is a hand-written summary of a delegate's documented op support and of its hardware,
used by :mod:`kseg.bench.npu` to emulate partitioning without the device. Fields:

``name``, ``description``, ``kind`` (``npu|dsp|gpu|cpu``)
    identity; ``kind: cpu`` means every op runs on the device itself (no handoffs).
``peak_ops_per_s``, ``memory_bandwidth_bytes_per_s``, ``utilization``
    the roofline: an op takes ``max(ops / (peak * utilization), bytes / bandwidth)``;
    1 MAC = 2 ops. ``float_peak_ops_per_s`` is used for float ops on a device that runs them.
``sram_bytes``
    on-chip memory; peak live activations above it spill to DRAM.
``handoff_cost_us``
    cost of one transfer between the accelerator and the host CPU (there are two per partition).
``cpu_peak_ops_per_s``, ``cpu_float_peak_ops_per_s``, ``cpu_memory_bandwidth_bytes_per_s``
    the host CPU that runs fallback ops.
``dtypes``, ``static_shapes``, ``max_rank``
    defaults for every op: allowed tensor types, whether an unknown dimension forces a fallback,
    the largest tensor rank.
``partition_policy`` (``all|first_only``), ``max_partitions``
    ``first_only``: only ops before the first unsupported op are delegated (EdgeTPU compiler);
    ``max_partitions``: partitions after the first N fall back (TFLite NNAPI delegate).
``ops``
    ``all``, or a mapping from TFLite builtin op name to constraints (all optional):
    ``dtypes``, ``kernel_max``, ``kernel_sizes``, ``strides``, ``dilations``, ``activations``,
    ``align_corners``, ``half_pixel_centers``, ``max_channels``, ``max_rank``, ``note``;
    ``scale_factors`` (integer upscale factors a RESIZE_* op may use, output / input height, or
    (output - 1) / (input - 1) with align_corners) and ``half_pixel_scale_factors`` (the same
    with half_pixel_centers).
``extends``
    the name (or path) of a profile whose fields this one starts from; its own keys replace them.
``vela_accelerator``, ``vela_system_config``, ``vela_memory_mode``
    an Arm Ethos-U profile's Vela ``--accelerator-config`` (``ethos-u55-256``) and optional
    ``Arm/vela.ini`` sections: with ``ethos-u-vela`` installed, ``kseg bench`` reports Vela's cycle
    estimate beside kseg's (:mod:`kseg.bench.vela`).

Peak figures are public datasheet-level numbers, rounded; treat estimates as such.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kseg._attrs import attrs_dict
from kseg.errors import ConfigError, did_you_mean

#: Ethos-U configurations Arm's Vela compiles for (``vela --accelerator-config``); a profile's
#: ``vela_accelerator`` names one. Profiles sit at the bottom of kseg.bench: NPU emulation
#: (``npu.py``) and Vela (``vela.py``) import them, never the other way round.
VELA_ACCELERATORS = (
    "ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256",
    "ethos-u65-512", "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024",
    "ethos-u85-2048",
)  # fmt: skip

PROFILE_DIR_ENV = "KSEG_DEVICES"
_KINDS = ("npu", "dsp", "gpu", "cpu")
_POLICIES = ("all", "first_only")
_RULE_KEYS = {
    "dtypes": list,
    "kernel_max": int,
    "kernel_sizes": list,
    "strides": list,
    "dilations": list,
    "activations": list,
    "align_corners": list,
    "half_pixel_centers": list,
    "max_channels": int,
    "max_rank": int,
    "scale_factors": list,
    "half_pixel_scale_factors": list,
    "note": str,
}
_PROFILE_KEYS = {
    "name", "description", "kind", "peak_ops_per_s", "float_peak_ops_per_s",
    "memory_bandwidth_bytes_per_s", "utilization", "sram_bytes", "handoff_cost_us",
    "cpu_peak_ops_per_s", "cpu_float_peak_ops_per_s", "cpu_memory_bandwidth_bytes_per_s",
    "dtypes", "static_shapes", "max_rank", "partition_policy", "max_partitions", "ops",
    "extends", "vela_accelerator", "vela_system_config", "vela_memory_mode",
}  # fmt: skip


@dataclass(frozen=True)
class OpRule:
    """Constraints under which a device runs one op type (None = unconstrained)."""

    name: str
    dtypes: tuple[str, ...] | None = None
    kernel_max: int | None = None
    kernel_sizes: tuple[int, ...] | None = None
    strides: tuple[int, ...] | None = None
    dilations: tuple[int, ...] | None = None
    activations: tuple[str, ...] | None = None
    align_corners: tuple[bool, ...] | None = None
    half_pixel_centers: tuple[bool, ...] | None = None
    max_channels: int | None = None
    max_rank: int | None = None
    scale_factors: tuple[int, ...] | None = None
    half_pixel_scale_factors: tuple[int, ...] | None = None
    note: str = ""


@dataclass(frozen=True)
class DeviceProfile:
    """One device; see the module docstring for the meaning of each field."""

    name: str
    path: str
    description: str = ""
    kind: str = "npu"
    peak_ops_per_s: float = 1e12
    float_peak_ops_per_s: float | None = None
    memory_bandwidth_bytes_per_s: float = 1e10
    utilization: float = 0.5
    sram_bytes: int = 1 << 20
    handoff_cost_us: float = 100.0
    cpu_peak_ops_per_s: float = 2e10
    cpu_float_peak_ops_per_s: float = 1e10
    cpu_memory_bandwidth_bytes_per_s: float = 5e9
    dtypes: tuple[str, ...] = ("int8", "uint8")
    static_shapes: bool = True
    max_rank: int = 4
    partition_policy: str = "all"
    max_partitions: int | None = None
    all_ops: bool = False
    ops: dict[str, OpRule] = field(default_factory=dict)
    vela_accelerator: str | None = None
    vela_system_config: str | None = None
    vela_memory_mode: str | None = None

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cpu"

    def to_dict(self) -> dict[str, Any]:
        """The summary reports show: :data:`_SUMMARY` and the supported ops."""
        return {
            **attrs_dict(self, _SUMMARY),
            "supported_ops": "all" if self.all_ops else sorted(self.ops),
            "vela_accelerator": self.vela_accelerator,
        }


#: the fields of a profile's summary (:meth:`DeviceProfile.to_dict`), in its order
_SUMMARY = (
    "name",
    "path",
    "kind",
    "peak_ops_per_s",
    "memory_bandwidth_bytes_per_s",
    "utilization",
    "sram_bytes",
    "handoff_cost_us",
    "partition_policy",
    "max_partitions",
)


def profile_dirs() -> list[Path]:
    """Folders searched for ``NAME.yaml``: ``$KSEG_DEVICES``, ``./configs/devices``, the repo's."""
    dirs = []
    if os.environ.get(PROFILE_DIR_ENV):
        dirs.append(Path(os.environ[PROFILE_DIR_ENV]))
    dirs.append(Path.cwd() / "configs" / "devices")
    dirs.append(Path(__file__).resolve().parents[2] / "configs" / "devices")
    return dirs


def available_profiles() -> dict[str, Path]:
    """Profile name -> file, first folder wins."""
    found: dict[str, Path] = {}
    for d in profile_dirs():
        if d.is_dir():
            for f in sorted(d.glob("*.yaml")):
                found.setdefault(f.stem, f)
    return found


def resolve_profile(name_or_path: str | os.PathLike[str]) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise ConfigError(f"{p}: device profile not found")
        return p
    profiles = available_profiles()
    if str(name_or_path) not in profiles:
        valid = ", ".join(sorted(profiles)) or "(none found; pass a path to a .yaml profile)"
        raise ConfigError(f"unknown device profile {str(name_or_path)!r}; valid: {valid}")
    return profiles[str(name_or_path)]


def load_profile(name_or_path: str | os.PathLike[str]) -> DeviceProfile:
    """Load and validate a profile by name (``edgetpu``) or path.

    Raises:
        ConfigError: missing file, unknown key, bad value, or an op name that is not a TFLite
            builtin (one line naming the file, the op and the valid names).
    """
    from kseg.bench.analyze import valid_op_names

    path = resolve_profile(name_or_path)
    raw = load_raw_profile(path)
    kw: dict[str, Any] = {"name": str(raw.get("name", path.stem)), "path": str(path)}
    for key in (
        "description", "kind", "partition_policy", "vela_accelerator", "vela_system_config",
        "vela_memory_mode",
    ):  # fmt: skip
        if key in raw:
            kw[key] = str(raw[key])
    for key in (
        "peak_ops_per_s", "float_peak_ops_per_s", "memory_bandwidth_bytes_per_s", "utilization",
        "handoff_cost_us", "cpu_peak_ops_per_s", "cpu_float_peak_ops_per_s",
        "cpu_memory_bandwidth_bytes_per_s",
    ):  # fmt: skip
        if raw.get(key) is not None:
            kw[key] = _number(raw[key], key, path, float)
    for key in ("sram_bytes", "max_rank", "max_partitions"):
        if raw.get(key) is not None:
            kw[key] = _number(raw[key], key, path, int)
    if "static_shapes" in raw:
        kw["static_shapes"] = bool(raw["static_shapes"])
    if "dtypes" in raw:
        kw["dtypes"] = tuple(str(d) for d in raw["dtypes"])
    if kw.get("kind", "npu") not in _KINDS:
        raise ConfigError(
            f"{path}: kind {kw['kind']!r} is not valid; use one of: {', '.join(_KINDS)}"
        )
    if kw.get("partition_policy", "all") not in _POLICIES:
        raise ConfigError(
            f"{path}: partition_policy {kw['partition_policy']!r} is not valid; use one of: {', '.join(_POLICIES)}"
        )
    if kw.get("vela_accelerator") and kw["vela_accelerator"] not in VELA_ACCELERATORS:
        raise ConfigError(
            f"{path}: vela_accelerator {kw['vela_accelerator']!r} is not valid; use one of: {', '.join(VELA_ACCELERATORS)}"
        )
    if not 0 < kw.get("utilization", 0.5) <= 1:
        raise ConfigError(f"{path}: utilization must be in (0, 1]")
    ops = raw.get("ops", {})
    if ops == "all":
        kw["all_ops"] = True
        kw["ops"] = {}
    elif isinstance(ops, dict):
        valid = set(valid_op_names())
        rules = {}
        for name, rule in ops.items():
            if name not in valid:
                raise ConfigError(
                    f"{path}: unknown op {name!r}{did_you_mean(name, sorted(valid))}; valid TFLite builtin ops: {', '.join(sorted(valid))}"
                )
            rules[name] = _rule(name, rule or {}, path)
        kw["ops"] = rules
    else:
        raise ConfigError(f"{path}: 'ops' must be 'all' or a mapping of op name -> constraints")
    return DeviceProfile(**kw)


def load_raw_profile(
    name_or_path: str | os.PathLike[str], _seen: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The profile's YAML mapping with ``extends:`` resolved (the base's keys, then its own).

    Raises:
        ConfigError: unreadable file, not a mapping, unknown key, or an ``extends`` cycle.
    """
    import yaml

    path = resolve_profile(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(
            f"{path}: cannot read device profile ({str(e).splitlines()[0]})"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a device profile must be a mapping of fields")
    unknown = sorted(set(raw) - _PROFILE_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(_PROFILE_KEYS))}"
        )
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if str(path.resolve()) in _seen:
        raise ConfigError(f"{path}: 'extends' loops back to this profile; remove the cycle")
    if Path(str(base)).suffix not in (".yaml", ".yml") and Path(str(base)).name == str(base):
        sibling = path.parent / f"{base}.yaml"
        base = sibling if sibling.is_file() else base
    merged = load_raw_profile(base, (*_seen, str(path.resolve())))
    merged.pop("name", None)
    merged.pop("description", None)
    merged.update(raw)
    return merged


def _number(value: Any, key: str, path: Path, tp: type) -> Any:
    try:
        return tp(float(value)) if tp is int else tp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: {key} must be a number, got {value!r}") from None


def _rule(name: str, raw: dict[str, Any], path: Path) -> OpRule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: constraints of op {name} must be a mapping (or empty)")
    kw: dict[str, Any] = {"name": name}
    for key, value in raw.items():
        if key not in _RULE_KEYS:
            raise ConfigError(
                f"{path}: op {name}: unknown constraint {key!r}; valid: {', '.join(sorted(_RULE_KEYS))}"
            )
        tp = _RULE_KEYS[key]
        if tp is list:
            if not isinstance(value, list):
                raise ConfigError(f"{path}: op {name}: {key} must be a list")
            kw[key] = tuple(str(v) if key in ("dtypes", "activations") else v for v in value)
        else:
            kw[key] = _number(value, f"op {name}: {key}", path, tp) if tp is int else str(value)
    return OpRule(**kw)
