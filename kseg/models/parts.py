"""Which layers of a zoo model are its encoder (for ``kseg train --freeze-encoder``).

The zoo names its layers by role (``kseg.models.blocks`` prefixes every layer with its block):

- **encoder**: the contracting path down to and including the deepest level, i.e. layers named
  ``stem*`` and ``enc<i>*`` (each level with its down-sampling), ``bottleneck*`` (the deepest
  level, with its attention block), UNet++'s backbone column ``x<i>0_*``, and the layers of a
  ``keras.applications`` backbone (``mobile_unet`` with ``encoder=mobilenet_v3_small`` ...), which
  keep their Keras names;
- **decoder**: ``dec<i>*`` and UNet++'s nested nodes ``x<i><j>_*`` with ``j >= 1``;
- **head and plumbing**: ``logits``, ``mask``, ``denoised``, ``unit``, ``image``, ``normalize``.

So the encoder is every layer that is neither decoder nor head. This matches the usual transfer
learning split (segmentation_models' ``encoder``/``decoder``): the encoder's features are generic,
the decoder and head learn the new task.
"""

from __future__ import annotations

import re

_DECODER = re.compile(r"^(dec\d|x\d+[1-9]\d*_)")
_HEAD = frozenset({"logits", "mask", "denoised", "unit", "image", "normalize"})


def is_encoder_layer(name: str) -> bool:
    """``True`` for a layer of the encoder (see the module docstring for the rule)."""
    if name in _HEAD or name.split("_")[0] in _HEAD:
        return False
    return not _DECODER.match(name)


def encoder_layers(model) -> list:
    """The encoder's layers that hold weights, in graph order."""
    return [layer for layer in model.layers if layer.weights and is_encoder_layer(layer.name)]


__all__ = ["encoder_layers", "is_encoder_layer"]
