"""The run directory (`--model_dir`): what a training run leaves behind, by name.

    flags.txt        the resolved flags (re-usable: --flagfile=runs/X/flags.txt)
    run.json         shards dir, shard image size, model input size, variant, task,
                     cache_features, best_metric: what evaluation/prediction need, and
                     what a resumed run must not change
    checkpoints/     tf.train.CheckpointManager: model, optimizer, epoch, best metric (resume)
    best.keras       the full age model with the best --best_metric so far
    history.csv      one row per completed epoch
    tb/              TensorBoard summaries
    report.json, predictions.csv, learning_curves.png, mae_by_age.png   (trainer.evaluate)
"""

from __future__ import annotations

import csv
import io
import json
import os

import keras

import model  # noqa: F401  (registers the custom layers best.keras is made of)
from entry.errors import ProjectError
from records.manifest import atomic_write_bytes

HISTORY_FIELDS = ("epoch", "loss", "accuracy", "mae", "cs5", "val_loss", "val_accuracy", "val_mae",
                  "val_cs5", "learning_rate", "epoch_seconds", "images_per_second")
GENDER_FIELDS = ("gender_accuracy", "val_gender_accuracy")


class RunDirError(ProjectError):
    """A run directory that cannot be used as asked; the message says why and what to do."""


class RunDir:
    def __init__(self, path: str):
        self.path = path

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def checkpoints(self) -> str:
        return self.file("checkpoints")

    @property
    def best_model(self) -> str:
        return self.file("best.keras")

    @property
    def tensorboard(self) -> str:
        return self.file("tb")

    # -- flags.txt / run.json -------------------------------------------------
    def write_flags(self, lines: list[str]) -> None:
        atomic_write_bytes(self.file("flags.txt"), ("\n".join(lines) + "\n").encode())

    def write_info(self, info: dict) -> None:
        atomic_write_bytes(self.file("run.json"), (json.dumps(info, indent=2) + "\n").encode())

    def read_info(self, missing_ok: bool = False) -> dict:
        """run.json; with missing_ok, {} for a run that has not written one yet."""
        path = self.file("run.json")
        if not os.path.exists(path):
            if missing_ok:
                return {}
            raise RunDirError(f"{path}: not found; {self.path} is not a training run directory "
                              f"(train one with `python -m trainer --model_dir {self.path} ...`)")
        with open(path) as f:
            return json.load(f)

    def require_best_model(self) -> str:
        if not os.path.exists(self.best_model):
            raise RunDirError(f"{self.best_model}: not found; the run has not finished an epoch yet "
                              f"(train with `python -m trainer --model_dir {self.path}`)")
        return self.best_model

    # -- history.csv -----------------------------------------------------------
    def read_history(self) -> list[dict]:
        path = self.file("history.csv")
        if not os.path.exists(path):
            return []
        with open(path, newline="") as f:
            return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
                    for row in csv.DictReader(f)]

    def write_history(self, rows: list[dict]) -> None:
        """Rewrite the whole file atomically: a kill never leaves half a row."""
        fields = list(HISTORY_FIELDS) + [k for k in GENDER_FIELDS if rows and k in rows[0]]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.file("history.csv"), buf.getvalue().encode())


def load_run_model(run: RunDir):
    """best.keras of a run, loaded with safe_mode (only registered layers)."""
    return keras.saving.load_model(run.require_best_model(), safe_mode=True)
