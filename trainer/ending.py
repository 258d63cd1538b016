"""The last lines of `python -m trainer`: the headline of the run's report and the
commands a user runs next, with the run's paths filled in."""

from __future__ import annotations

import os
import shlex


def export_name(run_dir: str) -> str:
    return os.path.join("exports", os.path.basename(os.path.normpath(run_dir)) or "model")


def ending(run_dir: str, report: dict | None) -> str:
    """The headline (test MAE against always answering the training mean) when there is a
    report, then the next commands."""
    run = shlex.quote(run_dir)
    lines = []
    if report is not None:
        mae, baseline = report["mae"], report["baseline_mae_predicting_train_mean"]
        verdict = (f"{baseline / mae:.1f}x better than" if mae < baseline else "no better than")
        lines.append(f"{run_dir}: {report['split']} MAE {mae:.2f} years on {report['count']} faces, "
                     f"{verdict} always answering the training mean ({baseline:.2f})")
    else:
        lines.append(f"{run_dir}: trained; no evaluation ran (--noevaluate)")
    steps = []
    if report is None:
        steps.append((f"python -m trainer.evaluate --model_dir {run}", "its test split"))
    steps += [(f"python -m trainer.evaluate --model_dir {run} --records shards/OTHER", "another data set"),
              (f"python -m serving.predict --model_dir {run} photo.jpg", "ages of your photos"),
              (f"python -m serving.export --model_dir {run} --out {shlex.quote(export_name(run_dir))}",
               "a SavedModel (add --tflite=float16 for a phone)")]
    width = max(len(command) for command, _ in steps)
    lines.append("Next:")
    lines += [f"  {command:<{width}}  # {why}" for command, why in steps]
    return "\n".join(lines)
