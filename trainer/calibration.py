"""How sure the model says it is, against how often it is right: the coverage of the
served intervals (`model.uncertainty`) on the evaluated split, and their split-conformal
calibration (`python -m trainer.evaluate --calibrate`).

Coverage of an m interval = the share of faces whose true age lies in it (ends
included); `claimed` is the mean probability the intervals hold under the model's
own distribution (whole-age ends make a central interval hold a little more than m).
A coverage is off when it differs by more than TOLERANCE from its claim (the central
intervals) or from m (calibrated ones).  `reliability` is [m, coverage, claimed] of the model's central intervals
for m = 0.1 .. 0.9.

--calibrate (split-conformal, Mondrian per band of the true age): on the val split (the
evaluated split stays unseen), each face's score is how many of its own spreads its
true age lies from its estimate, model.uncertainty.interval_score =
|true age - estimate| / max(sd, SD_FLOOR).  For each nominal m in MASSES and each band
of the true age with n val faces, the threshold q is the k-th smallest score of the
band's faces, k = ceil((n + 1) m).  A face's m interval is the span of the ages a whose
score is at most the threshold of a's own band (model.uncertainty.IntervalCalibration).
A new face whose true age is in band b, exchangeable with the band's n val faces, has
its true age's score at most q_b with probability >= m, so its interval holds its true
age with probability >= m *in every band of the true age*: children, teenagers and
people over 60 each get what the interval claims (label-conditional conformal
prediction, Vovk 2012), not only all faces on average.  A band with fewer val faces
than `needed_faces(m)` has no such k: it takes the threshold fitted on all val faces (a
guarantee over all faces, not that band's), and the record says so.  A band's
thresholds are nested (raised to the smaller mass's where that is larger, which keeps
the guarantee), so a larger mass never gives a narrower interval.  How close to m a
band's coverage lands depends on its val count: the coverage a fit gives scatters by
about sqrt(m (1 - m) / n) around m (`scatter`), which the report shows beside each band.
The thresholds are stored in best.keras as a `model.uncertainty.IntervalCalibration`
layer (so the SavedModel and TFLite exported from it serve them) and in run.json's
`interval_calibration`.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

import records
from errors import ProjectError
from model import age_outputs, uncertainty
from model.layers import expected_age
from model.uncertainty import RUN_KEY  # noqa: F401  (run.json's record; its name is the model's fact)
from records.schema import (AGE_BANDS, GENDER_NAMES, GENDER_UNKNOWN, GROUP_ATTRIBUTES, GROUP_UNKNOWN, NUM_AGES,
                            band_name, group_name)
from storage.atomic import atomic_write
from storage.run_dir import RunDir
from reports.groups import age_bands

class CalibrationError(ProjectError):
    """A calibration that cannot be fitted; the message says why and what to do."""


MASSES = (0.5, 0.8, 0.9)                              # the intervals calibrated and reported
TOLERANCE = 0.05                                      # off by more than this from nominal: `off`
RELIABILITY_MASSES = tuple(round(0.1 * i, 1) for i in range(1, 10))
FIT_SPLIT = "val"
BAND_STARTS = tuple(lo for lo, _ in AGE_BANDS[1:])   # the age bands the calibration holds in
METHOD = ("split-conformal, per band of the true age, on |true age - estimate| in units of the "
          "distribution's spread")
WIDTH_MASS = 0.9                                      # the interval whose width the report shows


def mass_name(mass: float) -> str:
    return f"{round(mass * 100)}%"


def needed_faces(mass: float) -> int:
    """The fewest calibration faces for which an m interval has a conformal guarantee:
    the smallest n with ceil((n + 1) m) <= n."""
    n = 1
    while _rank(n, mass) > n:
        n += 1
    return n


def _rank(n: int, mass: float) -> int:
    """k = ceil((n + 1) m), with a hair of slack so 0.9 * 10 is 9, not 10."""
    return math.ceil((n + 1) * mass - 1e-9)


def scatter(mass: float, faces: int) -> float:
    """The standard deviation of the coverage a fit on `faces` calibration faces gives
    (its Beta(k, n + 1 - k) law, about sqrt(m (1 - m) / n))."""
    n = max(int(faces), 1)
    k = min(_rank(n, mass), n)
    return math.sqrt(k * (n + 1 - k) / ((n + 1) ** 2 * (n + 2)))


def estimate_bands(estimate: np.ndarray) -> np.ndarray:
    """The band index of each estimated age."""
    return np.searchsorted(np.asarray(BAND_STARTS, np.float64), np.asarray(estimate, np.float64), side="right")


def true_bands(true_age: np.ndarray) -> np.ndarray:
    """The band index of each true age (as IntervalCalibration assigns each candidate age)."""
    return np.asarray(uncertainty.age_bands_of(NUM_AGES, BAND_STARTS))[np.asarray(true_age, np.int64)]


def band_names() -> list[str]:
    return [band_name(lo, hi) for lo, hi in AGE_BANDS]


def scores(true_age: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each face's interval_score at its true age, float32, computed as the served
    interval computes it."""
    return np.asarray(uncertainty.interval_score(np.asarray(probs, np.float32), np.asarray(true_age, np.float32)))


