"""Training precision: float32 or a Keras mixed-precision policy, chosen by ``train.precision``.

``auto`` picks ``mixed_bfloat16`` only on CPUs with bfloat16 units where a speed-up is measured or
documented (:data:`BF16_FAST_FLAGS`: Intel AMX, flag ``amx_bf16``; AVX512-BF16, flag
``avx512_bf16``, measured by ``tools/bench_train_speed.py``, figures in ``docs/benchmarks.md``);
everywhere else it is ``float32``. ``mixed_float16`` needs a GPU (its loss scaling exists for GPU tensor cores).

Under a mixed policy the variables stay float32, the losses and metrics are computed in float32
(``kseg.losses.prepare`` and ``kseg.metrics`` cast ``y_pred``) and the output head is float32
(``kseg.models._mask_head``). The saved checkpoints are rebuilt in float32
(:func:`to_float32`) so conversion, parity and every later command see an ordinary model.

Reference: Micikevicius et al., "Mixed Precision Training", ICLR 2018; Kalamkar et al.,
"A Study of BFLOAT16 for Deep Learning Training", 2019.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
    requested: Precision | str, *, flags: set[str] | None = None, gpus: int | None = None
) -> PrecisionChoice:
    """Turn ``train.precision`` into a Keras policy name plus the reason.

    Args:
        requested: ``auto``, ``float32``, ``mixed_bfloat16`` or ``mixed_float16``.
        flags: CPU flags (default: read ``/proc/cpuinfo``).
        gpus: number of visible GPUs (default: ask TensorFlow).

    Raises:
        ConfigError: ``mixed_float16`` without a GPU.
    """
    requested = Precision(requested)
    if gpus is None:
        gpus = _gpu_count()
    if requested is Precision.MIXED_FLOAT16:
        if gpus == 0:
            raise ConfigError(
                "train.precision = mixed_float16 needs a GPU and none is visible; "
                "use auto, float32 or mixed_bfloat16 on a CPU"
            )
        return PrecisionChoice(requested.value, "mixed_float16", "requested")
    if requested is not Precision.AUTO:
        return PrecisionChoice(requested.value, requested.value, "requested")
    if gpus:
        return PrecisionChoice("auto", "float32", "GPU present: float32 (ask for mixed_float16)")
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


def _gpu_count() -> int:
    from kseg._keras import tf

    return len(tf.config.list_physical_devices("GPU"))


__all__ = [
    "PrecisionChoice",
    "cpu_flags",
    "resolve_precision",
    "precision_policy",
    "to_float32",
    "is_mixed",
    "BF16_FAST_FLAGS",
]
