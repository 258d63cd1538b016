"""The pictures prediction draws: a photo annotated with each face's apparent age and
its 90% interval (`41 (25–62)`), and one face's age distribution with that interval
shaded."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from model import metrics, uncertainty
from reports.plots import save_figure   # chooses the file-only backend before pyplot loads

# The PNG text chunk every picture drawn here carries: the mark by which serving.predict
# knows a picture in --pictures_dir as one it wrote (and may replace).
PICTURE_MARK = {"Software": "dex-age serving.predict"}


def interval(probs: np.ndarray) -> tuple[int, int]:
    """The central INTERVAL_MASS (90%) interval of one face's age distribution, whole
    ages inclusive (model.uncertainty): what an uncalibrated model answers."""
    low, high = uncertainty.age_interval(np.asarray(probs, np.float32)[None])
    return int(np.asarray(low)[0]), int(np.asarray(high)[0])


def answered_interval(face: dict) -> tuple[int, int] | None:
    """The (age_low, age_high) a face was answered with, None without one."""
    if face.get("age_low") is None or face.get("age_high") is None:
        return None
    return int(face["age_low"]), int(face["age_high"])


def age_distribution(probs: np.ndarray, path: str, title: str, served: tuple[int, int] | None = None) -> str:
    """One face's softmax over ages 0..100 with its expectation marked and its 90%
    interval shaded: `served`, the (age_low, age_high) prediction answered (a calibrated
    model's interval is not the distribution's central one), else the central one."""
    return save_figure(distribution_figure(probs, title, served), path, metadata=PICTURE_MARK)


def face_distribution(face: dict, path: str, title: str) -> str:
    """`age_distribution` of one answered face (its age_probs, its answered interval)."""
    return age_distribution(np.asarray(face["age_probs"]), path, title, answered_interval(face))


def distribution_figure(probs: np.ndarray, title: str, served: tuple[int, int] | None = None):
    """The figure `age_distribution` writes."""
    expected = float(np.asarray(metrics.expected_age(probs[None]))[0])
    low, high = (int(served[0]), int(served[1])) if served is not None else interval(probs)
    fig, ax = plt.subplots(figsize=(6, 2.6))
    half = 0.5     # a bar's half width: the span covers the bars of low..high
    ax.axvspan(low - half, high + half, color="C1", alpha=0.2,
               label=f"{round(100 * uncertainty.INTERVAL_MASS)}% interval {low}–{high}")
    ax.bar(np.arange(len(probs)), probs, color="C0")
    ax.axvline(expected, color="C3", label=f"apparent age {expected:.1f}")
    ax.set_xlabel("age")
    ax.set_ylabel("probability")
    ax.set_title(title)
    ax.legend()
    return fig


def label_text(face: dict) -> str:
    """A face's label: its apparent age and 90% interval, `41 (25–62)` (the age alone
    for a face without an interval)."""
    age = f"{face['apparent_age']:.0f}"
    if face.get("age_low") is None or face.get("age_high") is None:
        return age
    return f"{age} ({face['age_low']}–{face['age_high']})"


MIN_LABEL_PT = 8        # the smallest label font, points (at 100 dpi: 11 px)


def label_size(box, width: int, height: int, text: str) -> float:
    """The age label's font size in points: an eighth of the face's height or a 50th of
    the photo's longer side, whichever is larger (legible on a big photo's small face),
    and no wider than the photo."""
    size = max(MIN_LABEL_PT, box[3] / 8, max(width, height) / 50)
    fits = ((width - 8) / (0.65 * len(text)) - 4) * 72 / 100     # age_label_position's width, inverted
    return float(max(MIN_LABEL_PT, min(size, fits)))


def age_label_position(box, width: int, height: int, text: str, size: float) -> tuple[float, float, str]:
    """Where a face's age label goes so that it stays inside the picture: above the
    box when there is room, else just inside its top edge; shifted left when it
    would run past the right edge. Returns (x, y, vertical alignment)."""
    x, y = box[:2]
    size_px = size * 100 / 72 + 4                      # `size` points at 100 dpi, plus the label's padding
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
    """The figure `annotate` writes: the photo at its own size, a box and a label_text per face."""
    h, w = image.shape[:2]
    fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(image)
    ax.axis("off")
    for face in faces:
        x, y, bw, bh = face["box"]
        ax.add_patch(plt.Rectangle((x, y), bw, bh, fill=False, color="lime", lw=max(2, max(w, h) / 400)))
        text = label_text(face)
        size = label_size(face["box"], w, h, text)
        x, y, valign = age_label_position(face["box"], w, h, text, size)
        ax.text(x, y, text, color="black", fontsize=size,
                va=valign, bbox=dict(facecolor="lime", alpha=0.8, pad=1, lw=0))
    return fig
