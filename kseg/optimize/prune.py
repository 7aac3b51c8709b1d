"""Magnitude pruning with a per-layer policy, 2:4 structured sparsity, strip and report.

The policy assigns every prunable layer (Conv2D, Conv2DTranspose, SeparableConv2D, Dense;
depthwise kernels stay dense) a target sparsity from layer-name patterns:

- ``dense`` layers are never pruned: by default the first convolution (``@first_conv``) and the
  final 1x1 head (``@head``, also ``logits*``), whose few weights carry the most information
  per parameter;
- ``overrides`` give a pattern a fixed sparsity;
- the other layers are split into encoder (``enc*``, ``stem*``, ``bottleneck*``) and decoder
  (everything else); the encoder is pruned ``encoder_ratio`` times harder than the decoder and the
  two rates are solved so that the weighted mean over these layers equals the requested sparsity.

The pruning schedule updates the masks every ``frequency`` steps; tfmot's default (100) never
fires in a short fine-tune, so the frequency is fitted to the number of steps: about ten mask
updates, the last one at ~60 % of the steps (polynomial) so the remaining steps recover accuracy
with the final masks.

Reference:
    Zhu and Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model
    compression", 2017 (polynomial schedule). Mishra et al., "Accelerating Sparse Deep Neural
    Networks", 2021 (2:4 structured sparsity).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from kseg._keras import keras
from kseg.config import StrEnum
from kseg.errors import ConfigError

_sparsity = tfmot.sparsity.keras

# Depthwise kernels are left dense: they hold a few percent of the weights, are the most
# sensitive to pruning, and tfmot's wrapper does not mask them in tf_keras 2.21 (measured: 0 %).
PRUNABLE = ("Conv2D", "Conv2DTranspose", "SeparableConv2D", "Dense")
M_BY_N_CAPABLE = ("Conv2D", "Dense")  # tfmot's m-by-n pruning supports these kernels only


class PruneSchedule(StrEnum):
    POLYNOMIAL = "polynomial"  #: sparsity rises from 0 to the target (Zhu & Gupta)
    CONSTANT = "constant"  #: the target from the first step


@dataclasses.dataclass(frozen=True)
class PrunePolicy:
    """Which layers are pruned and how hard (see the module docstring).

    Patterns are ``fnmatch`` patterns on layer names; ``@first_conv`` and ``@head`` name the
    first and the last prunable layer of the graph.
    """

    dense: tuple[str, ...] = ("@first_conv", "@head", "logits*")
    encoder: tuple[str, ...] = ("enc*", "stem*", "bottleneck*", "down*")
    encoder_ratio: float = 1.25
    overrides: dict[str, float] = dataclasses.field(default_factory=dict)
    max_sparsity: float = 0.95

    @classmethod
    def from_file(cls, path: str | Path) -> PrunePolicy:
        """Read a YAML policy: keys ``dense``, ``encoder``, ``encoder_ratio``, ``overrides``, ``max_sparsity``."""
        from kseg.config import read_yaml

        return cls.from_dict(read_yaml(path), source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "policy") -> PrunePolicy:
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in raw:
            if key not in valid:
                raise ConfigError(
                    f"{source}: unknown pruning policy key {key!r}; valid: {', '.join(valid)}"
                )
        kw: dict[str, Any] = {}
        for key in ("dense", "encoder"):
            if key in raw:
                value = raw[key]
                kw[key] = tuple([value] if isinstance(value, str) else value or ())
        if "encoder_ratio" in raw:
            kw["encoder_ratio"] = float(raw["encoder_ratio"])
            if kw["encoder_ratio"] < 1.0:
                raise ConfigError(f"{source}: encoder_ratio = {raw['encoder_ratio']} must be >= 1")
        if "max_sparsity" in raw:
            kw["max_sparsity"] = float(raw["max_sparsity"])
        if "overrides" in raw:
            over = {str(k): float(v) for k, v in (raw["overrides"] or {}).items()}
            for k, v in over.items():
                if not 0.0 <= v < 1.0:
                    raise ConfigError(f"{source}: overrides[{k!r}] = {v} must be in [0, 1)")
            kw["overrides"] = over
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"dense": list(self.dense), "encoder": list(self.encoder)}

    def plan(
        self, model: keras.Model, sparsity: float, *, m_by_n: tuple[int, int] | None = None
    ) -> dict[str, float]:
        """Target sparsity for every prunable layer (0.0 = left dense)."""
        if not 0.0 <= sparsity < 1.0:
            raise ConfigError(f"--sparsity {sparsity} must be in [0, 1), e.g. 0.5")
        layers = [layer for layer in model.layers if type(layer).__name__ in PRUNABLE]
        if not layers:
            return {}
        first, head = layers[0].name, layers[-1].name
        plan: dict[str, float] = {}
        enc: list[keras.layers.Layer] = []
        dec: list[keras.layers.Layer] = []
        for layer in layers:
            name = layer.name
            tokens = {"@first_conv": name == first, "@head": name == head}
            if any(tokens.get(p, False) or fnmatch.fnmatchcase(name, p) for p in self.dense):
                plan[name] = 0.0
            elif m_by_n is not None:
                plan[name] = (
                    1.0 - m_by_n[0] / m_by_n[1] if type(layer).__name__ in M_BY_N_CAPABLE else 0.0
                )
            elif (
                hit := next((p for p in self.overrides if fnmatch.fnmatchcase(name, p)), None)
            ) is not None:
                plan[name] = self.overrides[hit]
            elif any(fnmatch.fnmatchcase(name, p) for p in self.encoder):
                enc.append(layer)
            else:
                dec.append(layer)
        n_enc = sum(_kernel_size(layer) for layer in enc)
        n_dec = sum(_kernel_size(layer) for layer in dec)
        total = n_enc + n_dec
        if total:
            ratio = self.encoder_ratio if n_enc and n_dec else 1.0
            s_dec = sparsity * total / (ratio * n_enc + n_dec)
            s_enc = min(self.max_sparsity, ratio * s_dec)
            if n_dec:
                s_dec = min(self.max_sparsity, (sparsity * total - s_enc * n_enc) / n_dec)
            for layer in enc:
                plan[layer.name] = s_enc
            for layer in dec:
                plan[layer.name] = s_dec
        return plan


def _kernel_size(layer: keras.layers.Layer) -> int:
    return int(sum(np.prod(w.shape) for w in layer.weights if len(w.shape) >= 2))


def make_schedule(kind: PruneSchedule | str, sparsity: float, total_steps: int) -> Any:
    """A tfmot schedule whose masks update about ten times within ``total_steps``."""
    kind = PruneSchedule(kind)
    total_steps = max(1, int(total_steps))
    if kind is PruneSchedule.CONSTANT:
        frequency = max(1, total_steps // 10)
        return _sparsity.ConstantSparsity(sparsity, begin_step=0, frequency=frequency)
    ramp = max(1, int(total_steps * 0.6))
    frequency = max(1, ramp // 10)
    end_step = max(frequency, ramp // frequency * frequency)
    return _sparsity.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=sparsity,
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )


def prune_model(
    model: keras.Model,
    sparsity: float,
    *,
    total_steps: int,
    policy: PrunePolicy | None = None,
    schedule: PruneSchedule | str = PruneSchedule.POLYNOMIAL,
    m_by_n: tuple[int, int] | None = None,
) -> tuple[keras.Model, dict[str, float]]:
    """Wrap the layers chosen by ``policy`` with tfmot pruning wrappers.

    Args:
        sparsity: target share of zero weights over the pruned (non-dense) layers.
        total_steps: fine-tuning steps (epochs x steps per epoch), to fit the schedule.
        m_by_n: e.g. ``(2, 4)`` for 2:4 structured sparsity (Conv2D/Dense only; 50 %).

    Returns:
        The wrapped model (train it with :class:`tfmot.sparsity.keras.UpdatePruningStep`) and the
        plan ``{layer: target sparsity}``.
    """
    from kseg.optimize.qat import quantize_scope

    policy = policy or PrunePolicy()
    plan = policy.plan(model, sparsity, m_by_n=m_by_n)

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        clone = layer.__class__.from_config(layer.get_config())
        target = plan.get(layer.name, 0.0)
        if target <= 0.0:
            return clone
        kwargs: dict[str, Any] = {"pruning_schedule": make_schedule(schedule, target, total_steps)}
        if m_by_n is not None:
            kwargs["sparsity_m_by_n"] = tuple(m_by_n)
        return _sparsity.prune_low_magnitude(clone, **kwargs)

    with quantize_scope():
        wrapped = keras.models.clone_model(model, clone_function=wrap)
    for layer in model.layers:
        if plan.get(layer.name, 0.0) > 0.0:
            wrapped.get_layer(f"prune_low_magnitude_{layer.name}").layer.set_weights(
                layer.get_weights()
            )
        else:
            wrapped.get_layer(layer.name).set_weights(layer.get_weights())
    return wrapped, plan


def pruning_callbacks() -> list[keras.callbacks.Callback]:
    return [_sparsity.UpdatePruningStep()]


def strip(model: keras.Model) -> keras.Model:
    """Remove the pruning wrappers (the zeros stay in the kernels)."""
    return _sparsity.strip_pruning(model)


def sparsity_report(
    model: keras.Model,
    plan: dict[str, float] | None = None,
    *,
    m_by_n: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Achieved sparsity per prunable layer of a stripped model, and overall.

    ``overall_pruned`` is over the layers the plan pruned; ``overall`` over every prunable kernel.
    """
    rows = []
    zeros_all = size_all = zeros_pr = size_pr = 0
    for layer in model.layers:
        if type(layer).__name__ not in PRUNABLE:
            continue
        kernels = [w.numpy() for w in layer.weights if len(w.shape) >= 2]
        size = int(sum(k.size for k in kernels))
        zeros = int(sum(np.count_nonzero(k == 0) for k in kernels))
        target = (plan or {}).get(layer.name, 0.0)
        row = {
            "layer": layer.name,
            "class": type(layer).__name__,
            "weights": size,
            "target": round(float(target), 4),
            "achieved": round(zeros / size, 4) if size else 0.0,
        }
        if m_by_n is not None and target > 0:
            row["m_by_n_ok"] = bool(all(_is_m_by_n(k, m_by_n) for k in kernels))
        rows.append(row)
        zeros_all += zeros
        size_all += size
        if target > 0:
            zeros_pr += zeros
            size_pr += size
    return {
        "layers": rows,
        "overall": zeros_all / size_all if size_all else 0.0,
        "overall_pruned": zeros_pr / size_pr if size_pr else 0.0,
        "weights": size_all,
    }


def _is_m_by_n(kernel: np.ndarray, m_by_n: tuple[int, int]) -> bool:
    """True when every block of ``n`` consecutive input-channel weights has at most ``m`` non-zeros."""
    m, n = m_by_n
    k = np.moveaxis(kernel, -2, -1) if kernel.ndim == 4 else kernel.T  # input channels last
    flat = k.reshape(-1, k.shape[-1])
    if flat.shape[-1] % n:
        return False
    blocks = flat.reshape(flat.shape[0], -1, n)
    return bool(np.all(np.count_nonzero(blocks, axis=-1) <= m))
