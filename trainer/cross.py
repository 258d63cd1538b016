"""`python -m trainer.evaluate --model_dir RUN --records A,B,C`: one run scored on several
data sets, as one table.

Each data set is evaluated as `trainer.evaluate` does alone (its own report-<name>-<split>
files beside the run's), then one row per data set: faces, MAE, CS5, the 90% interval's
coverage, the false-adult rate at the first --age_threshold with its interval, and the
data set's framing and label kind (a real age or an apparent one), since a difference
between rows may be the crops' or the labels' rather than the faces'.  Written to the
run directory as cross-<names>-<split>.json and .md (names: the data sets' folder names
joined by "+") and printed.
"""

from __future__ import annotations

import json
import os

import records
from model.metrics import CS_NAME
from faces import framing
from storage.atomic import atomic_write_bytes
from records.schema import LABEL_REAL
from storage.run_dir import RunDir

MAX_NAME = 120     # characters of the data set names in the table's file name


def table_name(records_dirs, split: str) -> str:
    """cross-<names>-<split> (the names cut to MAX_NAME characters)."""
    names = "+".join(os.path.basename(os.path.normpath(os.path.abspath(d))) for d in records_dirs)
    return f"cross-{names[:MAX_NAME]}-{split}"


def row(records_dir: str, report: dict) -> dict:
    manifest = records.read_manifest(records_dir)
    gate = report["thresholds"][0] if report["thresholds"] else None
    return {"data_set": os.path.basename(os.path.normpath(os.path.abspath(records_dir))),
            "records": records_dir, "split": report["split"], "faces": report["count"],
            "label": manifest.get("label", LABEL_REAL), "framing": framing.of(manifest).describe(),
            "mae": report["mae"], CS_NAME: report[CS_NAME],
            "coverage_90": report["calibration"]["coverage"]["90%"]["coverage"],
            "calibrated": report["calibration"]["calibrated"],
            "threshold": gate["age"] if gate else None, "minors": gate["minors"] if gate else 0,
            "false_adult": gate["false_adult"] if gate else None}


def markdown(rows: list[dict], model_dir: str) -> str:
    t = rows[0]["threshold"]
    lines = [f"Run `{model_dir}` on {len(rows)} data sets ({rows[0]['split']} split)", "",
             f"| data set | faces | MAE | {CS_NAME.upper()} | 90% coverage | false adult at {t} [95% CI] "
             f"(minors) | label | framing |", "|---|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        fa = r["false_adult"]
        fa_text = ("–" if fa is None or fa["value"] is None else
                   f"{fa['value']:.1%} [{fa['ci'][0]:.1%}, {fa['ci'][1]:.1%}] ({r['minors']})")
        lines.append(f"| {r['data_set']} | {r['faces']} | {r['mae']:.2f} | {r[CS_NAME]:.3f} | "
                     f"{r['coverage_90']:.1%} | {fa_text} | {r['label']} | {r['framing']} |")
    return "\n".join(lines) + "\n"


def cross_evaluate(model_dir: str, records_dirs, split: str = "test", log=print, **evaluate_kwargs) -> dict:
    """Scores the run on each of `records_dirs`; writes and returns the table."""
    from trainer.evaluate import evaluate_run    # here: trainer.evaluate's main calls this module
    rows = [row(d, evaluate_run(model_dir, d, split, quiet=True, **evaluate_kwargs)) for d in records_dirs]
    out = {"model_dir": model_dir, "split": split, "rows": rows}
    run, name = RunDir(model_dir), table_name(records_dirs, split)
    paths = [run.file(name + ".json"), run.file(name + ".md")]
    text = markdown(rows, model_dir)
    atomic_write_bytes(paths[0], (json.dumps(out, indent=2) + "\n").encode())
    atomic_write_bytes(paths[1], text.encode())
    log(text + f"Wrote {', '.join(paths)}")
    return out
