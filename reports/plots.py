"""The pictures a run produces: learning curves and error by age (reports.prediction_plots draws
the photos prediction annotates)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from model import metrics  # noqa: E402
from records.schema import NUM_AGES  # noqa: E402
from storage.atomic import atomic_write  # noqa: E402


def save_figure(fig, path: str, tight: bool = True, metadata: dict | None = None) -> str:
    """Temporary name then rename, like every artifact of the project; `metadata`: PNG
    text chunks (e.g. the mark of serving.predict's pictures)."""
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight" if tight else None, format="png", metadata=metadata)
    plt.close(fig)
    return path


def learning_curves(history: list[dict], path: str, best: dict | None = None) -> str:
    """Train/validation loss and MAE per epoch, plus the metric that picked best.keras
    when it is neither (val_epsilon_error); `best` (best.json: epoch, metric, value)
    marks the chosen epoch on every panel and its value on the picking metric's."""
    epochs = [r["epoch"] for r in history]
    picked = (best or {}).get("metric")
    panels = [(metrics.LOSS, "cross-entropy loss"), (metrics.MAE, "MAE of the expected age (years)")]
    extra = picked[len(metrics.VAL_PREFIX):] if picked and picked.startswith(metrics.VAL_PREFIX) else None
    if extra and extra not in (metrics.LOSS, metrics.MAE) and all(picked in r for r in history):
        panels.append((extra, extra.replace("_", " ")))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8))
    for ax, (key, title) in zip(axes, panels):
        if all(key in r for r in history):
            ax.plot(epochs, [r[key] for r in history], label="train")
        ax.plot(epochs, [r[metrics.val(key)] for r in history], label="validation")
        if best is not None and best.get("epoch") in epochs:
            ax.axvline(best["epoch"], color="0.5", ls="--", lw=1, label=f"best.keras (epoch {best['epoch']})")
            if picked == metrics.val(key):
                ax.plot([best["epoch"]], [best["value"]], "o", color="C3", label=f"picked by {picked}")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def mae_by_age(true_age: np.ndarray, expected_age: np.ndarray, path: str, what: str = "") -> str:
    """Mean absolute error per true age, with the number of faces behind each point;
    `what` (the data set and split) goes into the title."""
    ages = np.arange(NUM_AGES)
    counts = np.bincount(true_age, minlength=NUM_AGES)
    error = np.asarray(metrics.abs_error(true_age, expected_age), np.float64)
    err = np.bincount(true_age, weights=error, minlength=NUM_AGES)
    with np.errstate(invalid="ignore", divide="ignore"):
        mae = err / counts
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.bar(ages, counts, color="0.85", label="faces")
    ax.set_xlabel("true age")
    ax.set_ylabel("faces")
    ax2 = ax.twinx()
    ax2.plot(ages[counts > 0], mae[counts > 0], "o-", ms=3, color="C3", label="MAE")
    ax2.set_ylabel("MAE (years)")
    ax.set_title("Error of the expected age by true age" + (f": {what}" if what else ""))
    return save_figure(fig, path)
