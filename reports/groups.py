"""For whom an age model is wrong: errors per group of faces and the error rates of
age gates, each with a seeded 95% bootstrap interval (report.json's `groups` and
`thresholds`, recomputable from predictions.csv's columns).

Each interval is scipy.stats.bootstrap's (BCa; the percentile interval for a group
whose values are all equal), seeded per group name.

Groups: `gender` (male / female / unknown), `age_band` (AGE_BANDS of the true age),
`race` (when any face of the split is labelled) and `gender_x_age_band` (AGE_BANDS: records.schema).  Per group:
count, MAE, mean signed error (`bias`: estimate - true age, positive = too old), CS5,
each with its interval; a group under MIN_FACES faces is kept and flagged `few`.
Per attribute, `gap` is the MAE of the worst group minus that of the best, over the
groups with a known label and at least MIN_FACES faces (null when fewer than two).

Per attribute other than the age bands, `age_mix` says whether its groups' ages differ
(a gap may then be the ages'): the age-band shares, and each group's MAE at equal age
bands (direct standardisation to the groups' pooled shares) with that gap.

Age gates (`threshold_rates`), for a threshold T: `false_adult` = the share of the
faces under T estimated at or over T, `false_minor` = the share of the faces at or
over T estimated under T; with a challenge age C ("Challenge 25"), `passed_challenge`
= the share of the faces under T estimated at or over C: what a policy that checks
everyone who looks under C still lets through.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
from scipy import stats

from model.metrics import CS_NAME, CS_THRESHOLD
from records.schema import AGE_BANDS, GROUP_UNKNOWN, band_name

MIN_FACES = 30            # a group with fewer faces is shown, flagged `few`
BOOTSTRAP_SAMPLES = 1000  # resamples per interval
CONFIDENCE = 0.95         # the intervals' level
SEED = 0                  # the bootstrap's seed (each group's stream also depends on its name)
AGE_MIX_DIFFER = 0.1      # groups whose age-band shares differ by more (total variation): `differ`
MAX_GROUPS = 64           # labels per attribute reported (the most frequent; the rest dropped, counted)


def age_bands(true_age: np.ndarray) -> np.ndarray:
    """The AGE_BANDS name of each true age."""
    out = np.empty(len(true_age), dtype=object)
    for lo, hi in AGE_BANDS:
        out[(true_age >= lo) & ((true_age <= hi) if hi is not None else True)] = band_name(lo, hi)
    return out


def _rng(name: str, seed: int) -> np.random.Generator:
    """One stream per group name: a group's interval does not depend on the other groups."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _interval(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """The CONFIDENCE interval of the mean of `values` by scipy.stats.bootstrap over
    BOOTSTRAP_SAMPLES resamples (faces drawn with replacement): BCa, or the percentile
    interval where BCa is undefined (every value equal, or a single face)."""
    values = np.asarray(values, np.float64)
    if len(values) < 2 or np.all(values == values[0]):
        return float(values[0]), float(values[0])
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # BCa's degenerate-data warning: the fallback below
            ci = stats.bootstrap((values,), np.mean, n_resamples=BOOTSTRAP_SAMPLES, confidence_level=CONFIDENCE,
                                 method=method, vectorized=True, random_state=rng).confidence_interval
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            break
    return float(ci.low), float(ci.high)


def mean_with_interval(values: np.ndarray, name: str, seed: int = SEED) -> dict:
    """{value, ci: [lo, hi]} of the mean of per-face `values` (None for no faces)."""
    if len(values) == 0:
        return {"value": None, "ci": None}
    return {"value": float(np.mean(values)), "ci": list(_interval(values, _rng(name, seed)))}


def group_stats(true_age: np.ndarray, estimate: np.ndarray, name: str, seed: int = SEED) -> dict:
    """count, mae, bias, cs5 (each {value, ci}) and `few` of one group's faces."""
    signed = estimate - true_age
    error = np.abs(signed)
    return {"count": int(len(true_age)), "few": bool(len(true_age) < MIN_FACES),
            "mae": mean_with_interval(error, f"{name}/mae", seed),
            "bias": mean_with_interval(signed, f"{name}/bias", seed),
            CS_NAME: mean_with_interval((error <= CS_THRESHOLD).astype(np.float64), f"{name}/{CS_NAME}", seed)}


def attribute_stats(true_age: np.ndarray, estimate: np.ndarray, labels: np.ndarray, attribute: str,
                    seed: int = SEED) -> dict:
    """{groups: {label: group_stats}, gap, dropped_labels} of one attribute (`_order`)."""
    names, counts = np.unique(labels.astype(str), return_counts=True)
    kept = sorted(names[np.argsort(-counts, kind="stable")][:MAX_GROUPS], key=_order)
    groups = {label: group_stats(true_age[labels == label], estimate[labels == label],
                                 f"{attribute}/{label}", seed) for label in kept}
    return {"groups": groups, "gap": mae_gap(groups), "dropped_labels": int(len(names) - len(kept))}