def conformal_threshold(face_scores: np.ndarray, mass: float) -> float | None:
    """The k-th smallest score, k = ceil((n + 1) m); None when too few faces."""
    n = len(face_scores)
    k = _rank(n, mass)
    return float(np.sort(face_scores)[k - 1]) if k <= n else None


def fit(true_age: np.ndarray, probs: np.ndarray, masses=MASSES) -> dict:
    """The calibration record: masses, band starts, thresholds [band][mass], and per band
    its val faces and, per mass, whether its threshold is its own (`guaranteed`) and how
    far a fit on that many faces typically lands from the mass (`scatter`)."""
    face_scores, band = scores(true_age, probs), true_bands(true_age)
    pooled = [conformal_threshold(face_scores, m) for m in masses]
    if any(p is None for p in pooled):
        raise CalibrationError(f"the {FIT_SPLIT} split has {len(face_scores)} faces: too few to calibrate the "
                               f"{mass_name(max(masses))} interval (needs {needed_faces(max(masses))}); "
                               f"re-ingest with a larger val split")
    thresholds, bands = [], {}
    for i, name in enumerate(band_names()):
        mine = band == i
        own = [conformal_threshold(face_scores[mine], m) for m in masses]
        # Nested: a larger mass never gets a narrower interval (raising a threshold keeps
        # its guarantee).
        thresholds.append(np.maximum.accumulate([o if o is not None else p for o, p in zip(own, pooled)]).tolist())
        bands[name] = {"faces": int(mine.sum()),
                       "guaranteed": {mass_name(m): o is not None for m, o in zip(masses, own)},
                       "scatter": {mass_name(m): scatter(m, mine.sum()) for m in masses}}
    return {"method": METHOD, "faces": int(len(face_scores)), "masses": list(masses), "band_starts": list(BAND_STARTS),
            "sd_floor": uncertainty.SD_FLOOR, "needed_faces": {mass_name(m): needed_faces(m) for m in masses},
            "thresholds": thresholds, "bands": bands}


