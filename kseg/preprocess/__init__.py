"""Speckle and contrast filters for ultrasound, composable chains, and their quality measures.

No TensorFlow here (the runtime applies the chain on devices that have only numpy and OpenCV);
the ``denoising_ae`` stage loads its ``.keras`` model lazily, a ``.tflite`` one through
:mod:`kseg.runtime`.

Example:
    >>> from kseg.preprocess import Chain
    >>> chain = Chain.parse([{"lee": {"size": 5}}, {"clahe": {"clip": 2.0}}])
    >>> filtered = chain(images)  # (N, H, W, C) uint8 -> same shape and dtype
"""

from __future__ import annotations

from kseg.preprocess.chain import DENOISER, Chain, apply_chain, chain_from_card, parse_chain
from kseg.preprocess.filters import FILTERS

__all__ = ["DENOISER", "FILTERS", "Chain", "apply_chain", "chain_from_card", "parse_chain"]
