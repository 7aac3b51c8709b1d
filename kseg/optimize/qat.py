"""Quantization-aware training (QAT) for every kseg architecture.

tfmot's default 8-bit scheme covers convolutions, activations, pooling, ``Add`` and
``Concatenate``, but not ``Multiply`` (attention gates), ``Rescaling`` (the in-model
normalization of the pixel contract), group/layer normalization or kseg's custom layers. Left
alone, ``tfmot.quantization.keras.quantize_model`` refuses such a model. :func:`quantize_model`
annotates every layer instead:

- layers the default registry supports get tfmot's own config;
- the layers listed in :data:`OUTPUT_QUANTIZED` (and any other layer *without weights*) get
  :class:`OutputQuantizeConfig`: their computation stays as it is and a fake-quant node with a
  learned range is put on their output, which is exactly what the integer converter needs to
  give the op int8 input and output;
- a layer that has weights and that nothing above covers is left in float and listed in the
  :class:`QATReport` (and logged as a warning): never silently.

A QAT model does not reload from ``.keras`` (the quantize wrappers' configs are not restored);
``.h5`` and SavedModel round-trip, so :func:`save_qat_model` writes ``.h5`` and
:func:`quantize_scope` provides the custom objects for loading (``kseg.models.load_model`` uses
it).

Reference:
    Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-
    Only Inference", CVPR 2018.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow_model_optimization as tfmot

from kseg._attrs import dataclass_dict
from kseg._keras import keras, tf
from kseg.config import StrEnum
from kseg.errors import ModelError
from kseg.models.quant_objects import NoOpQuantizeConfig, OutputQuantizeConfig, tfmot_objects

log = logging.getLogger(__name__)

_quant = tfmot.quantization.keras
_MovingAverageQuantizer = _quant.quantizers.MovingAverageQuantizer


class QATScheme(StrEnum):
    """Which tfmot scheme turns the annotated model into a QAT model."""

    DEFAULT = "default"  #: Default8BitQuantizeScheme
    PRUNE_PRESERVE = "prune_preserve"  #: keeps pruned zeros fixed during QAT (collaborative)


#: Class names of layers tfmot does not cover and that kseg quantizes at their output.
OUTPUT_QUANTIZED: frozenset[str] = frozenset(
    {
        "Multiply",
        "Rescaling",
        "Normalization",
        "GroupNorm",
        "GroupNormalization",
        "LayerNormalization",
        "BatchNormalization",
        "Resizing",
        "Maximum",
        "Minimum",
        "Subtract",
        "Average",
    }
)

_FUSED_INTO_CONV = ("Conv2D", "DepthwiseConv2D")  # tfmot folds BN only after these
_FOLDED = object()  # marker: BN folded into the conv before it by tfmot's transforms


@dataclasses.dataclass
class QATReport:
    """What :func:`quantize_model` did to each layer.

    Attributes:
        default: layers quantized by tfmot's default registry.
        output_only: layer name -> class name of layers given :class:`OutputQuantizeConfig`.
        left_float: ``{"name", "class", "reason"}`` for each layer that stays in float.
    """

    default: list[str] = dataclasses.field(default_factory=list)
    output_only: dict[str, str] = dataclasses.field(default_factory=dict)
    left_float: list[dict[str, str]] = dataclasses.field(default_factory=list)
    sparsity_not_preserved: list[str] = dataclasses.field(default_factory=list)
    scheme: str = QATScheme.DEFAULT.value
    calibration_batches: int = 0

    @property
    def fully_quantized(self) -> bool:
        return not self.left_float

    def to_dict(self) -> dict[str, Any]:
        """``qat_report.json``: the scheme, ``fully_quantized``, then the layer lists."""
        return dataclass_dict(self, first=("scheme", "calibration_batches", "fully_quantized"))


def quantize_model(
    model: keras.Model,
    *,
    scheme: QATScheme | str = QATScheme.DEFAULT,
    leave_float: tuple[str, ...] = (),
    calibration: Any = None,
) -> tuple[keras.Model, QATReport]:
    """Wrap ``model`` for quantization-aware training.

    Args:
        model: a functional Keras model (a kseg zoo model, possibly pruned and stripped).
        scheme: ``default`` or ``prune_preserve`` (sparsity-preserving QAT; use it on a pruned,
            stripped model so its zeros survive into the INT8 file).
        leave_float: ``fnmatch`` patterns of layer names to keep in float on purpose (reported).
        calibration: images (N, H, W, C) to set the activation ranges from before fine-tuning
            (:func:`calibrate_ranges`); without them tfmot starts every range at [-6, 6].

    Returns:
        The QAT model (weights copied from ``model``; compile it before training) and the report.

    Example:
        >>> qat, report = quantize_model(create_model("attention_unet", input_shape=(64, 64, 1)))
        >>> report.left_float
        []
    """
    import fnmatch

    scheme = QATScheme(scheme)
    if any(isinstance(layer, keras.Model) for layer in model.layers):
        nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
        raise ModelError(
            f"model {model.name!r} nests sub-models {nested}; tfmot QAT needs a flat functional model"
        )
    registry = _default_registry()
    pp_registry = _prune_preserve_registry() if scheme is QATScheme.PRUNE_PRESERVE else None
    report = QATReport(scheme=scheme.value)

    def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
        cls = type(layer).__name__
        clone = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.InputLayer):
            return clone
        if any(fnmatch.fnmatchcase(layer.name, p) for p in leave_float):
            report.left_float.append(
                {"name": layer.name, "class": cls, "reason": "leave_float pattern"}
            )
            return clone
        config = _config_for(layer, model, registry)
        if config is _FOLDED:
            report.default.append(layer.name)
            return _quant.quantize_annotate_layer(clone)
        if config is None and registry.supports(layer):
            report.default.append(layer.name)
            if pp_registry is not None and not pp_registry.supports(layer) and layer.weights:
                # The prune-preserving registry lacks e.g. Conv2DTranspose: quantize it with the
                # default config (its zeros are then not held fixed during QAT; reported).
                report.sparsity_not_preserved.append(layer.name)
                return _quant.quantize_annotate_layer(
                    clone, quantize_config=registry.get_quantize_config(clone)
                )
            return _quant.quantize_annotate_layer(clone)
        if config is None:
            report.left_float.append(
                {"name": layer.name, "class": cls, "reason": "has weights and no QuantizeConfig"}
            )
            return clone
        if isinstance(config, OutputQuantizeConfig) and not isinstance(config, NoOpQuantizeConfig):
            report.output_only[layer.name] = cls
        else:
            report.default.append(layer.name)
        return _quant.quantize_annotate_layer(clone, quantize_config=config)

    with quantize_scope(), _inputs_in_order():
        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        if scheme is QATScheme.PRUNE_PRESERVE:
            qat = _quant.quantize_apply(
                annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
            )
        else:
            qat = _quant.quantize_apply(annotated)
    # Output quantizers of custom-config layers create their variables on the first call; make
    # them now, so a QAT model saved before any training step still reloads from .h5.
    qat(tf.zeros((1, *model.input_shape[1:]), tf.float32), training=False)
    if calibration is not None:
        report.calibration_batches = calibrate_ranges(qat, calibration)
    for item in report.left_float:
        log.warning(
            "QAT: layer %s (%s) left in float: %s", item["name"], item["class"], item["reason"]
        )
    return qat, report


@contextlib.contextmanager
def _inputs_in_order() -> Iterator[None]:
    """Keep the input order of multi-input layers through tfmot's graph transforms.

    tfmot 0.8's ``ModelTransformer._get_layers`` returns the input layers of a matched layer in
    the order they appear in the model config, not in the order of the layer's inputs, so a
    ``Concatenate([x, skip])`` whose ``skip`` was built before ``x`` comes out of
    ``quantize_apply`` as ``Concatenate([skip, x])``: the next convolution then reads its channels
    swapped (tensorflow/model-optimization#1179, #1061). In kseg this hit attention_unet and
    res_attention_unet, whose gated skip is built after the up-sampled decoder tensor: their QAT
    models no longer computed the float model's function and QAT fine-tuning had to re-learn the
    decoder (QAT INT8 Dice 0.125 below float on synthetic ultrasound). This returns the input
    layers in input order.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (
        model_transformer,
    )

    original = model_transformer.ModelTransformer._get_layers  # noqa: SLF001

    def get_layers(self: Any, layer_names: list[str]) -> list[dict[str, Any]]:
        by_name = {layer["config"]["name"]: layer for layer in self._config["layers"]}  # noqa: SLF001
        return [by_name[name] for name in dict.fromkeys(layer_names) if name in by_name]

    model_transformer.ModelTransformer._get_layers = get_layers  # noqa: SLF001
    try:
        yield
    finally:
        model_transformer.ModelTransformer._get_layers = original  # noqa: SLF001


@contextlib.contextmanager
def _fast_range_updates(decay: dict[str, float]) -> Iterator[None]:
    """Make tfmot's moving-average activation quantizers use ``decay["value"]`` as EMA decay."""
    original = _MovingAverageQuantizer.__call__

    def call(self: Any, inputs: Any, training: Any, weights: Any, **kwargs: Any) -> Any:
        from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

        return quant_ops.MovingAvgQuantize(
            inputs,
            weights["min_var"],
            weights["max_var"],
            ema_decay=decay["value"],
            is_training=training,
            num_bits=self.num_bits,
            per_channel=self.per_axis,
            symmetric=self.symmetric,
            narrow_range=self.narrow_range,
        )

    _MovingAverageQuantizer.__call__ = call
    try:
        yield
    finally:
        _MovingAverageQuantizer.__call__ = original


def _is_range_variable(var: Any) -> bool:
    """tfmot's quantizer range variables are named ``.../<tensor>_min:0`` and ``..._max:0``."""
    return var.name.split("/")[-1].split(":")[0].endswith(("_min", "_max"))


def calibrate_ranges(
    model: keras.Model, images: Any, *, batch_size: int = 8, decay: float = 0.9
) -> int:
    """Set the activation ranges of a fresh QAT model from ``images`` before fine-tuning.

    tfmot starts every activation range at [-6, 6] and moves it with an exponential moving
    average of decay 0.999 per training step, so after the few hundred steps of a QAT fine-tune
    the ranges are still close to [-6, 6]: larger activations are clipped and small ones get
    coarse steps. Measured on an attention_unet trained on synthetic ultrasound (decoder
    activations up to 10-35): before fine-tuning, the QAT model's probabilities differed from
    the float model's by 0.093 on average; 0.006 after this calibration (Dice 0.593 vs 0.594
    float). Like the observers of post-training calibration, this runs the calibration batches
    forward in training mode, the first batch setting each range to its min/max and later
    batches averaged in with ``decay``; every other variable (weights, BatchNorm statistics) is
    restored afterwards.

    Returns:
        The number of calibration batches run.
    """
    import numpy as np

    images = np.asarray(images, dtype=np.float32)
    if len(images) == 0:
        return 0
    range_ids = {id(v) for v in model.weights if _is_range_variable(v)}
    kept = [(v, v.numpy()) for v in model.weights if id(v) not in range_ids]
    state = {"value": 0.0}  # the first batch sets the range
    n = 0
    with _fast_range_updates(state):
        for start in range(0, len(images), batch_size):
            model(tf.constant(images[start : start + batch_size]), training=True)
            state["value"] = decay
            n += 1
    for var, value in kept:
        var.assign(value)
    return n


def calibration_images(images: Any, n: int = 64, *, seed: int = 0) -> Any:
    """Up to ``n`` images drawn without replacement (seeded, in their original order)."""
    import numpy as np

    images = np.asarray(images)
    if len(images) <= n:
        return images
    pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:n])
    return images[pick]


