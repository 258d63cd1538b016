"""`python -m serving.ship --model_dir RUN --export EXPORT --out models/NAME`

Makes a trained, evaluated and exported run a shipped model (serving.shipped): copies
what prediction, fine-tuning and a phone need (best.keras, the float16 model.tflite,
run.json, flags.txt, export.json) and what a reader needs (report.json, report.html,
mae_by_age.png), writes the model card (reports.model_card: MODEL_CARD.md and .html)
and model.json (every file's size and sha256, checked wherever the model is used).
`--cross REPORT.json,...`: trainer.evaluate reports of the run on other data sets, for
the card's cross-data-set table; `--peers FILE.json`: rows of `python -m bench.peers
--json` for the card's comparison with a published model.

The folder is built aside (models/.NAME.staging) and swapped in when complete
(storage.outdir): a failed or killed build leaves the previous model usable, and a
folder this project did not write is refused, never replaced.
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import csv
import os
import shutil

from absl import flags

from errors import ProjectError
from reports import model_card
from records.manifest import read_manifest
from serving import shipped
from storage import outdir
from storage.json_file import read_json_object
from storage.run_dir import RunDir, check_run

FLAGS = flags.FLAGS
# What the folder takes from the run and from the export, by name.
FROM_RUN = ("best.keras", "run.json", "flags.txt", "report.json", "report.html", "mae_by_age.png")
FROM_EXPORT = ("model.tflite", "export.json")
BUILD_COMMAND = "make model SRC=path/to/crop_part1"


class ShipError(ProjectError):
    """A run or export that cannot be shipped as asked; the message names what is missing."""


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "The trained run (with report.json from trainer.evaluate).")
    flags.DEFINE_string("export", None, "Its export (serving.export --tflite=float16): model.tflite, export.json.")
    flags.DEFINE_string("out", None, "The shipped model's folder, e.g. models/small-utkface.")
    flags.DEFINE_list("cross", [], "trainer.evaluate reports (report-*.json) of the run on other data sets.")
    flags.DEFINE_string("peers", None, "A JSON file of `python -m bench.peers --json` rows.")
    flags.mark_flag_as_required("model_dir")
    flags.mark_flag_as_required("export")
    flags.mark_flag_as_required("out")


def check_inputs(argv: list[str]) -> None:
    """Every input present before anything is written: one line naming the first missing."""
    entry.only_flags(argv)
    check_run(FLAGS.model_dir)
    for name in FROM_RUN:
        if not os.path.isfile(os.path.join(FLAGS.model_dir, name)):
            raise ShipError(f"{FLAGS.model_dir}/{name}: missing; run `python -m trainer.evaluate --model_dir "
                            f"{FLAGS.model_dir} --calibrate --nothumbnails` first")
    for name in FROM_EXPORT:
        if not os.path.isfile(os.path.join(FLAGS.export, name)):
            raise ShipError(f"{FLAGS.export}/{name}: missing; run `python -m serving.export --model_dir "
                            f"{FLAGS.model_dir} --out {FLAGS.export} --tflite=float16` first")
    for path in [*FLAGS.cross, *([FLAGS.peers] if FLAGS.peers else [])]:
        if not os.path.isfile(path):
            raise ShipError(f"{path}: not found")


def cross_rows(paths: list[str]) -> list[dict]:
    """The card's rows for the run's reports on other data sets."""
    rows = []
    for path in paths:
        report = read_json_object(path, "a trainer.evaluate report", "pass a report-*.json of the run", ShipError)
        data = report.get("framing", {}).get("data", {})
        rows.append({"name": os.path.basename(os.path.normpath(str(report.get("records", path)))),
                     "framing": f"{data.get('detector')}, margin {data.get('margin')}",
                     **{k: report.get(k) for k in ("count", "mae", "cs5", "baseline_mae_predicting_train_mean")},
                     "coverage": {m: v.get("coverage") for m, v in
                                  report.get("calibration", {}).get("coverage", {}).items() if isinstance(v, dict)}})
    return rows


def peer_rows(path: str | None) -> list[dict]:
    if not path:
        return []
    value = read_json_object(path, "bench.peers rows", "pass the file `python -m bench.peers --json` wrote", ShipError)
    return list(value.get("rows", []))


def best_epoch(run_dir: str) -> tuple[int | None, int]:
    """(the epoch best.keras is from, epochs trained)."""
    record = read_json_object(os.path.join(run_dir, "best.json"), "best.json", "train the run again", ShipError)
    with open(os.path.join(run_dir, "history.csv")) as f:
        epochs = sum(1 for _ in csv.DictReader(f))
    return record.get("epoch"), epochs


def parameters(path: str) -> int:
    import keras

    import model

    model.register_layers()
    return int(keras.saving.load_model(path, safe_mode=True, compile=False).count_params())


def build(run_dir: str, export_dir: str, into: str, name: str, cross: list[dict], peers: list[dict]) -> dict:
    """Fill the folder `into` (the staging directory); returns model.json's summary."""
    for source, names in ((run_dir, FROM_RUN), (export_dir, FROM_EXPORT)):
        for file in names:
            shutil.copyfile(os.path.join(source, file), os.path.join(into, file))
    run = RunDir(run_dir).read_info()
    report = read_json_object(os.path.join(run_dir, "report.json"), "a report", "evaluate the run again", ShipError)
    manifest = read_manifest(run["records"]) if isinstance(run.get("records"), str) and \
        os.path.isdir(run["records"]) else {}
    epoch, epochs = best_epoch(run_dir)
    facts = {"parameters": parameters(os.path.join(into, "best.keras")),
             "tflite_bytes": os.path.getsize(os.path.join(into, "model.tflite")),
             "command": BUILD_COMMAND, "best_epoch": epoch, "epochs": epochs}
    md = model_card.markdown(name, facts, run, manifest, report, cross, peers)
    with open(os.path.join(into, "MODEL_CARD.md"), "w") as f:
        f.write(md)
    with open(os.path.join(into, "MODEL_CARD.html"), "w") as f:
        f.write(model_card.to_html(name, md))
    summary = {"variant": run.get("variant"), "trained on": manifest.get("source", {}).get("name", "?"),
               "test MAE": round(float(report["mae"]), 2), "framing": run.get("detector")}
    shipped.write_info(into, name, summary)
    return summary


def main(argv: list[str]) -> int:
    check_inputs(argv)
    name = os.path.basename(os.path.normpath(FLAGS.out))
    out = outdir.Output(FLAGS.out, kind=shipped.KIND, what="--out")
    out.check()
    with out.lock():
        out.repair()
        staging = out.start_staging()
        summary = build(FLAGS.model_dir, FLAGS.export, staging, name, cross_rows(FLAGS.cross), peer_rows(FLAGS.peers))
        out.swap_in()
    size = sum(os.path.getsize(os.path.join(FLAGS.out, f)) for f in os.listdir(FLAGS.out))
    if size > shipped.MAX_FILE_BYTES:
        print(f"warning: {FLAGS.out} holds {size / 2 ** 20:.1f} MB, over the {shipped.MAX_FILE_BYTES // 2 ** 20} MB "
              f"a shipped model may take")
    print(f"Wrote {FLAGS.out} ({size / 2 ** 20:.1f} MB): " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    entry.run(main, define_flags)
