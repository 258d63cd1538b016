"""The numbers an age-assurance reviewer asks for (report.json's `age_assurance`), per
age gate T (`--age_threshold`) and challenge age C (`--challenge_age`, or the one
`--max_false_adult` chooses), overall and per group (gender, and each attribute with a
known label, e.g. race), each rate with its seeded bootstrap interval (reports.groups):

    false_adult       the share of the faces under T estimated at or over T
    passed_challenge  the share of the faces under T estimated at or over C (what a
                      "Challenge C" check, asking for proof from everyone who looks
                      under C, still lets through)
    teens_challenged  the share of the 13-17-year-olds estimated under C (the check's
                      true-positive rate on them)

`choose_challenge_age`: the smallest C above T whose minors' pass rate on the val split
is at most R in every group with at least groups.MIN_FACES minors there (and overall);
the report gives that C's rates on the evaluated split.  The MAE per gender x age band
is report.json's `groups.gender_x_age_band`.
"""

from __future__ import annotations

import numpy as np

from records.schema import GROUP_UNKNOWN, NUM_AGES
from reports.groups import MIN_FACES, SEED, mean_with_interval

TEENS = (13, 17)   # the ages whose challenge rate is reported (true age, inclusive)


def _columns(attributes: dict) -> dict:
    """{"all": None, gender: labels, race: labels (when any is known), ...}."""
    out = {"all": None}
    for name, labels in attributes.items():
        labels = np.asarray(labels, dtype=object)
        if name == "gender" or np.any(labels != GROUP_UNKNOWN):
            out[name] = labels
    return out


def _groups(attributes: dict, n: int):
    """(attribute, label, mask) of every group, "all" first."""
    for name, labels in _columns(attributes).items():
        if labels is None:
            yield "all", "all", np.ones(n, bool)
            continue
        for label in sorted(set(labels.tolist()), key=lambda x: (x == GROUP_UNKNOWN, x)):
            yield name, label, labels == label


def _rate(hits: np.ndarray, name: str, seed: int) -> dict:
    return {**mean_with_interval(hits.astype(np.float64), name, seed), "count": int(len(hits))}


def gate_rows(true_age: np.ndarray, estimate: np.ndarray, attributes: dict, threshold: int,
              challenge_age: int | None, seed: int = SEED) -> list[dict]:
    """One row per group: minors, false_adult [, passed_challenge, teens, teens_challenged]."""
    true_age, estimate = np.asarray(true_age, np.float64), np.asarray(estimate, np.float64)
    teen = (true_age >= TEENS[0]) & (true_age <= TEENS[1])
    rows = []
    for attribute, label, mask in _groups(attributes, len(true_age)):
        minor = mask & (true_age < threshold)
        tag = f"assurance {threshold}/{attribute}/{label}"
        row = {"attribute": attribute, "group": str(label), "minors": int(minor.sum()),
               "few": bool(minor.sum() < MIN_FACES),
               "false_adult": _rate(estimate[minor] >= threshold, f"{tag}/false_adult", seed)}
        if challenge_age is not None:
            row["passed_challenge"] = _rate(estimate[minor] >= challenge_age,
                                            f"{tag}/challenge {challenge_age}", seed)
            mine = mask & teen
            row["teens_challenged"] = _rate(estimate[mine] < challenge_age, f"{tag}/teens {challenge_age}", seed)
        rows.append(row)
    return rows


def pass_rates(true_age: np.ndarray, estimate: np.ndarray, attributes: dict, threshold: int,
               challenge_age: int) -> dict:
    """{"attribute/label": (minors, share of them estimated at or over C)} (no intervals)."""
    out = {}
    for attribute, label, mask in _groups(attributes, len(true_age)):
        minor = mask & (np.asarray(true_age) < threshold)
        out[f"{attribute}/{label}"] = (int(minor.sum()),
                                       float(np.mean(estimate[minor] >= challenge_age)) if minor.any() else None)
    return out


def choose_challenge_age(true_age: np.ndarray, estimate: np.ndarray, attributes: dict, threshold: int,
                         max_rate: float) -> dict:
    """{challenge_age (None when no age up to NUM_AGES - 1 does), max_false_adult, groups
    checked, the val rates at the chosen age}."""
    true_age, estimate = np.asarray(true_age, np.float64), np.asarray(estimate, np.float64)
    for c in range(threshold + 1, NUM_AGES):
        rates = pass_rates(true_age, estimate, attributes, threshold, c)
        checked = {k: r for k, (n, r) in rates.items() if n >= MIN_FACES or k == "all/all"}
        if all(r is None or r <= max_rate for r in checked.values()):
            return {"challenge_age": c, "max_false_adult": max_rate, "val_rates": checked,
                    "groups_checked": sorted(checked), "val_minors": rates["all/all"][0]}
    return {"challenge_age": None, "max_false_adult": max_rate, "val_rates": {},
            "groups_checked": [], "val_minors": int((true_age < threshold).sum())}


def assurance_section(true_age: np.ndarray, estimate: np.ndarray, attributes: dict, thresholds,
                      challenge_age: int | None, chosen: dict | None = None, seed: int = SEED) -> dict:
    """report.json's `age_assurance`: {gates: [{threshold, challenge_age, rows}], chosen:
    [{threshold, the val choice, rows at that age on this split}]}."""
    out = {"teens": list(TEENS), "min_faces": MIN_FACES,
           "gates": [{"threshold": int(t), "challenge_age": challenge_age,
                      "rows": gate_rows(true_age, estimate, attributes, t, challenge_age, seed)}
                     for t in thresholds]}
    if chosen is not None:
        out["chosen"] = [{"threshold": int(t), **pick,
                          "rows": gate_rows(true_age, estimate, attributes, t, pick["challenge_age"], seed)
                          if pick["challenge_age"] is not None else []}
                         for t, pick in chosen.items()]
    return out
