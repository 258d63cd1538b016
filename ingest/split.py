"""Seeded train / val / test assignment of the cleaned rows.

test is carved first, then val from what is left, so model selection (val)
never sees test.  `identity` keeps every person in one split: rows are grouped
by the table's `identity` column (IMDB-WIKI: the name, or celeb_id for imdb; a
CSV's identity column); a row with an empty identity is its own group, since
nothing says two nameless photos show the same person.  A source that brings
its own splits (APPA-REAL, a CSV split column) is not split here at all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLIT_BY = ("random", "identity")
TEST_FRACTION = 0.3
VAL_FRACTION = 0.1


def _targets(n: int, test_fraction: float, val_fraction: float) -> tuple[int, int]:
    n_test = int(round(n * test_fraction))
    return n_test, int(round((n - n_test) * val_fraction))


def group_keys(frame: pd.DataFrame) -> np.ndarray:
    """One key per row naming the person; an empty identity is its own group."""
    return np.array([f"id:{n}" if n else f"row:{i}" for i, n in enumerate(frame["identity"])],
                    dtype=object)


def assign(frame: pd.DataFrame, *, by: str = "random", test_fraction: float = TEST_FRACTION,
           val_fraction: float = VAL_FRACTION, seed: int = 0) -> np.ndarray:
    """An array of "train" / "val" / "test", one per row of `frame`."""
    if by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {SPLIT_BY}, got {by!r}")
    n = len(frame)
    rng = np.random.default_rng(seed)
    n_test, n_val = _targets(n, test_fraction, val_fraction)
    out = np.full(n, "train", dtype=object)
    if by == "random":
        perm = rng.permutation(n)
        out[perm[:n_test]] = "test"
        out[perm[n_test:n_test + n_val]] = "val"
        return out
    keys = group_keys(frame)
    groups, inverse, sizes = np.unique(keys, return_inverse=True, return_counts=True)
    # Whole groups, in seeded order, fill test then val; the rest is train.
    group_split = np.full(len(groups), "train", dtype=object)
    filled_test = filled_val = 0
    for g in rng.permutation(len(groups)):
        if filled_test < n_test:
            group_split[g], filled_test = "test", filled_test + sizes[g]
        elif filled_val < n_val:
            group_split[g], filled_val = "val", filled_val + sizes[g]
    return group_split[inverse]
