"""What happens at the end of every epoch, as a short list of named actions
(in the style of Orbit's `train_loop_end` + `orbit/actions`).

`trainer.train.run_epochs` trains and validates one epoch, records whether
`--best_metric` improved (`EpochEnd`), then calls each action in order. The
order matters: best.keras and history.csv are written before the checkpoint,
because the checkpoint is the commit point of an epoch (a kill before it
repeats the epoch, a kill after it resumes with the next one). An action that
returns a reason (a string) ends training after this epoch; the trainer prints
it in one line.

Adding end-of-epoch work (an LR schedule's value in the history, an export
after a new best) is one more small action in `default_actions`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import keras
import tensorflow as tf

from storage.atomic import atomic_write
from storage.run_dir import RunDir
from trainer import history
from trainer.config import format_duration


@dataclasses.dataclass
class EpochEnd:
    """One finished epoch: its history row and the bookkeeping after it."""
    epoch: int                 # 1-based number of the epoch just finished
    row: dict                  # the history.csv row (train and val_* metrics, timings)
    improved: bool             # --best_metric reached a new best this epoch
    history: list[dict]        # every completed epoch so far, this one included


Action = Callable[[EpochEnd], str | None]   # a reason to stop after this epoch, or None


def record_best(best: tf.Variable, stale: tf.Variable, value: float) -> bool:
    """Update the best/stale counters from this epoch's --best_metric value (lower is
    better); True on a new best."""
    improved = value < float(best.numpy())
    if improved:
        best.assign(value)
        stale.assign(0)
    else:
        stale.assign_add(1)
    return improved


def save_best(net: keras.Model, run: RunDir, epoch: int, metric: str, value: float) -> None:
    """best.json first (which epoch, which value), then best.keras under a temporary name:
    a kill mid-save keeps the old model, and best.json never names an epoch older than
    the model's (trainer.train.restore relies on both)."""
    run.write_best_record(epoch, metric, value)
    with atomic_write(run.best_model) as tmp:
        try:
            net.save(tmp + ".keras")          # Keras 3 insists on the extension
            os.replace(tmp + ".keras", tmp)
        except OSError as e:                  # a failed write() names no file: name ours
            e.filename = e.filename or run.best_model
            raise
        finally:
            if os.path.exists(tmp + ".keras"):
                os.remove(tmp + ".keras")


def new_best_model(net: keras.Model, run: RunDir, best_metric: str) -> Action:
    """best.keras (and best.json): the full age model whenever --best_metric improves."""
    def action(end: EpochEnd) -> None:
        if end.improved:
            save_best(net, run, end.epoch, best_metric, end.row[best_metric])
    return action


def write_history(run: RunDir) -> Action:
    """history.csv: every completed epoch, rewritten atomically."""
    def action(end: EpochEnd) -> None:
        history.write_history(run, end.history)
    return action


def tensorboard(writer) -> Action:
    """One scalar per history column, at step = epoch number."""
    def action(end: EpochEnd) -> None:
        with writer.as_default(step=end.epoch):
            for k, v in end.row.items():
                if k != "epoch":
                    tf.summary.scalar(k, v)
    return action


def checkpoint(manager: tf.train.CheckpointManager, epoch_var: tf.Variable) -> Action:
    """The commit point of the epoch: epoch counter, weights, optimizer, best, stale."""
    def action(end: EpochEnd) -> None:
        epoch_var.assign(end.epoch)
        manager.save(checkpoint_number=end.epoch)
    return action


def early_stop(patience: int, stale_var: tf.Variable, best_metric: str) -> Action:
    """Stop after `patience` epochs without a new best (0: never)."""
    def action(end: EpochEnd) -> str | None:
        if patience and int(stale_var.numpy()) >= patience:
            return f"{best_metric} has not improved for {patience} epochs (--patience={patience})"
        return None
    return action


def time_limit(limit_s: float, started: float, clock=time.monotonic) -> Action:
    """Stop after the epoch that ends `limit_s` seconds or more after `started` (0: never)."""
    def action(end: EpochEnd) -> str | None:
        spent = clock() - started
        if limit_s and spent >= limit_s:
            return (f"{format_duration(spent)} of training passed --time_limit="
                    f"{format_duration(limit_s)}")
        return None
    return action