def intervals(probs: np.ndarray, mass: float, layer=None) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of each face's m interval: `layer`'s calibrated one, or the central one."""
    probs = np.asarray(probs, np.float32)
    pair = layer.interval(probs, mass) if layer is not None else uncertainty.age_interval(probs, mass)
    return tuple(np.asarray(v).astype(np.int64) for v in pair)


def _inside_mass(probs: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    ages = np.arange(np.shape(probs)[-1])
    inside = (ages >= low[:, None]) & (ages <= high[:, None])
    return (np.asarray(probs, np.float64) * inside).sum(-1)


def coverage(true_age: np.ndarray, probs: np.ndarray, mass: float, layer=None) -> tuple[float, float]:
    """(the share of faces whose true age lies in their m interval, the mean probability
    the intervals hold under the model's distribution)."""
    low, high = intervals(probs, mass, layer)
    hit = (true_age >= low) & (true_age <= high)
    return float(np.mean(hit)), float(np.mean(_inside_mass(probs, low, high)))


def coverages(true_age: np.ndarray, probs: np.ndarray, masses=MASSES, layer=None) -> dict:
    """{"50%": {"coverage", "claimed", "nominal"}, ...}."""
    return {mass_name(m): dict(zip(("coverage", "claimed"), coverage(true_age, probs, m, layer)), nominal=m)
            for m in masses}


def is_off(measured: dict, calibrated: bool = False) -> bool:
    """A coverage more than TOLERANCE from what it should be: the nominal mass for
    calibrated intervals, the mass the model's own intervals hold (`claimed`) otherwise."""
    target = "nominal" if calibrated else "claimed"
    return any(abs(v["coverage"] - v[target]) > TOLERANCE for v in measured.values())


def group_coverage(true_age: np.ndarray, probs: np.ndarray, columns: dict[str, np.ndarray], layer=None,
                   masses=MASSES) -> dict:
    """{attribute: {label: {count, coverage: {m: share}, width_90 [, before, width_90_before]}}}:
    per group the coverage of the served intervals (and of the central ones, `before`,
    when `layer` calibrates them) and the mean width (high - low, years) of the 90% ones."""
    served = {m: intervals(probs, m, layer) for m in masses}
    raw = {m: intervals(probs, m) for m in masses} if layer is not None else None
    out = {}
    for attribute, labels in columns.items():
        section = {}
        for label in _ordered(labels):
            mine = labels == label
            entry = {"count": int(mine.sum()), **_cover(true_age, served, mine)}
            if raw is not None:
                entry.update({f"{k}_before": v for k, v in _cover(true_age, raw, mine).items()})
            section[str(label)] = entry
        out[attribute] = section
    return out


def _cover(true_age, pairs: dict, mine: np.ndarray) -> dict:
    t = true_age[mine]
    cov = {mass_name(m): float(np.mean((t >= lo[mine]) & (t <= hi[mine]))) for m, (lo, hi) in pairs.items()}
    lo, hi = pairs[WIDTH_MASS]
    return {"coverage": cov, "width_90": float(np.mean(hi[mine] - lo[mine]))}


def _ordered(labels: np.ndarray) -> list:
    names = [str(x) for x in np.unique(labels.astype(str))]
    bands = band_names()
    return sorted(names, key=lambda n: (n == GROUP_UNKNOWN, bands.index(n) if n in bands else -1, n))


def coverage_columns(true_age: np.ndarray, probs: np.ndarray, attributes: dict) -> dict:
    """The groups coverage is reported by: the band of the true age (the bands the
    calibration holds in), of the estimated age, gender, and each attribute with a known label."""
    estimated = estimate_bands(np.asarray(expected_age(np.asarray(probs, np.float32))))
    names = np.array(band_names(), dtype=object)
    columns = {"age_band": age_bands(np.asarray(true_age, np.float64)), "estimated_age_band": names[estimated]}
    for name, labels in attributes.items():
        labels = np.asarray(labels, dtype=object)
        if name == "gender" or np.any(labels != GROUP_UNKNOWN):
            columns[name] = labels
    return columns


def summary(true_age: np.ndarray, probs: np.ndarray, layer=None) -> dict:
    measured = coverages(true_age, probs, layer=layer)
    return {"coverage": measured, "off": is_off(measured, layer is not None)}


def calibration_section(true_age: np.ndarray, probs: np.ndarray, attributes: dict, layer=None,
                        fitted: dict | None = None) -> dict:
    """report.json's `calibration`: the served intervals' coverage of 50/80/90% and
    whether it is off, overall and per group (`groups`); with a calibrated model also
    `before` (the central intervals) and `fit` (the calibration's record); the
    reliability of the model's central intervals."""
    true_age = np.asarray(true_age, np.int64)
    out = {"tolerance": TOLERANCE, "calibrated": layer is not None, **summary(true_age, probs, layer),
           "reliability": [[m, *coverage(true_age, probs, m)] for m in RELIABILITY_MASSES]}
    if layer is not None:
        out["before"] = summary(true_age, probs)
    out["groups"] = group_coverage(true_age, probs, coverage_columns(true_age, probs, attributes), layer)
    if fitted is not None:
        out["fit"] = fitted
    return out


class SplitFaces:
    """(true ages, age distributions, group labels) of a split, as evaluation computes them."""

    def __init__(self, net, records_dir: str, split: str, batch_size: int, tta: str):
        with_gender = isinstance(net.output, dict)
        outputs_of = tf.function(age_outputs(net, with_gender, tta == "flip"))
        ages, probs, groups = [], [], {name: [] for name in ("gender", *GROUP_ATTRIBUTES)}
        for images, labels in records.make_dataset(records_dir, split, batch_size, training=False, with_keys=True):
            ages.append(labels["age"].numpy())
            probs.append(np.asarray(outputs_of(images)["age_probs"], np.float64))
            for name, values in group_labels(labels).items():
                groups[name] += values
        self.true_age, self.probs = np.concatenate(ages).astype(np.int64), np.concatenate(probs)
        self.estimate = np.asarray(expected_age(self.probs.astype(np.float32)), np.float64)
        self.attributes = {k: np.array(v, dtype=object) for k, v in groups.items()}


def group_labels(labels: dict) -> dict[str, list[str]]:
    """{gender: names, race...: labels} of a batch of reader labels (with_keys); a group
    attribute the shards lack (older shards) is unknown."""
    out = {"gender": [GENDER_NAMES.get(int(g), GENDER_NAMES[GENDER_UNKNOWN]) for g in labels["gender"].numpy()]}
    for name in GROUP_ATTRIBUTES:
        values = labels[name].numpy() if name in labels else [b""] * len(labels["gender"])
        out[name] = [group_name(v.decode("utf-8", "replace")) for v in values]
    return out


def calibrate_run(run: RunDir, net, val: SplitFaces, tta: str):
    """(the calibrated model, the fit's record).  Fits the thresholds on `val` (the val
    split's faces), writes best.keras with them (temporary name, then rename) and
    records them in run.json."""
    record = {"split": FIT_SPLIT, "tta": tta, **fit(val.true_age, val.probs),
              "val_coverage_before": coverages(val.true_age, val.probs)}
    calibrated = uncertainty.with_interval_calibration(net, record["masses"], record["band_starts"],
                                                       record["thresholds"])
    record["val_coverage_after"] = coverages(val.true_age, val.probs,
                                             layer=uncertainty.interval_calibration(calibrated))
    with atomic_write(run.best_model) as tmp:
        try:
            calibrated.save(tmp + ".keras")       # Keras 3 insists on the extension
            os.replace(tmp + ".keras", tmp)
        finally:
            if os.path.exists(tmp + ".keras"):
                os.remove(tmp + ".keras")
    run.write_info({**run.read_info(), RUN_KEY: record})
    return calibrated, record
