"""Pixel filters for ultrasound (speckle and contrast) and the chains of them that
``data.preprocess`` names: the bottom of the data flow, just above the utilities.

No TensorFlow here (the runtime applies the chain on devices that have only numpy and OpenCV),
and nothing above :mod:`kseg.config` is imported (the config validates chains with
:func:`parse_chain`). The ``denoising_ae`` stage is a model: it is opened by the opener a chain
is given (``Chain.parse(spec, open_model=...)``) or the one :mod:`kseg.runtime` sets on import.
Comparing chains on a data set (``kseg preprocess compare``) is :mod:`kseg.preprocess`'s job.

Example:
    >>> from kseg.filters import Chain
    >>> chain = Chain.parse([{"lee": {"size": 5}}, {"clahe": {"clip": 2.0}}])
    >>> filtered = chain(images)  # (N, H, W, C) uint8 -> same shape and dtype
"""

from __future__ import annotations

from kseg.filters.chain import (
    DENOISER,
    Chain,
    ModelOpener,
    apply_chain,
    chain_from_card,
    parse_chain,
    set_model_opener,
    stage_names,
)
from kseg.filters.pixel import FILTERS, filter_params, local_stats

__all__ = [
    "DENOISER",
    "FILTERS",
    "Chain",
    "ModelOpener",
    "apply_chain",
    "chain_from_card",
    "filter_params",
    "local_stats",
    "parse_chain",
    "set_model_opener",
    "stage_names",
]
