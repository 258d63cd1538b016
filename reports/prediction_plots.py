"""The pictures prediction draws: a photo annotated with each face's apparent age,
and one face's age distribution."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from model import metrics
from reports.plots import save_figure   # chooses the file-only backend before pyplot loads

# The PNG text chunk every picture drawn here carries: the mark by which serving.predict
# knows a picture in --pictures_dir as one it wrote (and may replace).
PICTURE_MARK = {"Software": "dex-age serving.predict"}


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
    return save_figure(fig, path, metadata=PICTURE_MARK)


def label_size(box) -> int:
    """The age label's font size in points."""
    return max(8, box[3] // 8)


def age_label_position(box, width: int, height: int, text: str) -> tuple[float, float, str]:
    """Where a face's age label goes so that it stays inside the picture: above the
    box when there is room, else just inside its top edge; shifted left when it
    would run past the right edge. Returns (x, y, vertical alignment)."""
    x, y = box[:2]
    size_px = label_size(box) * 100 / 72 + 4           # points at 100 dpi, plus the label's padding
    text_w = 0.65 * size_px * len(text) + 4
    pad = 2                                             # the label box's padding, in pixels
    x = min(max(x, pad), max(width - text_w, pad))
    if y - pad >= size_px:
        return x, y - pad, "bottom"                     # above the box
    return x, min(max(y, 0) + pad, max(height - size_px, pad)), "top"   # inside its top edge


def annotate(image: np.ndarray, faces: list[dict], path: str) -> str:
    """The photo with a box and the apparent age per face, written to `path`."""
    return save_figure(annotated_figure(image, faces), path, tight=False, metadata=PICTURE_MARK)


def annotated_figure(image: np.ndarray, faces: list[dict]):
    """The figure `annotate` writes: the photo at its own size, a box and an age label per face."""
    h, w = image.shape[:2]
    fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(image)
    ax.axis("off")
    for face in faces:
        x, y, bw, bh = face["box"]
        ax.add_patch(plt.Rectangle((x, y), bw, bh, fill=False, color="lime", lw=2))
        x, y, valign = age_label_position(face["box"], w, h, f"{face['apparent_age']:.0f}")
        ax.text(x, y, f"{face['apparent_age']:.0f}", color="black", fontsize=label_size(face["box"]),
                va=valign, bbox=dict(facecolor="lime", alpha=0.8, pad=1, lw=0))
    return fig