def _default_registry() -> Any:
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()


def _prune_preserve_registry() -> Any:
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        prune_preserve_quantize_registry as ppr,
    )

    return ppr.Default8bitPrunePreserveQuantizeRegistry()


def _inbound_classes(layer: keras.layers.Layer) -> list[str]:
    names = []
    for node in layer._inbound_nodes:  # noqa: SLF001 - keras has no public accessor for this
        for inbound in (
            node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]
        ):
            names.append(type(inbound).__name__)
    return names


def _config_for(layer: keras.layers.Layer, model: keras.Model, registry: Any) -> Any | None:
    """The explicit QuantizeConfig for ``layer``, or ``None`` to use tfmot's registry."""
    cls = type(layer).__name__
    if cls == "BatchNormalization":
        # Conv -> BN (-> ReLU) is folded by tfmot's transforms; a BN anywhere else needs a range.
        if any(c in _FUSED_INTO_CONV for c in _inbound_classes(layer)):
            return _FOLDED
        return OutputQuantizeConfig()
    if registry.supports(layer):
        return None
    if cls in OUTPUT_QUANTIZED:
        return OutputQuantizeConfig()
    if all(len(w.shape) <= 1 for w in layer.weights):
        # Weightless or per-channel-affine custom layer (reshape-like, arithmetic, normalization):
        # the output range is all there is to quantize. Layers with kernels (>= 2-D weights)
        # that tfmot does not know are left in float and reported.
        return OutputQuantizeConfig()
    return None


