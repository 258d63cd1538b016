"""age_gender.png: the age and gender distributions of the written records,
the two plots the original article showed before training."""

from __future__ import annotations

import numpy as np


def age_gender_png(path: str, age_histogram: list[int], gender_counts: dict[str, int],
                   title: str) -> None:
    # Here, at the end of ingest: the decode workers, forked at the start, never hold matplotlib.
    import matplotlib

    matplotlib.use("Agg")              # headless: ingest runs on servers
    import matplotlib.pyplot as plt

    fig, (ax_age, ax_gender) = plt.subplots(1, 2, figsize=(11, 4),
                                            gridspec_kw={"width_ratios": [3, 1]})
    ax_age.bar(np.arange(len(age_histogram)), age_histogram, width=1.0, color="tab:blue")
    ax_age.set(xlabel="age", ylabel="records", title=f"{title}: age")
    labels = list(gender_counts)
    ax_gender.bar(labels, [gender_counts[k] for k in labels],
                  color=["tab:blue", "tab:red", "tab:gray"][:len(labels)])
    ax_gender.set(title="gender")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
