"""GAN-made training data: an unconditional DCGAN and a mask -> image pix2pix generator.

``kseg gan train`` fits one of them on a folder (or synthetic data) and writes a run folder with
losses, per-epoch real-vs-generated grids and a diversity / memorisation report;
``kseg gan sample`` writes a folder kseg can train on (``images/``, ``masks/``, ``manifest.csv``
with ``generated=1``). Only pix2pix samples have masks: a DCGAN draws images alone.
"""

from __future__ import annotations

GAN_KINDS = ("dcgan", "pix2pix")
GAN_SIZES = (64, 128)

__all__ = ["GAN_KINDS", "GAN_SIZES"]
