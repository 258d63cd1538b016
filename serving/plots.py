"""The pictures prediction draws: a photo annotated with each face's apparent age,
and one face's age distribution."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from model import metrics
from trainer.plots import save_figure   # chooses the file-only backend before pyplot loads


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
    return save_figure(fig, path)


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
    return save_figure(fig, path, tight=False)