@contextlib.contextmanager
def quantize_scope(extra: dict[str, Any] | None = None) -> Iterator[None]:
    """Custom objects needed to load or clone a QAT/pruned model (tfmot + kseg layers/configs)."""
    objects = tfmot_objects()
    try:
        from kseg.models import custom_objects
    except ImportError:  # no model zoo: tfmot and kseg configs only
        pass
    else:
        objects.update(custom_objects())
    objects.update(extra or {})
    with keras.utils.custom_object_scope(objects):
        yield


def save_qat_model(model: keras.Model, path: str | Path) -> Path:
    """Save a QAT (or pruned) model as ``.h5`` or SavedModel (a folder); ``.keras`` does not reload."""
    from kseg.atomic import atomic_path

    path = Path(path)
    if path.suffix == ".keras":
        raise ModelError(f"{path}: QAT models do not reload from .keras; save as .h5 instead")
    if path.suffix == ".h5":
        with atomic_path(path) as tmp:
            model.save(tmp, save_format="h5", include_optimizer=False)
    else:
        model.save(path, save_format="tf", include_optimizer=False)
    return path


def load_qat_model(path: str | Path, custom_objects: dict[str, Any] | None = None) -> keras.Model:
    """Load a model written by :func:`save_qat_model` (with its quantize wrappers).

    Pruning wrappers (an unstripped pruned model) load too.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    with quantize_scope(custom_objects):
        return keras.models.load_model(path, compile=False)


def is_qat_model(model: keras.Model) -> bool:
    return any(
        type(layer).__name__ in {"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"}
        for layer in model.layers
    )
