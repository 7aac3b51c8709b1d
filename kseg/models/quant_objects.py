"""The objects a QAT or pruned model file references: tfmot's quantize and prune wrappers,
quantizers and configs, and kseg's own QuantizeConfigs.

Here, next to the layers, because *loading* such a file needs them wherever a model is loaded
(:func:`kseg.models.custom_objects` merges them, so ``kseg convert``, ``predict``, ``optimize`` and
the exporters all read QAT ``.h5`` files); *making* QAT models is :mod:`kseg.optimize.qat`'s job,
which imports these. This module imports tensorflow-model-optimization at import time:
:func:`kseg.models.custom_objects` imports it lazily and skips it when tfmot is not installed.
"""

from __future__ import annotations

from typing import Any

import tensorflow_model_optimization as tfmot

from kseg._keras import keras

_quant = tfmot.quantization.keras
_MovingAverageQuantizer = _quant.quantizers.MovingAverageQuantizer


@keras.utils.register_keras_serializable(package="kseg")
class OutputQuantizeConfig(_quant.QuantizeConfig):
    """Quantize only the output of a layer (8-bit, asymmetric, per tensor, learned range).

    For layers whose arithmetic is fixed by their inputs (``Multiply``, ``Rescaling``, group
    normalization, ...): the inputs are already fake-quantized by the layers before them, so one
    range on the output is all the integer converter needs. Weights such as the ``gamma`` and
    ``beta`` of a normalization are per-channel affine constants; the converter quantizes them
    with the calibration data of the integer conversion.
    """

    def get_weights_and_quantizers(self, layer: Any) -> list:
        return []

    def get_activations_and_quantizers(self, layer: Any) -> list:
        return []

    def set_quantize_weights(self, layer: Any, quantize_weights: list) -> None:
        pass

    def set_quantize_activations(self, layer: Any, quantize_activations: list) -> None:
        pass

    def __init__(self, quantize_output: bool = True) -> None:
        self.quantize_output = bool(quantize_output)

    def get_output_quantizers(self, layer: Any) -> list:
        if not self.quantize_output:
            return []
        return [
            _MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)
        ]

    def get_config(self) -> dict[str, Any]:
        # tfmot's Concat transform turns off the output quantizer of a concatenation's inputs by
        # replacing this method on the instance; save that, or the .h5 will not reload.
        patched = "get_output_quantizers" in self.__dict__
        return {"quantize_output": self.quantize_output and not patched}


@keras.utils.register_keras_serializable(package="kseg")
class NoOpQuantizeConfig(OutputQuantizeConfig):
    """Quantize nothing: for layers whose output is quantized by the layer fused after them."""

    def get_output_quantizers(self, layer: Any) -> list:
        return []


_CUSTOM_CONFIGS = {
    "OutputQuantizeConfig": OutputQuantizeConfig,
    "NoOpQuantizeConfig": NoOpQuantizeConfig,
}


def tfmot_objects() -> dict[str, Any]:
    """tfmot's quantize and prune wrappers, quantizers and configs, plus kseg's QuantizeConfigs."""
    from tensorflow_model_optimization.python.core.quantization.keras import (
        quantize_annotate,
        quantize_aware_activation,
        quantize_config,
        quantize_layer,
        quantize_wrapper,
        quantizers,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    objects: dict[str, Any] = {
        "QuantizeAnnotate": quantize_annotate.QuantizeAnnotate,
        "QuantizeAwareActivation": quantize_aware_activation.QuantizeAwareActivation,
        "NoOpActivation": quantize_aware_activation.NoOpActivation,
        "QuantizeWrapper": quantize_wrapper.QuantizeWrapper,
        "QuantizeWrapperV2": quantize_wrapper.QuantizeWrapperV2,
        "QuantizeLayer": quantize_layer.QuantizeLayer,
        "OutputOnlyConfig": quantize_config.OutputOnlyConfig,
        "FixedQuantizeConfig": quantize_config.FixedQuantizeConfig,
        "PruneLowMagnitude": pruning_wrapper.PruneLowMagnitude,
    }
    objects.update(default_8bit_quantize_registry._types_dict())  # noqa: SLF001 - as quantize_scope does
    objects.update(quantizers._types_dict())  # noqa: SLF001
    for name, cls in _CUSTOM_CONFIGS.items():
        objects[name] = cls
        objects[f"kseg>{name}"] = cls
    try:  # the prune-preserving scheme's quantizers, for collaborative-optimization models
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E501
            prune_preserve_quantize_registry as ppr,
        )

        for name in (
            "PrunePreserveDefaultWeightsQuantizer",
            "PrunePreserveDefault8BitWeightsQuantizer",
            "PrunePreserveDefault8BitConvWeightsQuantizer",
        ):
            objects[name] = getattr(ppr, name)
    except (ImportError, AttributeError):
        pass
    return objects


__all__ = ["NoOpQuantizeConfig", "OutputQuantizeConfig", "tfmot_objects"]
