"""The pictures a run produces: learning curves, error by age, annotated photos."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from model import metrics  # noqa: E402
from records.manifest import atomic_write  # noqa: E402
from records.schema import NUM_AGES  # noqa: E402


def _save(fig, path: str, tight: bool = True) -> str:
    """Temporary name then rename, like every artifact of the project."""
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight" if tight else None, format="png")
    plt.close(fig)
    return path


def learning_curves(history: list[dict], path: str) -> str:
    """Train/validation loss and MAE per epoch."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in ((axes[0], "loss", "cross-entropy loss"), (axes[1], "mae", "MAE of the expected age (years)")):
        ax.plot(epochs, [r[key] for r in history], label="train")
        ax.plot(epochs, [r[f"val_{key}"] for r in history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def mae_by_age(true_age: np.ndarray, expected_age: np.ndarray, path: str) -> str:
    """Mean absolute error per true age, with the number of test faces behind each point."""
    ages = np.arange(NUM_AGES)
    counts = np.bincount(true_age, minlength=NUM_AGES)
    error = np.asarray(metrics.abs_error(true_age, expected_age), np.float64)
    err = np.bincount(true_age, weights=error, minlength=NUM_AGES)
    with np.errstate(invalid="ignore", divide="ignore"):
        mae = err / counts
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.bar(ages, counts, color="0.85", label="test faces")
    ax.set_xlabel("true age")
    ax.set_ylabel("faces")
    ax2 = ax.twinx()
    ax2.plot(ages[counts > 0], mae[counts > 0], "o-", ms=3, color="C3", label="MAE")
    ax2.set_ylabel("MAE (years)")
    ax.set_title("Error of the expected age by true age")
    return _save(fig, path)


def age_distribution(probs: np.ndarray, path: str, title: str) -> str:
    """One face's softmax over ages 0..100 with its expectation marked."""
    expected = float(np.asarray(metrics.expected_age(probs[None]))[0])
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.bar(np.arange(len(probs)), probs, color="C0")
    ax.axvline(expected, color="C3", label=f"apparent age {expected:.1f}")
    ax.set_xlabel("age")
    ax.set_ylabel("probability")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def annotate(image: np.ndarray, faces: list[dict], path: str) -> str:
    """The photo with a box and the apparent age per face."""
    h, w = image.shape[:2]
    fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(image)
    ax.axis("off")
    for face in faces:
        x, y, bw, bh = face["box"]
        ax.add_patch(plt.Rectangle((x, y), bw, bh, fill=False, color="lime", lw=2))
        ax.text(x, max(y - 4, 10), f"{face['apparent_age']:.0f}", color="black", fontsize=max(8, bh // 8),
                bbox=dict(facecolor="lime", alpha=0.8, pad=1, lw=0))
    return _save(fig, path, tight=False)
