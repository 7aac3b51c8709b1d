"""Fine-tuning from a trained model: ``kseg train --init MODEL [--freeze-encoder [--unfreeze-after N]]``.

:func:`load_matching_weights` copies every layer of ``MODEL`` whose name and weight shapes match
the new model, so a model trained on one data set starts another (other input size, other channel
count, other number of classes). The first convolution crosses channel counts: a kernel trained on
RGB sums its input channels for gray input (a gray image seen as ``(g, g, g)`` gives the same
response), a gray kernel is repeated over three channels and divided by three (an RGB image with
equal channels gives the gray response). Everything else that does not match is skipped and named.

The encoder (:mod:`kseg.models.parts`) can be frozen, and unfrozen after ``N`` epochs. A frozen
BatchNormalization layer runs in inference mode (its moving statistics stay), as in Keras'
transfer-learning guide. The optimizer is built over all weights before freezing, so unfreezing
in the middle of ``fit`` only rebuilds the train step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kseg._keras import keras
from kseg.atomic import write_json
from kseg.config import TrainConfig
from kseg.errors import ConfigError


@dataclasses.dataclass
class InitReport:
    """What :func:`load_matching_weights` did, layer by layer (written as ``RUN/init.json``)."""

    source: str
    loaded: list[str]
    converted: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    unused: list[str]
    encoder: list[str] = dataclasses.field(default_factory=list)
    freeze_encoder: bool = False
    unfreeze_after: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        n = len(self.loaded) + len(self.converted)
        line = f"init: loaded {n} of {n + len(self.skipped)} weighted layers from {self.source}"
        if self.converted:
            line += "; converted " + ", ".join(
                f"{c['name']} ({c['from']} -> {c['to']} channels)" for c in self.converted
            )
        if self.skipped:
            shown = ", ".join(f"{s['name']} ({s['reason']})" for s in self.skipped[:6])
            more = f" (+{len(self.skipped) - 6} more)" if len(self.skipped) > 6 else ""
            line += f"; skipped {shown}{more}"
        if self.freeze_encoder:
            line += f"; encoder frozen ({len(self.encoder)} layers)"
            if self.unfreeze_after is not None:
                line += f" until epoch {self.unfreeze_after}"
        return line


def convert_first_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
    """A first-convolution kernel ``(kh, kw, c_in, c_out)`` for ``channels`` input channels.

    RGB -> gray sums over the input channels; gray -> RGB repeats the kernel and divides by 3.

    Raises:
        ValueError: any other pair of channel counts.
    """
    have = kernel.shape[2]
    if have == channels:
        return kernel
    if have == 3 and channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    if have == 1 and channels == 3:
        return np.repeat(kernel, 3, axis=2) / 3.0
    raise ValueError(f"cannot convert a {have}-channel kernel to {channels} channels")


def _reads_input(layer, model) -> bool:
    """True for a layer fed by the model input through weightless layers only (the first conv)."""
    seen = 0
    while seen < 8:
        nodes = getattr(layer, "_inbound_nodes", [])
        if not nodes:
            return False
        src = nodes[0].inbound_layers
        if isinstance(src, list):
            return False
        if isinstance(src, keras.layers.InputLayer):
            return True
        if src.weights:
            return False
        layer, seen = src, seen + 1
    return False


def _source_model(path: str | Path):
    from kseg.models import load_model

    p = Path(path)
    if p.is_dir() and (p / "config.yaml").is_file():
        p = p / "best.keras"  # a run directory: its best model
    if not p.exists():
        raise ConfigError(f"--init {path}: model file not found; give a .keras/.h5 file or a run")
    return load_model(p), str(p)


def load_matching_weights(model, source: str | Path | Any) -> InitReport:
    """Copy the weights of every layer of ``source`` (a model file, run directory or Keras model)
    whose name and weight shapes match ``model``; convert the first convolution across channel
    counts; report the rest."""
    if isinstance(source, str | Path):
        src, name = _source_model(source)
    else:
        src, name = source, getattr(source, "name", "model")
    by_name = {layer.name: layer for layer in src.layers if layer.weights}
    channels = int(model.inputs[0].shape[-1])
    src_channels = int(src.inputs[0].shape[-1])
    loaded: list[str] = []
    converted: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        other = by_name.get(layer.name)
        if other is None:
            skipped.append({"name": layer.name, "reason": "not in the source model"})
            continue
        mine = [tuple(w.shape) for w in layer.get_weights()]
        theirs = other.get_weights()
        if len(mine) != len(theirs):
            skipped.append({"name": layer.name, "reason": "different weights"})
            continue
        if all(a == b.shape for a, b in zip(mine, theirs, strict=True)):
            layer.set_weights(theirs)
            loaded.append(layer.name)
            used.add(layer.name)
            continue
        k_mine, k_src = mine[0], theirs[0].shape
        only_input_channels = (
            len(k_mine) == 4
            and len(k_src) == 4
            and (k_mine[:2], k_mine[3]) == (k_src[:2], k_src[3])
            and (k_mine[2], k_src[2]) == (channels, src_channels)
            and all(a == b.shape for a, b in zip(mine[1:], theirs[1:], strict=True))
        )
        if only_input_channels and _reads_input(layer, model):
            try:
                kernel = convert_first_kernel(theirs[0], channels)
            except ValueError as exc:
                skipped.append({"name": layer.name, "reason": str(exc)})
                continue
            layer.set_weights([kernel.astype(theirs[0].dtype), *theirs[1:]])
            converted.append({"name": layer.name, "from": src_channels, "to": channels})
            used.add(layer.name)
            continue
        shapes = " ".join(
            f"{b.shape}->{a}" for a, b in zip(mine, theirs, strict=True) if a != b.shape
        )
        skipped.append({"name": layer.name, "reason": f"shape {shapes}"})
    return InitReport(
        source=name,
        loaded=loaded,
        converted=converted,
        skipped=skipped,
        unused=[n for n in by_name if n not in used],
    )


def set_encoder_trainable(model, trainable: bool) -> list[str]:
    """Freeze or unfreeze the encoder (:func:`kseg.models.parts.encoder_layers`); its names."""
    from kseg.models.parts import encoder_layers

    layers = encoder_layers(model)
    if not layers:
        raise ConfigError(
            f"model {model.name!r} has no encoder layers to freeze (see kseg/models/parts.py); "
            "drop --freeze-encoder"
        )
    for layer in layers:
        layer.trainable = trainable
    return [layer.name for layer in layers]


def check(t: TrainConfig) -> None:
    """Refuse inconsistent fine-tuning settings before any data is loaded."""
    if t.unfreeze_after is not None and not t.freeze_encoder:
        raise ConfigError(
            "train.unfreeze_after needs train.freeze_encoder: true (--freeze-encoder)"
        )
    if t.unfreeze_after is not None and t.unfreeze_after < 1:
        raise ConfigError(f"train.unfreeze_after = {t.unfreeze_after}: use an epoch count >= 1")
    if t.init is not None and not Path(t.init).exists():
        raise ConfigError(f"train.init {t.init}: model file not found; give a .keras/.h5 or a run")


def prepare(model, t: TrainConfig, compile_fn: Callable[[], None]) -> InitReport | None:
    """Apply ``train.init`` / ``freeze_encoder`` and compile (inside the strategy scope).

    Freezing comes before ``compile_fn`` because Keras' ``fit`` restores the trainable state the
    model was compiled with; the optimizer is then built over every weight, frozen ones included,
    so :class:`UnfreezeEncoder` can add them in the middle of ``fit``.

    Returns the report (``None`` without ``train.init`` and without freezing).
    """
    check(t)
    if t.init is None and not t.freeze_encoder:
        compile_fn()
        return None
    report = (
        load_matching_weights(model, t.init)
        if t.init is not None
        else InitReport("none (random init)", [], [], [], [])
    )
    if t.init is not None and not report.loaded and not report.converted:
        raise ConfigError(
            f"--init {t.init}: no layer matches the new model by name and shape; "
            "give a model of the same architecture"
        )
    if t.freeze_encoder:
        report.encoder = set_encoder_trainable(model, False)
        report.freeze_encoder = True
        report.unfreeze_after = t.unfreeze_after
    compile_fn()
    if t.freeze_encoder:
        model.optimizer.build([v for v in model.weights if v.trainable])
    return report


def write_report(path: Path, report: InitReport) -> Path:
    return write_json(path, report.as_dict())


class UnfreezeEncoder(keras.callbacks.Callback):
    """Keep the encoder frozen for the first ``epochs`` epochs, then train it too.

    The state follows the epoch number (so ``--resume`` after the switch trains the encoder).
    """

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self.frozen: bool | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        frozen = epoch < self.epochs
        if frozen == self.frozen:
            return
        set_encoder_trainable(self.model, not frozen)
        self.frozen = frozen
        self.model.train_function = self.model.make_train_function(force=True)


def callbacks(t: TrainConfig) -> list[keras.callbacks.Callback]:
    """The fine-tuning callbacks for ``fit`` (none unless ``train.unfreeze_after`` is set)."""
    return [UnfreezeEncoder(t.unfreeze_after)] if t.unfreeze_after is not None else []


__all__ = [
    "InitReport",
    "UnfreezeEncoder",
    "convert_first_kernel",
    "load_matching_weights",
    "prepare",
    "set_encoder_trainable",
]
