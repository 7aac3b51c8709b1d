"""Data: synthetic phantoms, folder datasets, group-aware splits, augmentation, tf.data pipeline.

Importing ``kseg.data`` never imports TensorFlow (the runtime uses :mod:`kseg.data.io` on
devices). The tf.data pipeline lives in :mod:`kseg.data.pipeline` and the albumentations
augmentation in :mod:`kseg.data.augment`; import those modules explicitly.
"""

from __future__ import annotations

from kseg.data.folder import MANIFEST, Sample, check_sizes, scan_folder
from kseg.data.io import (
    IMAGE_EXTENSIONS,
    ResizeInfo,
    fit_to_size,
    read_image,
    read_mask,
    restore_size,
)
from kseg.data.split import SPLITS, group_split, load_split, save_split
from kseg.data.synthetic import SyntheticSet, synthesize, write_synthetic

__all__ = [
    "IMAGE_EXTENSIONS",
    "MANIFEST",
    "SPLITS",
    "ResizeInfo",
    "Sample",
    "SyntheticSet",
    "check_sizes",
    "fit_to_size",
    "group_split",
    "load_split",
    "read_image",
    "read_mask",
    "restore_size",
    "save_split",
    "scan_folder",
    "synthesize",
    "write_synthetic",
]
