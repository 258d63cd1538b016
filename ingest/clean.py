"""The cleaning filters, in the order the original recipe applied them.

Each step removes rows and reports how many it removed and how many remain, so
the manifest and the printed summary show where the 62328 -> 22578 went.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Thresholds:
    min_face_score: float = 3.0   # original: face_score >= 3
    min_age: int = 1              # original: age > 0
    max_age: int = 100            # original: age <= 100
    require_gender: bool = False  # unknown gender is fine for the age task


def steps(t: Thresholds) -> list[tuple[str, str, callable]]:
    """(step, rule, predicate selecting the rows to REMOVE).  The dob check comes
    first: an invalid datenum has no age, so no later step could judge it."""
    out = [
        ("invalid_dob", "dob is not a date in years 1..9999", lambda d: ~d["dob_valid"]),
        ("no_face", "face_score is -inf", lambda d: np.isneginf(d["face_score"])),
        ("second_face", "second_face_score is not NaN", lambda d: d["second_face_score"].notna()),
        ("low_face_score", f"face_score < {t.min_face_score:g}",
         lambda d: ~(d["face_score"] >= t.min_face_score)),
        ("age_above_max", f"age > {t.max_age}", lambda d: d["age"] > t.max_age),
        ("age_below_min", f"age < {t.min_age}", lambda d: d["age"] < t.min_age),
    ]
    if t.require_gender:
        out.append(("unknown_gender", "gender is NaN", lambda d: d["gender"].isna()))
    return out


def clean(frame: pd.DataFrame, t: Thresholds = Thresholds()) -> tuple[pd.DataFrame, list[dict]]:
    """(kept rows, [{"step", "rule", "removed", "remaining"}])."""
    report = []
    for step, rule, remove in steps(t):
        mask = np.asarray(remove(frame), dtype=bool)
        frame = frame[~mask]
        report.append({"step": step, "rule": rule, "removed": int(mask.sum()),
                       "remaining": len(frame)})
    return frame.reset_index(drop=True), report
