"""``kseg preprocess``: compare filter chains on a data set (speckle metrics, fidelity, time, and
optionally what each chain does to a segmentation network's Dice) and list the filters.

The filters and chains themselves live low in the flow, in :mod:`kseg.filters` (the config
validates ``data.preprocess`` with them); this package sits at the top (it trains for the
ablation). The names below are re-exported from :mod:`kseg.filters` for existing callers.

Example:
    >>> from kseg.preprocess.compare import compare
    >>> compare("synthetic:ultrasound:16", ["none", "lee", "lee+clahe"], "runs/compare")
"""

from __future__ import annotations

from kseg.filters import DENOISER, FILTERS, Chain, apply_chain, chain_from_card, parse_chain

__all__ = ["DENOISER", "FILTERS", "Chain", "apply_chain", "chain_from_card", "parse_chain"]
