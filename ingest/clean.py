"""The cleaning filters: each step removes rows and reports how many it removed
and how many remain, so the manifest and the printed summary show where the
rows went (62328 -> 22578 on the real wiki.mat).

A source brings its own steps first (ingest.sources: the .mat's face scores,
UTKFace's unparsable names, ...); the steps here apply to every source after them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from records import schema

MIN_FACE_SCORE = 3.0   # original: face_score >= 3 (IMDB-WIKI's detector score)


@dataclass(frozen=True)
class Thresholds:
    min_face_score: float = MIN_FACE_SCORE
    min_age: int = 1              # original: age > 0
    max_age: int = 100            # original: age <= 100
    require_gender: bool = False  # unknown gender is fine for the age task


Step = tuple[str, str, "callable"]   # (step, rule, predicate selecting the rows to REMOVE)

# The steps whose rule is a flag's threshold, and how to loosen it (the other steps say
# what is wrong with a row).
THRESHOLD_FLAGS = {"low_face_score": "lower --min_face_score", "age_above_max": "raise --max_age",
                   "age_below_min": "lower --min_age", "unknown_gender": "drop --require_gender"}


def common_steps(t: Thresholds) -> list[Step]:
    """The steps every source's table goes through, after the source's own."""
    out = [
        ("age_above_max", f"age > {t.max_age}", lambda d: d["age"] > t.max_age),
        ("age_below_min", f"age < {t.min_age}", lambda d: d["age"] < t.min_age),
    ]
    if t.require_gender:
        out.append(("unknown_gender", "gender is unknown",
                    lambda d: d["gender"] == schema.GENDER_UNKNOWN))
    return out


def clean(frame: pd.DataFrame, steps: list[Step]) -> tuple[pd.DataFrame, list[dict]]:
    """(kept rows, [{"step", "rule", "removed", "remaining"}]), steps applied in order."""
    report = []
    for step, rule, remove in steps:
        mask = np.asarray(remove(frame), dtype=bool)
        frame = frame[~mask]
        report.append({"step": step, "rule": rule, "removed": int(mask.sum()),
                       "remaining": len(frame)})
    return frame.reset_index(drop=True), report


def why_nothing_is_left(frame: pd.DataFrame, steps: list[Step]) -> tuple[str, str | None]:
    """When cleaning kept no row: which step removed the last ones, its rule, and one
    row it removed (its path), so the user sees what was wrong with the data; and how to
    loosen that step's threshold flag (None: the rule is the format's)."""
    for step, rule, remove in steps:
        mask = np.asarray(remove(frame), dtype=bool)
        if mask.all() and len(frame):
            example = frame["path"].iloc[0] if "path" in frame else None
            return (f"step {step} removed all {len(frame)} remaining rows (rule: {rule})"
                    + (f", e.g. {example}" if example is not None else "")), THRESHOLD_FLAGS.get(step)
        frame = frame[~mask]
    return "the source has no rows", None
