"""`python -m trainer.evaluate --model_dir runs/X`: the test report of a run.

Streams the split through best.keras once and writes, next to the model,
report.json (loss, accuracy, mae, cs5, count, mae_by_decade[, gender_accuracy]),
predictions.csv (key, true age, expected age, most likely age), and the
learning_curves.png / mae_by_age.png pictures. The metrics come from the same
`loop.batch_sums` as training and validation, so the numbers agree by construction.
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads (python -m trainer.evaluate)

import csv
import io
import json

import numpy as np
import tensorflow as tf
from absl import app

import records
from model import metrics
from records.manifest import atomic_write_bytes
from records.schema import NUM_AGES
from trainer import flags as trainer_flags
from trainer import loop, plots
from trainer.run_dir import RunDir, load_run_model

__all__ = ["evaluate_run", "load_run_model", "mae_by_decade"]


def mae_by_decade(true_age: np.ndarray, expected: np.ndarray) -> dict:
    out = {}
    error = np.asarray(metrics.abs_error(true_age, expected))
    for lo in range(0, NUM_AGES, 10):
        mask = (true_age >= lo) & (true_age < lo + 10)
        if mask.any():
            out[f"{lo}-{min(lo + 9, NUM_AGES - 1)}"] = {"mae": float(np.mean(error[mask])),
                                                       "count": int(mask.sum())}
    return out


def evaluate_run(model_dir: str, records_dir: str | None = None, split: str = "test",
                 batch_size: int = 256, quiet: bool = False) -> dict:
    if batch_size < 1:
        raise trainer_flags.ConfigError(f"--batch_size={batch_size}: must be at least 1")
    run = RunDir(model_dir)
    info = run.read_info()
    records_dir = records_dir or info["records"]
    net = load_run_model(run)
    with_gender = isinstance(net.output, dict)
    # The records at their stored size: the model's Resize layer brings them to its
    # input size with the same op as prediction, so both see the same pixels.
    data = records.make_dataset(records_dir, split, batch_size, training=False, with_keys=True)

    @tf.function
    def step(images, labels):
        outputs = net(images, training=False)
        sums = loop.batch_sums(outputs, labels, with_gender)[1]
        age_probs = outputs["age"] if with_gender else outputs
        return sums, metrics.expected_age(age_probs), tf.argmax(age_probs, -1)

    totals, keys, true_age, expected, likely = {}, [], [], [], []
    for images, labels in data:
        sums, exp_age, top = step(images, {k: v for k, v in labels.items() if k != "key"})
        for k, v in sums.items():
            totals[k] = totals.get(k, 0.0) + float(v)
        keys += [k.decode() for k in labels["key"].numpy()]
        true_age.append(labels["age"].numpy())
        expected.append(np.asarray(exp_age, np.float64))
        likely.append(top.numpy())
    true_age, expected, likely = map(np.concatenate, (true_age, expected, likely))

    report = {"split": split, "records": records_dir, "batch_size": batch_size,
              **loop.metrics(totals), "count": int(totals["count"]),
              "mae_by_decade": mae_by_decade(true_age, expected),
              "baseline_mae_predicting_train_mean": baseline_mae(records_dir, true_age)}
    atomic_write_bytes(run.file("report.json"), (json.dumps(report, indent=2) + "\n").encode())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["key", "true_age", "expected_age", "most_likely_age"])
    w.writerows([k, int(t), f"{e:.2f}", int(m)] for k, t, e, m in zip(keys, true_age, expected, likely))
    atomic_write_bytes(run.file("predictions.csv"), buf.getvalue().encode())
    history = run.read_history()
    if history:
        plots.learning_curves(history, run.file("learning_curves.png"))
    plots.mae_by_age(true_age, expected, run.file("mae_by_age.png"))
    if not quiet:
        print_report(report, run)
    return report


def baseline_mae(records_dir: str, true_age: np.ndarray) -> float:
    """MAE of always answering the training split's mean age (from the manifest's histogram
    when it is split-independent, else from the records): the bar a model must clear."""
    manifest = records.read_manifest(records_dir)
    hist = manifest["splits"]["train"].get("age_histogram") or manifest["age_histogram"]
    mean = float(np.dot(np.arange(len(hist)), hist) / max(sum(hist), 1))
    return float(np.mean(np.abs(true_age - mean)))


def print_report(report: dict, run) -> None:
    rows = [("faces", f"{report['count']}"), ("loss", f"{report['loss']:.4f}"),
            ("top-1 accuracy", f"{report['accuracy']:.4f}"), ("MAE (years)", f"{report['mae']:.2f}"),
            ("CS(5)", f"{report['cs5']:.4f}"),
            ("MAE of predicting the mean", f"{report['baseline_mae_predicting_train_mean']:.2f}")]
    if "gender_accuracy" in report:
        rows.append(("gender accuracy", f"{report['gender_accuracy']:.4f}"))
    print(f"Evaluation on the {report['split']} split of {report['records']}")
    for name, value in rows:
        print(f"  {name:<28} {value:>10}")
    print("  MAE by decade: " + ", ".join(f"{d} {v['mae']:.1f} (n={v['count']})"
                                          for d, v in report["mae_by_decade"].items()))
    print(f"Wrote {run.file('report.json')}, {run.file('predictions.csv')}, "
          f"{run.file('learning_curves.png')}, {run.file('mae_by_age.png')}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = trainer_flags.FLAGS
    evaluate_run(f.model_dir, f.records, f.split, f.batch_size)


if __name__ == "__main__":
    entry.run(main, trainer_flags.define_evaluate_flags, trainer_flags)
