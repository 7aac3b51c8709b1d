"""Training precision: float32 or a Keras mixed-precision policy, chosen by ``train.precision``.

``auto`` picks ``mixed_bfloat16`` only on CPUs with bfloat16 units where a speed-up is measured or
documented (:data:`BF16_FAST_FLAGS`: Intel AMX, flag ``amx_bf16``; AVX512-BF16, flag
``avx512_bf16``, measured by ``tools/bench_train_speed.py``, figures in ``docs/benchmarks.md``).
With GPUs it picks ``mixed_float16`` (Keras adds dynamic loss scaling when it compiles a float16
model) when every visible GPU has tensor cores (NVIDIA compute capability
:data:`TENSOR_CORE_CAPABILITY` or newer, where NVIDIA and the Keras mixed-precision guide
report 2-3x; older GPUs run float16 no faster); everywhere else it is ``float32``.
``mixed_float16`` needs a GPU (its loss scaling exists for GPU tensor cores). The GPU branch is
unit-tested with a faked device list; it has not been run on a GPU here (README, docs/scaling.md).

Under a mixed policy the variables stay float32, the losses and metrics are computed in float32
(``kseg.losses.prepare`` and ``kseg.metrics`` cast ``y_pred``) and the output head is float32
(``kseg.models._mask_head``). The saved checkpoints are rebuilt in float32
(:func:`to_float32`) so conversion, parity and every later command see an ordinary model.

Reference: Micikevicius et al., "Mixed Precision Training", ICLR 2018; Kalamkar et al.,
"A Study of BFLOAT16 for Deep Learning Training", 2019.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kseg.config import Precision
from kseg.errors import ConfigError
from kseg.models._dtype import is_mixed, to_float32

#: CPU flags (``/proc/cpuinfo``) under which ``auto`` chooses bfloat16, with the evidence.
#: Without either, bfloat16 is emulated and slower than float32.
BF16_FAST_FLAGS: dict[str, str] = {
    "amx_bf16": "Intel AMX bfloat16 tiles (oneDNN's bf16 kernels; Intel reports 2-3x)",
    "avx512_bf16": "AVX512-BF16 dot products (measured ~4x float32 training on AMD EPYC / "
    "TF 2.21 oneDNN, docs/benchmarks.md)",
}


#: the first NVIDIA compute capability with tensor cores (Volta); mixed float16 pays from here on
TENSOR_CORE_CAPABILITY = (7, 0)


@dataclass(frozen=True)
class GpuInfo:
    """A visible GPU as TensorFlow describes it (``tf.config.experimental.get_device_details``).

    ``compute_capability`` is ``None`` when TensorFlow does not report one (e.g. a ROCm GPU).
    """

    name: str
    compute_capability: tuple[int, int] | None = None

    @property
    def tensor_cores(self) -> bool:
        cc = self.compute_capability
        return cc is not None and tuple(cc) >= TENSOR_CORE_CAPABILITY

    def describe(self) -> str:
        cc = self.compute_capability
        return (
            f"{self.name} (compute capability {cc[0]}.{cc[1]})"
            if cc
            else f"{self.name} (compute capability unknown)"
        )


@dataclass(frozen=True)
class PrecisionChoice:
    """The resolved precision and why it was chosen (written to the run directory)."""

    requested: str
    policy: str  #: a Keras policy name: float32, mixed_bfloat16 or mixed_float16
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"requested": self.requested, "policy": self.policy, "reason": self.reason}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of the first processor listed in ``cpuinfo`` (empty if unreadable)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def resolve_precision(
    requested: Precision | str,
    *,
    flags: set[str] | None = None,
    gpus: int | Sequence[GpuInfo] | None = None,
) -> PrecisionChoice:
    """Turn ``train.precision`` into a Keras policy name plus the reason.

    Args:
        requested: ``auto``, ``float32``, ``mixed_bfloat16`` or ``mixed_float16``.
        flags: CPU flags (default: read ``/proc/cpuinfo``).
        gpus: the visible GPUs (default: ask TensorFlow, :func:`gpu_devices`); a number stands
            for that many GPUs whose compute capability is unknown.

    Raises:
        ConfigError: ``mixed_float16`` without a GPU.
    """
    requested = Precision(requested)
    if gpus is None:
        gpus = gpu_devices()
    elif isinstance(gpus, int):
        gpus = [GpuInfo(f"GPU:{i}") for i in range(gpus)]
    gpus = list(gpus)
    if requested is Precision.MIXED_FLOAT16:
        if not gpus:
            raise ConfigError(
                "train.precision = mixed_float16 needs a GPU and none is visible; "
                "use auto, float32 or mixed_bfloat16 on a CPU"
            )
        return PrecisionChoice(requested.value, "mixed_float16", "requested")
    if requested is not Precision.AUTO:
        return PrecisionChoice(requested.value, requested.value, "requested")
    if gpus:
        slow = [g for g in gpus if not g.tensor_cores]
        if not slow:
            return PrecisionChoice(
                "auto",
                "mixed_float16",
                f"{len(gpus)} GPU(s) with tensor cores ({gpus[0].describe()}): float16 compute, "
                "float32 weights, dynamic loss scaling",
            )
        return PrecisionChoice(
            "auto",
            "float32",
            f"GPU {slow[0].describe()} has no tensor cores (compute capability "
            f"{TENSOR_CORE_CAPABILITY[0]}.{TENSOR_CORE_CAPABILITY[1]}+): float16 would not be "
            "faster; float32",
        )
    flags = cpu_flags() if flags is None else flags
    for flag, why in BF16_FAST_FLAGS.items():
        if flag in flags:
            return PrecisionChoice("auto", "mixed_bfloat16", f"CPU flag {flag}: {why}")
    reason = "CPU has no bfloat16 units (no amx_bf16 / avx512_bf16): bfloat16 would be emulated"
    return PrecisionChoice("auto", "float32", reason)


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[None]:
    """Set Keras' global dtype policy inside the block and restore the previous one after."""
    from kseg._keras import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def gpu_devices() -> list[GpuInfo]:
    """The GPUs TensorFlow sees, with their compute capability when it reports one."""
    from kseg._keras import tf

    out = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):  # not every build reports details
            details = {}
        cc = details.get("compute_capability")
        out.append(GpuInfo(details.get("device_name", device.name), tuple(cc) if cc else None))
    return out


__all__ = [
    "GpuInfo",
    "PrecisionChoice",
    "gpu_devices",
    "cpu_flags",
    "resolve_precision",
    "precision_policy",
    "to_float32",
    "is_mixed",
    "BF16_FAST_FLAGS",
    "TENSOR_CORE_CAPABILITY",
]
