"""The data set card: `python -m records inspect DIR --html` writes DIR/card.html, one
self-contained page (reports.html_page) that shows what a model trained on DIR sees:
its source, the cleaning steps with what each removed, the counts per split, the
age / gender / group histograms from the manifest, and a grid of sample faces per
age band (schema.AGE_BANDS) read from the shards.

The counts are the manifest's (which `records verify` checks against the records);
the faces are the first SAMPLES_PER_BAND of each band in the shards' write order (a
seeded random order), reading at most MAX_SCANNED records.  Ingest owns the name
card.html, so a re-ingest removes a card that no longer describes the data set.
"""

from __future__ import annotations

import html
import os

import numpy as np

from records import schema
from records.manifest import read_manifest
from reports.html_page import figure_uri, page, table, thumbnail_uri
from storage.atomic import atomic_write_bytes

CARD_NAME = "card.html"   # ingest.output owns it (so this module imports no TensorFlow at load)
SECTIONS = ("source", "cleaning", "splits", "histograms", "samples")
SAMPLES_PER_BAND = 8
MAX_SCANNED = 20000       # records read looking for samples (a bound on a huge data set)


def source_block(m: dict, directory: str) -> str:
    src = m.get("source") or {}
    rows = [["directory", html.escape(directory)], ["source", html.escape(str(src.get("name", src.get("mat"))))],
            ["read from", html.escape(str(src.get("read", src.get("mat", ""))))],
            ["fingerprint", html.escape(str(src.get("fingerprint", src.get("sha256", "")))[:16]) + "…"],
            ["entries", str(src.get("entries", ""))], ["label", html.escape(str(m.get("label", schema.LABEL_REAL)))],
            ["face margin", str(m.get("margin", ""))], ["image size", f"{m.get('image_size')} px {m.get('encoding')}"],
            ["schema version", str(m.get("schema_version"))], ["written", html.escape(str(m.get("created", "")))]]
    return table(["", ""], rows, wrap=(1,))       # paths wrap


def cleaning_block(m: dict) -> str:
    rows = [[html.escape(c["step"]), html.escape(c.get("rule", "")), str(c["removed"]), str(c["remaining"])]
            for c in m.get("cleaning", [])]
    skipped = m.get("skipped") or {}
    text = ", ".join(f"{html.escape(k)} {v}" for k, v in skipped.items()) or "none"
    return (table(["step", "rule", "removed", "remaining"], rows, wrap=(0, 1))
            + f"<p>Kept {m.get('kept')}; image files skipped while writing: {text}.</p>")


def splits_block(m: dict) -> str:
    attributes = sorted({a for e in m["splits"].values() for a in (e.get("group_counts") or {})})
    head = ["split", "records", "shards", "MB"]
    rows = []
    for name, e in m["splits"].items():
        rows.append([name, str(e["count"]), str(len(e["shards"])), f"{sum(s['bytes'] for s in e['shards']) / 1e6:.1f}"])
    out = table(head, rows)
    for attribute in attributes:
        labels = sorted({k for e in m["splits"].values() for k in (e.get("group_counts") or {}).get(attribute, {})})
        rows = [[html.escape(label)] + [str((e.get("group_counts") or {}).get(attribute, {}).get(label, 0))
                                        for e in m["splits"].values()] for label in labels]
        out += f"<h3>{html.escape(attribute)} per split</h3>" + table([attribute, *m["splits"]], rows)
    return out


def histograms_block(m: dict) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, e in m["splits"].items():
        hist = e.get("age_histogram")
        if hist:
            ax.step(np.arange(len(hist)), hist, where="mid", label=f"{name} ({sum(hist)})")
    ax.set_xlabel("age")
    ax.set_ylabel("records")
    ax.set_title("Ages per split")
    ax.legend()
    out = f"<img class=plot alt='ages per split' src='{figure_uri(fig)}'>"
    counts = {"gender": m.get("gender_counts") or {}, **(m.get("group_counts") or {})}
    counts = {k: v for k, v in counts.items() if v}
    if counts:
        fig, axes = plt.subplots(1, len(counts), figsize=(4 * len(counts), 3), squeeze=False)
        for ax, (attribute, values) in zip(axes[0], counts.items()):
            ax.bar(list(values), list(values.values()), color="tab:blue")
            ax.set_title(attribute)
            ax.tick_params(axis="x", rotation=30)
        out += f"<img class=plot alt='gender and groups' src='{figure_uri(fig)}'>"
    return out


def sample_faces(directory: str) -> dict[str, list[tuple[np.ndarray, int, str]]]:
    """Up to SAMPLES_PER_BAND (pixels, age, key) per age band, in write order."""
    from records.reader import make_dataset   # TensorFlow only here

    bands = {schema.band_name(lo, hi): [] for lo, hi in schema.AGE_BANDS}
    bounds = [(schema.band_name(lo, hi), lo, hi if hi is not None else schema.NUM_AGES) for lo, hi in schema.AGE_BANDS]
    scanned = 0
    for split in schema.SPLITS:
        for images, labels in make_dataset(directory, split, 256, training=False, with_keys=True):
            for pixels, age, key in zip(images.numpy(), labels["age"].numpy(), labels["key"].numpy()):
                name = next(n for n, lo, hi in bounds if lo <= age <= hi)
                if len(bands[name]) < SAMPLES_PER_BAND:
                    bands[name].append((pixels, int(age), key.decode("utf-8", "replace")))
            scanned += len(images)
            if scanned >= MAX_SCANNED or all(len(v) == SAMPLES_PER_BAND for v in bands.values()):
                return bands
    return bands


def samples_block(directory: str) -> str:
    out = []
    for band, faces in sample_faces(directory).items():
        figures = "".join(f"<figure><img alt='{html.escape(key)}' src='{thumbnail_uri(pixels)}'>"
                          f"<figcaption>age {age}</figcaption></figure>" for pixels, age, key in faces)
        out.append(f"<h3>{band} ({len(faces)} shown)</h3>"
                   + (f"<div class=faces>{figures}</div>" if faces else "<p>No faces in this band.</p>"))
    return "".join(out)


def write_card(directory: str) -> str:
    """DIR/card.html (temporary name, then rename); returns its path."""
    m = read_manifest(directory)
    if m.get("kind") != schema.KIND_IMAGES:
        from errors import DataError
        raise DataError(f"{directory}: a data set card shows face images; this is a {m.get('kind')!r} "
                        f"directory; pass the image shards' directory")
    name = (m.get("source") or {}).get("dataset") or os.path.basename(os.path.normpath(directory))
    sections = [("source", "Source", source_block(m, directory)),
                ("cleaning", "Cleaning steps", cleaning_block(m)),
                ("splits", "Counts per split", splits_block(m)),
                ("histograms", "Ages, genders and groups", histograms_block(m)),
                ("samples", "Sample faces per age band", samples_block(directory))]
    path = os.path.join(directory, CARD_NAME)
    atomic_write_bytes(path, page(f"Data set card: {name}", sections).encode("utf-8"))
    return path