def _order(label: str):
    """Unknown last, age bands in band order, other labels alphabetically (each part of a
    "gender x band" label in turn)."""
    bands = [band_name(lo, hi) for lo, hi in AGE_BANDS]
    return tuple((part == GROUP_UNKNOWN, bands.index(part) if part in bands else -1, part)
                 for part in label.split(" x "))


def mae_gap(groups: dict) -> dict | None:
    """The worst group's MAE minus the best's, among known groups with MIN_FACES faces."""
    known = {k: v["mae"]["value"] for k, v in groups.items()
             if not v["few"] and GROUP_UNKNOWN not in k.split(" x ")}
    if len(known) < 2:
        return None
    best, worst = min(known, key=known.get), max(known, key=known.get)
    return {"mae": known[worst] - known[best], "best": best, "worst": worst}


def group_report(true_age: np.ndarray, estimate: np.ndarray, attributes: dict[str, np.ndarray],
                 seed: int = SEED) -> dict:
    """report.json's `groups`: gender, age_band, each attribute in `attributes` with at
    least one known label (e.g. race), and gender_x_age_band.  `attributes` must hold
    "gender"; labels are strings, GROUP_UNKNOWN where unknown."""
    true_age, estimate = np.asarray(true_age, np.float64), np.asarray(estimate, np.float64)
    bands = age_bands(true_age)
    columns = {"gender": np.asarray(attributes["gender"], dtype=object), "age_band": bands}
    for name, labels in attributes.items():
        labels = np.asarray(labels, dtype=object)
        if name != "gender" and np.any(labels != GROUP_UNKNOWN):
            columns[name] = labels
    columns["gender_x_age_band"] = np.array([f"{g} x {b}" for g, b in zip(columns["gender"], bands)],
                                            dtype=object)
    out = {name: attribute_stats(true_age, estimate, labels, name, seed) for name, labels in columns.items()}
    for name in out:
        if name not in ("age_band", "gender_x_age_band"):
            out[name]["age_mix"] = age_mix(true_age, estimate, columns[name], bands, out[name]["groups"])
    return out


def age_mix(true_age: np.ndarray, estimate: np.ndarray, labels: np.ndarray, bands: np.ndarray,
            groups: dict) -> dict | None:
    """Whether a gap between groups may be their ages': over the known groups with
    MIN_FACES faces, each one's share of faces per age band, the largest total-variation
    distance of those shares from the groups' pooled shares (`differ` above
    AGE_MIX_DIFFER), and each group's MAE at equal age bands (its per-band MAE weighted
    by the pooled shares, over the bands it has faces in) with their gap."""
    known = [k for k, v in groups.items() if not v["few"] and k != GROUP_UNKNOWN]
    if len(known) < 2:
        return None
    names = [band_name(lo, hi) for lo, hi in AGE_BANDS]
    mask = np.isin(labels.astype(str), known)
    pooled = np.array([np.mean(bands[mask] == b) for b in names])
    error = np.abs(estimate - true_age)
    shares, standardized, tv = {}, {}, 0.0
    for k in known:
        mine = labels.astype(str) == k
        share = np.array([np.mean(bands[mine] == b) for b in names])
        shares[k] = dict(zip(names, share.round(4).tolist()))
        tv = max(tv, 0.5 * float(np.abs(share - pooled).sum()))
        has = np.array([np.any(mine & (bands == b)) for b in names])
        per_band = np.array([error[mine & (bands == b)].mean() if h else 0.0 for b, h in zip(names, has)])
        standardized[k] = float((per_band * pooled * has).sum() / max((pooled * has).sum(), 1e-12))
    best, worst = min(standardized, key=standardized.get), max(standardized, key=standardized.get)
    return {"band_shares": shares, "max_distance": tv, "differ": bool(tv > AGE_MIX_DIFFER),
            "mae_at_equal_bands": standardized,
            "gap_at_equal_bands": {"mae": standardized[worst] - standardized[best], "best": best, "worst": worst}}


def threshold_rates(true_age: np.ndarray, estimate: np.ndarray, thresholds, challenge_age: int | None = None,
                    seed: int = SEED) -> list[dict]:
    """report.json's `thresholds`: one entry per age threshold (see the module doc)."""
    true_age, estimate = np.asarray(true_age, np.float64), np.asarray(estimate, np.float64)
    out = []
    for t in thresholds:
        minor, adult = true_age < t, true_age >= t
        entry = {"age": int(t), "minors": int(minor.sum()), "adults": int(adult.sum()),
                 "false_adult": mean_with_interval((estimate[minor] >= t).astype(np.float64),
                                                   f"threshold {t}/false_adult", seed),
                 "false_minor": mean_with_interval((estimate[adult] < t).astype(np.float64),
                                                   f"threshold {t}/false_minor", seed)}
        if challenge_age is not None:
            entry["challenge_age"] = int(challenge_age)
            entry["passed_challenge"] = mean_with_interval(
                (estimate[minor] >= challenge_age).astype(np.float64),
                f"threshold {t}/challenge {challenge_age}", seed)
        out.append(entry)
    return out
