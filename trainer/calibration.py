"""How sure the model says it is, against how often it is right: the coverage of the
served intervals (`model.uncertainty`) on the evaluated split, and the temperature
that recalibrates them (`python -m trainer.evaluate --calibrate`).

Coverage of the central m interval = the share of faces whose true age lies in it
(ends included).  The ends are whole ages, so an interval holds at least m of its
distribution, more for a narrow one (a child's, where one year carries a fifth of
it): `claimed` is the mean mass the intervals hold, what a calibrated model covers.
A coverage is off when it differs from its claim by more than TOLERANCE.
`reliability` is [m, coverage, claimed] for m = 0.1 .. 0.9.

--calibrate: the coverages of MASSES are measured on the val split (the evaluated
split stays unseen); when one is off by more than TOLERANCE, one temperature T is fitted
there (the T minimising the negative log-likelihood of the true ages under
softmax(log p / T)) and stored in best.keras as a `model.uncertainty.Temperature` layer,
so the SavedModel and TFLite exported from it carry it.  The report's `calibration`
then shows the evaluated split's coverage before (the distributions with T undone)
and after.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

import records
from model import age_outputs, uncertainty
from storage.atomic import atomic_write
from storage.run_dir import RunDir

MASSES = (0.5, 0.9)                                   # the coverages report.json shows
TOLERANCE = 0.05                                      # off by more: --calibrate fits a temperature
RELIABILITY_MASSES = tuple(round(0.1 * i, 1) for i in range(1, 10))
FIT_SPLIT = "val"
_LOG_T_GRID = np.linspace(np.log(0.05), np.log(20.0), 241)   # the fit's search range of T


def mass_name(mass: float) -> str:
    return f"{round(mass * 100)}%"


def rescale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) of each row (float64), as the Temperature layer computes it."""
    z = np.log(np.maximum(np.asarray(probs, np.float64), 1e-30)) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _inside(probs: np.ndarray, mass: float) -> np.ndarray:
    """[faces, ages] True where the age lies in the face's central `mass` interval."""
    low, high = (np.asarray(v)[:, None] for v in uncertainty.age_interval(np.asarray(probs, np.float32), mass))
    ages = np.arange(np.shape(probs)[-1])
    return (ages >= low) & (ages <= high)


def coverage(true_age: np.ndarray, probs: np.ndarray, mass: float) -> tuple[float, float]:
    """(the share of faces whose true age is within their central `mass` interval, the
    mean probability the intervals hold: what that share is when the model is calibrated)."""
    inside = _inside(probs, mass)
    hit = inside[np.arange(len(true_age)), np.asarray(true_age, np.int64)]
    return float(np.mean(hit)), float(np.mean((np.asarray(probs, np.float64) * inside).sum(-1)))


def coverages(true_age: np.ndarray, probs: np.ndarray, masses=MASSES) -> dict:
    """{"50%": {"coverage", "claimed"}, "90%": ...}."""
    return {mass_name(m): dict(zip(("coverage", "claimed"), coverage(true_age, probs, m))) for m in masses}


def is_off(measured: dict) -> bool:
    return any(abs(v["coverage"] - v["claimed"]) > TOLERANCE for v in measured.values())


def fit_temperature(true_age: np.ndarray, probs: np.ndarray) -> float:
    """The T on _LOG_T_GRID minimising the mean negative log-likelihood of the true ages."""
    log_p = np.log(np.maximum(np.asarray(probs, np.float64), 1e-30))
    rows = np.arange(len(true_age))

    def nll(log_t):
        z = log_p / np.exp(log_t)
        z_max = z.max(axis=-1)
        log_norm = z_max + np.log(np.exp(z - z_max[:, None]).sum(axis=-1))
        return float(np.mean(log_norm - z[rows, true_age]))

    return float(np.exp(min(_LOG_T_GRID, key=nll)))


def summary(true_age: np.ndarray, probs: np.ndarray) -> dict:
    measured = coverages(true_age, probs)
    return {"coverage": measured, "off": is_off(measured),
            "reliability": [[m, *coverage(true_age, probs, m)] for m in RELIABILITY_MASSES]}


def calibration_section(true_age: np.ndarray, probs: np.ndarray, fitted: dict | None) -> dict:
    """report.json's `calibration`: the evaluated split's coverage, reliability and
    whether it is off; after --calibrate also `fit` and the split's `before` (T undone)."""
    out = {"tolerance": TOLERANCE, **summary(true_age, probs)}
    if fitted is not None:
        out["fit"] = fitted
        if fitted["applied"]:
            out["before"] = summary(true_age, rescale(probs, 1.0 / fitted["temperature"]))
    return out


def split_probs(net, records_dir: str, split: str, batch_size: int, tta: str) -> tuple[np.ndarray, np.ndarray]:
    """(true ages, age distributions) of a split, as evaluation and serving compute them."""
    with_gender = isinstance(net.output, dict)
    outputs_of = tf.function(age_outputs(net, with_gender, tta == "flip"))
    ages, probs = [], []
    for images, labels in records.make_dataset(records_dir, split, batch_size, training=False):
        ages.append(labels["age"].numpy())
        probs.append(np.asarray(outputs_of(images)["age_probs"], np.float64))
    return np.concatenate(ages), np.concatenate(probs)


def calibrate_run(run: RunDir, net, records_dir: str, batch_size: int, tta: str):
    """(the model to evaluate, the fit's record).  Measures the val split's coverage; when
    off, fits T there and writes best.keras with it (temporary name, then rename)."""
    true_age, probs = split_probs(net, records_dir, FIT_SPLIT, batch_size, tta)
    before = coverages(true_age, probs)
    if not is_off(before):
        return net, {"applied": False, "split": FIT_SPLIT, "faces": int(len(true_age)),
                     "coverage_before": before, "temperature": uncertainty.model_temperature(net)}
    t = fit_temperature(true_age, probs)
    calibrated = uncertainty.with_temperature(net, t)
    with atomic_write(run.best_model) as tmp:
        try:
            calibrated.save(tmp + ".keras")       # Keras 3 insists on the extension
            os.replace(tmp + ".keras", tmp)
        finally:
            if os.path.exists(tmp + ".keras"):
                os.remove(tmp + ".keras")
    return calibrated, {"applied": True, "split": FIT_SPLIT, "faces": int(len(true_age)),
                        "temperature": t, "stored_temperature": uncertainty.model_temperature(calibrated),
                        "coverage_before": before, "coverage_after": coverages(true_age, rescale(probs, t))}
