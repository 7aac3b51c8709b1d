"""Group-aware train/val/test split, saved as ``split.csv`` in the run directory and reused.

Images of one patient, exam or well are strongly correlated; if one group lands in both training
and validation, validation Dice is optimistic. The split therefore assigns whole groups.

Example:
    >>> group_split(["p1", "p1", "p2", "p3", "p4", "p5"], val_fraction=0.2, seed=0)
    ['train', 'train', 'val', 'train', 'train', 'train']   # p1's images stay together
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kseg.atomic import write_text
from kseg.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
_COLUMNS = ("name", "group", "split")


def group_split(
    groups: Sequence[str], val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> list[str]:
    """Assign each item a split (``"train"``, ``"val"`` or ``"test"``) so no group spans two.

    The fractions are shares of *groups* (rounded); with at least two groups and
    ``val_fraction > 0`` the validation split gets at least one group, and with at least three
    groups and ``test_fraction > 0`` the test split gets at least one; training always keeps one.
    The result depends only on the set of groups and ``seed``, not on the order of ``groups``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction = {val_fraction} must be in [0, 1)")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction = {test_fraction} must be in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction} leaves no "
            f"training data; make the sum less than 1"
        )
    unique = sorted(set(groups))
    n = len(unique)
    n_test = round(test_fraction * n)
    n_val = round(val_fraction * n)
    if test_fraction > 0 and n >= 3:
        n_test = max(n_test, 1)
    if val_fraction > 0 and n >= 2:
        n_val = max(n_val, 1)
    # training keeps at least one group: take it back from the larger of val/test
    while n_val + n_test > max(n - 1, 0):
        if n_test > 0 and n_test >= n_val:  # on a tie keep validation, which training needs
            n_test -= 1
        else:
            n_val -= 1
    order = np.random.default_rng(seed).permutation(n)
    assigned: dict[str, str] = {}
    for rank, idx in enumerate(order):
        if rank < n_test:
            assigned[unique[idx]] = "test"
        elif rank < n_test + n_val:
            assigned[unique[idx]] = "val"
        else:
            assigned[unique[idx]] = "train"
    return [assigned[g] for g in groups]


def stratified_group_split(
    groups: Sequence[str],
    strata: Sequence[str],
    val_fraction: float,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> list[str]:
    """:func:`group_split` within each stratum (class, scanner, ...), so every split gets its share.

    A group belongs to the stratum most of its images have (ties: the smallest value). Strata are
    split independently with the same fractions; a stratum with a single group goes to training.
    """
    if len(groups) != len(strata):
        raise ValueError("groups and strata must have the same length")
    votes: dict[str, dict[str, int]] = {}
    for g, s in zip(groups, strata, strict=True):
        votes.setdefault(g, {}).setdefault(s, 0)
        votes[g][s] += 1
    stratum_of = {g: min(v, key=lambda k: (-v[k], k)) for g, v in votes.items()}
    assigned: dict[str, str] = {}
    for stratum in sorted(set(stratum_of.values())):
        members = sorted(g for g, s in stratum_of.items() if s == stratum)
        for g, split in zip(
            members, group_split(members, val_fraction, test_fraction, seed), strict=True
        ):
            assigned[g] = split
    return [assigned[g] for g in groups]


def save_split(path: str | os.PathLike[str], rows: Sequence[dict[str, str]]) -> Path:
    """Write ``name,group,split`` rows to a CSV file atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(_COLUMNS), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        if row.get("split") not in SPLITS:
            raise ValueError(
                f"split of {row.get('name')!r} is {row.get('split')!r}; use one of {SPLITS}"
            )
        writer.writerow(row)
    return write_text(path, buf.getvalue())


def load_split(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a ``split.csv`` written by :func:`save_split`: ``{name: split}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"name", "split"} <= set(reader.fieldnames):
            raise DataError(
                f"{path}: expected columns name,group,split; delete it to make a new split"
            )
        out: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            split = (row.get("split") or "").strip()
            if split not in SPLITS:
                raise DataError(
                    f"{path}: line {line}: split {split!r} is not one of {', '.join(SPLITS)}"
                )
            out[row["name"]] = split
    return out


def shard_indices(n: int, *, num_shards: int, index: int) -> list[int]:
    """Items ``index, index + num_shards, ...`` of ``n``: every item in exactly one shard, shard
    sizes within one of each other (multi-worker training reads only its shard).

        >>> shard_indices(5, num_shards=2, index=1)
        [1, 3]
    """
    if not 0 <= index < num_shards:
        raise ValueError(f"shard index {index} is not in 0..{num_shards - 1}")
    return list(range(index, n, num_shards))


__all__ = [
    "SPLITS",
    "group_split",
    "load_split",
    "save_split",
    "shard_indices",
    "stratified_group_split",
]
