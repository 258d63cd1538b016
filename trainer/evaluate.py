"""`python -m trainer.evaluate --model_dir runs/X`: the test report of a run.

Streams the split through best.keras once and writes, next to the model,
report.json (loss, accuracy, mae, cs5, count, mae_by_decade[, gender_accuracy],
and the apparent-age scores below; `baseline_mae_predicting_train_mean`: always
answering the training split's mean age, and one WARNING line when the model's MAE
is within 15% of it), predictions.csv (key, true age, expected age,
most likely age, and the apparent-age columns), and the learning_curves.png /
mae_by_age.png pictures.  Those names are the run's own report (its records' test
split); another data set or split writes report-<data set>-<split>.json,
predictions-<...>.csv and mae_by_age-<...>.png beside them (`output_names`). The metrics come from the same `loop.batch_sums` as
training and validation, so the numbers agree by construction.

Apparent age, as ChaLearn LAP scored it (`apparent_age_scores`): when the split's
records carry a spread (age_std > 0, e.g. APPA-REAL), `epsilon_error` is the mean of
1 - exp(-(x - μ)² / (2σ²)) over the faces with σ > 0 (those with σ = 0 are left out
and counted in `epsilon_left_out`) and `mae_apparent` the MAE against μ over every
face (σ = 0 included: all raters agreeing is still an apparent age); when they
carry a real age (real_age >= 0), `mae_real` is the MAE against it. Otherwise null.

`--records X` scores the run on another source's shards (resized to the model's
input); `--records A,B` on each of several, then one table of them (`trainer.cross`);
`--tta=flip` scores each face as the mean softmax of the image and its mirror.

report.json also holds `groups` (reports.groups), `age_assurance` (trainer.assurance;
`--max_false_adult R` chooses the challenge age on the val split) and `calibration`
(trainer.calibration: the intervals' coverage overall and per group; `--calibrate`
fits the conformal calibration on the val split first and stores it in best.keras).
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads (python -m trainer.evaluate)

if __name__ == "__main__":   # the command line is checked before TensorFlow loads below
    from trainer import flags as _cli
    entry.check_flags(_cli.define_evaluate_flags, _cli, check=_cli.check_evaluate_values)

import csv
import io
import json
import os

import numpy as np
import tensorflow as tf

import records
from records import verify
from faces import framing
from model import age_outputs, metric_names, metrics, uncertainty
from model.load import load_run_model
from records.schema import AGE_MEAN, AGE_STD, GROUP_ATTRIBUTES, NUM_AGES, REAL_AGE
from reports import plots
from storage.atomic import atomic_write_bytes
from storage.run_dir import OTHER_REPORT, OWN_REPORT, RunDir, run_framing, run_records
from reports import groups, report_page
from trainer import assurance, calibration, cross, loop
from trainer import flags as trainer_flags
from trainer.config import DEFAULT_THRESHOLDS, TrainConfig, check_evaluate

__all__ = ["evaluate_run", "load_run_model", "mae_by_decade", "apparent_age_scores"]

# A model whose MAE is within 15% of always answering the training mean learned little.
LEARNED_LITTLE = 0.85
SCORE_LABELS = (AGE_MEAN, AGE_STD, REAL_AGE)   # the labels apparent_age_scores reads, when present
OWN_SPLIT = "test"   # the split of the run's own report.json (what training ends by scoring)


def apparent_age_scores(expected: np.ndarray, age_mean: np.ndarray | None = None,
                        age_std: np.ndarray | None = None, real_age: np.ndarray | None = None) -> dict:
    """epsilon_error (faces with a spread, σ > 0), mae_apparent (every face, against its
    apparent age μ: a face whose raters all agreed, σ = 0, still has one), mae_real
    (faces with a real age), and the face counts behind them; None where the split does
    not carry the labels (mae_apparent and epsilon_error need a split with spreads)."""
    out = {metrics.EPSILON_ERROR: None, "epsilon_faces": 0, "epsilon_left_out": 0, "mae_apparent": None,
           "mae_real": None, "real_age_faces": 0}
    if age_std is not None and np.any(age_std > 0):
        spread = age_std > 0
        eps = np.asarray(metrics.epsilon_error(expected[spread], age_mean[spread], age_std[spread]))
        out.update({metrics.EPSILON_ERROR: float(np.mean(eps))}, epsilon_faces=int(spread.sum()),
                   epsilon_left_out=int((~spread).sum()),
                   mae_apparent=metrics.mean_abs_error(age_mean, expected))
    if real_age is not None and np.any(real_age >= 0):
        known = real_age >= 0
        out.update(mae_real=metrics.mean_abs_error(real_age[known], expected[known]),
                   real_age_faces=int(known.sum()))
    return out


def per_face_epsilon(expected: np.ndarray, age_mean: np.ndarray, age_std: np.ndarray) -> np.ndarray:
    """The ε-error of each face, NaN where it has no spread."""
    return np.where(age_std > 0, np.asarray(metrics.spread_epsilon_error(expected, age_mean, age_std)), np.nan)


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
                 batch_size: int = TrainConfig.eval_batch_size, quiet: bool = False, tta: str = "none",
                 thresholds=DEFAULT_THRESHOLDS, challenge_age: int | None = None,
                 calibrate: bool = False, thumbnails: bool = True, max_false_adult: float | None = None) -> dict:
    check_evaluate(batch_size, thresholds, challenge_age, max_false_adult)
    run = RunDir(model_dir)
    info = run.read_info()
    where = run.file("run.json")
    # run.json's records are checked where they are needed (a run.json without them scores
    # only another data set, named by --records, into the side reports).
    run_records_dir = run_records(info, where) if not records_dir or "records" in info else None
    records_dir = records_dir or run_records_dir
    trained, scored = run_framing(info, where), framing.of(records.read_manifest(records_dir))
    line = framing.warning(trained, scored, f"the faces of {records_dir}", framing.data_fix(trained))
    if line:
        print(line, flush=True)
    net = load_run_model(run, recalibrating=calibrate)
    fitted, chosen = info.get(calibration.RUN_KEY), None
    if calibrate or max_false_adult is not None:   # the val split: fits and choices, the split scored unseen
        val = calibration.SplitFaces(net, records_dir, calibration.FIT_SPLIT, batch_size, tta)
        if calibrate:    # before scoring: the report is the calibrated model's, `calibration` says both
            net, fitted = calibration.calibrate_run(run, net, val, tta)
        if max_false_adult is not None:
            rounded = np.round(val.estimate, 2)   # as predictions.csv writes estimates
            chosen = {t: assurance.choose_challenge_age(val.true_age, rounded, val.attributes, t, max_false_adult)
                      for t in thresholds}
    layer = uncertainty.interval_calibration(net)
    with_gender = isinstance(net.output, dict)
    # The records at their stored size: the model's Resize layer brings them to its
    # input size with the same op as prediction, so both see the same pixels.
    data = records.make_dataset(records_dir, split, batch_size, training=False, with_keys=True)

    # The exported model's outputs (with its flip average under --tta=flip): the report
    # scores exactly what serving.predict and the export answer.
    outputs_of = age_outputs(net, with_gender, tta == "flip")

    @tf.function
    def step(images, labels):
        out = outputs_of(images)
        age_probs = out["age_probs"]
        if with_gender:
            male = out["male_probability"]
            age_probs = {"age": age_probs, "gender": tf.stack([1.0 - male, male], axis=-1)}
        sums = loop.batch_sums(age_probs, labels, with_gender)[1]
        return sums, out["apparent_age"], tf.argmax(out["age_probs"], -1), {k: out[k] for k in FACE_OUTPUTS}

    totals, keys, true_age, expected, likely = {}, [], [], [], []
    extra = {name: [] for name in SCORE_LABELS}
    faces = FaceColumns()
    worst = report_page.WorstFaces() if thumbnails else None
    with verify.naming_damage([records_dir]):
        for images, labels in data:
            sums, exp_age, top, face_out = step(images, {k: v for k, v in labels.items()
                                                         if k not in DESCRIPTORS})
            faces.add(face_out, labels)
            if worst is not None:
                worst.add(images.numpy(), labels["key"].numpy(), labels["age"].numpy(), exp_age.numpy())
            for k, v in sums.items():
                totals[k] = totals.get(k, 0.0) + float(v)
            keys += [k.decode() for k in labels["key"].numpy()]
            true_age.append(labels["age"].numpy())
            expected.append(np.asarray(exp_age, np.float64))
            likely.append(top.numpy())
            for name in SCORE_LABELS:
                if name in labels:
                    extra[name].append(labels[name].numpy())
    true_age, expected, likely = map(np.concatenate, (true_age, expected, likely))
    extra = {name: np.concatenate(v).astype(np.float64) if v else None for name, v in extra.items()}

    report = {"split": split, "records": records_dir, "batch_size": batch_size, "tta": tta,
              "framing": {"training": trained.as_dict(), "data": scored.as_dict()},
              **loop.metrics(totals), "count": int(totals["count"]),
              **apparent_age_scores(expected, extra[AGE_MEAN], extra[AGE_STD], extra[REAL_AGE]),
              "mae_by_decade": mae_by_decade(true_age, expected),
              "baseline_mae_predicting_train_mean": baseline_mae(records_dir, true_age)}
    columns = faces.columns()
    # The group numbers are predictions.csv's: computed from the estimates as written there.
    written_estimate = np.array([float(f"{e:.2f}") for e in expected])
    report["groups"] = groups.group_report(true_age, written_estimate, columns["attributes"])
    report["thresholds"] = groups.threshold_rates(true_age, written_estimate, thresholds, challenge_age)
    report["age_assurance"] = assurance.assurance_section(true_age, written_estimate, columns["attributes"],
                                                          thresholds, challenge_age, chosen)
    report["calibration"] = calibration.calibration_section(
        true_age, columns["age_probs"], columns["attributes"], layer, fitted if layer is not None else None)
    names = output_names(run_records_dir, records_dir, split)
    written = [run.file(names["report"]), run.file(names["predictions"])]
    atomic_write_bytes(written[0], (json.dumps(report, indent=2) + "\n").encode())
    atomic_write_bytes(written[1], predictions_csv(keys, true_age, expected, likely, extra, columns))
    history = run.read_history()
    if history and "learning_curves" in names:
        written.append(run.file(names["learning_curves"]))
        plots.learning_curves(history, written[-1], run.read_best_record())
    written.append(run.file(names["mae_by_age"]))
    plots.mae_by_age(true_age, expected, written[-1],
                    f"{os.path.basename(os.path.normpath(records_dir))}, {split} split")
    written.append(run.file(names["report_html"]))
    report_page.write_report(written[-1], report, true_age, expected, worst)
    if not quiet:
        print_report(report, written)
    warning = learned_little(report)
    if warning:
        print(warning, flush=True)
    return report


def learned_little(report: dict) -> str | None:
    """One WARNING line when the model's MAE is within 15% of the mean predictor's on
    the same split (both numbers and the usual causes), else None."""
    mae, mean = report["mae"], report["baseline_mae_predicting_train_mean"]
    if mae < LEARNED_LITTLE * mean:
        return None
    return (f"WARNING: the model learned little: MAE {mae:.2f} on the {report['split']} split against "
            f"{mean:.2f} for always answering the training mean age; usual causes: frozen random layers "
            f"(a frozen --trainable_from without trained weights), too few epochs, or faces framed "
            f"unlike the training crops")


def output_names(run_records: str | None, records_dir: str, split: str) -> dict:
    """The file names a report is written under in the run directory.  The run's own
    report (its own records' test split, as training ends with): report.json,
    predictions.csv, learning_curves.png, mae_by_age.png.  Any other data set or split
    names itself, so it never replaces the run's own report and several sit side by
    side: report-<basename of the records>-<split>.json, predictions-...csv,
    mae_by_age-...png (the learning curves are the run's, not the data set's)."""
    if split == OWN_SPLIT and run_records and os.path.realpath(records_dir) == os.path.realpath(run_records):
        return dict(OWN_REPORT)
    tag = f"{os.path.basename(os.path.normpath(os.path.abspath(records_dir)))}-{split}"
    return {what: pattern.replace("*", tag) for what, pattern in OTHER_REPORT.items()}


FACE_OUTPUTS = ("age_sd", "age_low", "age_high", "age_probs")   # age_outputs kept per face
DESCRIPTORS = ("key", *GROUP_ATTRIBUTES)   # the reader's per-face strings: not scored


class FaceColumns:
    """The per-face outputs and descriptors evaluation keeps besides the scores."""

    def __init__(self):
        self.parts = {name: [] for name in (*FACE_OUTPUTS, "gender", *GROUP_ATTRIBUTES)}

    def add(self, outputs: dict, labels: dict) -> None:
        for name in FACE_OUTPUTS:
            self.parts[name].append(np.asarray(outputs[name], np.float64))
        for name, values in calibration.group_labels(labels).items():
            self.parts[name] += values

    def columns(self) -> dict:
        """{age_sd, age_low, age_high, age_probs: arrays; attributes: {gender, race...: labels}}."""
        out = {name: np.concatenate(self.parts[name]) for name in FACE_OUTPUTS}
        out["attributes"] = {name: np.array(self.parts[name], dtype=object)
                             for name in ("gender", *GROUP_ATTRIBUTES)}
        return out


def predictions_csv(keys, true_age, expected, likely, extra: dict, columns: dict) -> bytes:
    """One row per face; the apparent-age columns are empty where the split lacks the labels.
    Then the face's uncertainty (age_sd, the 90% interval age_low..age_high), its gender
    and group labels."""
    n = len(keys)
    mean, std, real = (extra[k] if extra[k] is not None else np.full(n, np.nan) for k in SCORE_LABELS)
    eps = per_face_epsilon(expected, mean, np.nan_to_num(std))
    fmt = lambda v, spec: "" if np.isnan(v) else format(v, spec)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    attributes = columns["attributes"]
    w.writerow(["key", "true_age", "expected_age", "most_likely_age", AGE_MEAN, AGE_STD, metrics.EPSILON_ERROR,
                REAL_AGE, "age_sd", "age_low", "age_high", *attributes])
    w.writerows([k, int(t), f"{e:.2f}", int(m), fmt(a, ".2f"), fmt(s, ".2f"), fmt(x, ".4f"),
                 "" if np.isnan(r) or r < 0 else int(r), f"{sd:.2f}", int(lo), int(hi), *labels]
                for k, t, e, m, a, s, x, r, sd, lo, hi, *labels in zip(
                    keys, true_age, expected, likely, mean, std, eps, real, columns["age_sd"],
                    columns["age_low"], columns["age_high"], *attributes.values()))
    return buf.getvalue().encode()


def baseline_mae(records_dir: str, true_age: np.ndarray) -> float:
    """MAE of always answering the training split's mean age (from the manifest's histogram
    when it is split-independent, else from the records): the bar a model must clear."""
    manifest = records.read_manifest(records_dir)
    hist = manifest["splits"]["train"].get("age_histogram") or manifest["age_histogram"]
    mean = float(np.dot(np.arange(len(hist)), hist) / max(sum(hist), 1))
    return metrics.mean_abs_error(true_age, np.full(len(true_age), mean))


def print_report(report: dict, written: list[str]) -> None:
    shown = [(m.when == metric_names.ALWAYS, (m.label, format(report[m.name], m.fmt)))   # the metric table's
             for m in metric_names.METRICS if m.label and report.get(m.name) is not None]
    rows = ([("faces", f"{report['count']}")] + [row for always, row in shown if always]
            + [("MAE of predicting the mean", f"{report['baseline_mae_predicting_train_mean']:.2f}")]
            + [row for always, row in shown if not always])
    if report[metrics.EPSILON_ERROR] is not None:
        rows += [("  faces / left out (std 0)", f"{report['epsilon_faces']} / {report['epsilon_left_out']}"),
                 ("MAE vs apparent age", f"{report['mae_apparent']:.2f}")]
    if report["mae_real"] is not None:
        rows.append(("MAE vs real age", f"{report['mae_real']:.2f} (n={report['real_age_faces']})"))
    tta = "" if report["tta"] == "none" else f", test-time augmentation {report['tta']}"
    print(f"Evaluation on the {report['split']} split of {report['records']}{tta}")
    for name, value in rows:
        print(f"  {name:<28} {value:>10}")
    print("  MAE by decade: " + ", ".join(f"{d} {v['mae']:.1f} (n={v['count']})"
                                          for d, v in report["mae_by_decade"].items()))
    for attribute, section in report["groups"].items():
        if attribute != "gender_x_age_band":
            print(f"  MAE by {attribute}: " + ", ".join(f"{n} {g['mae']['value']:.1f} (n={g['count']})"
                                                     for n, g in section["groups"].items()))
            mix = section.get("age_mix")
            if mix and mix["differ"]:
                gap = mix["gap_at_equal_bands"]
                print(f"    (its groups' ages differ: at equal age bands the gap is {gap['mae']:.1f} years, "
                      f"{gap['worst']} vs {gap['best']})")
    for t in report["thresholds"]:
        line = (f"  age {t['age']}: false adult {t['false_adult']['value'] or 0:.1%} of {t['minors']}, "
                f"false minor {t['false_minor']['value'] or 0:.1%} of {t['adults']}")
        if "challenge_age" in t:
            line += f", passing challenge {t['challenge_age']} {t['passed_challenge']['value'] or 0:.1%}"
        print(line)
    for line in assurance_lines(report["age_assurance"]):
        print(line)
    cal = report["calibration"]
    print(f"  {'calibrated ' if cal['calibrated'] else ''}intervals hold the true age: " + ", ".join(
        f"{m} {v['coverage']:.1%}" for m, v in cal["coverage"].items())
        + (" (before calibration: " + ", ".join(f"{m} {v['coverage']:.1%}" for m, v in cal["before"]["coverage"].items())
           + ")" if "before" in cal else "")
        + (" - off: --calibrate calibrates them" if cal["off"] and not cal["calibrated"] else ""))
    bands = cal["groups"]["age_band"]
    print(f"  coverage {'/'.join(cal['coverage'])} and 90% width by true age band: " + ", ".join(
        f"{b} {'/'.join(f'{100 * v:.1f}' for v in g['coverage'].values())}% {g['width_90']:.1f}y (n={g['count']})"
        for b, g in bands.items()))
    print(f"Wrote {', '.join(written)}")


def assurance_lines(section: dict) -> list[str]:
    """The age-assurance rates: per gate (and chosen challenge age) a line, then one per group."""
    def rate(row, key):
        v = row[key]
        return "-" if v["value"] is None else f"{v['value']:.1%} [{v['ci'][0]:.1%}, {v['ci'][1]:.1%}]"

    lines, teens = [], "{}-{}".format(*section["teens"])
    gates = [(g, "") for g in section["gates"] if g["challenge_age"] is not None]
    gates += [(g, f", chosen on val: pass rate <= {g['max_false_adult']:.1%} in {', '.join(g['groups_checked'])}")
              for g in section.get("chosen", []) if g["challenge_age"] is not None]
    for gate, how in gates:
        lines.append(f"  age {gate['threshold']}, challenge {gate['challenge_age']}{how}:")
        lines += [f"    {r['group']:<10} minors {r['minors']:>5}: false adult {rate(r, 'false_adult')}, "
                  f"passes {rate(r, 'passed_challenge')}, {teens} challenged {rate(r, 'teens_challenged')}"
                  for r in gate["rows"]]
    for gate in section.get("chosen", []):
        if gate["challenge_age"] is None:
            lines.append(f"  age {gate['threshold']}: no challenge age up to 100 keeps the val pass rate "
                         f"at or under {gate['max_false_adult']:.1%} in every group")
    return lines


def main(argv):
    f = trainer_flags.FLAGS   # (its values were checked before TensorFlow loaded: check_evaluate_values)
    entry.interrupt.note(f"trainer.evaluate stopped; the run {f.model_dir} is kept (each report file is "
                         f"written whole or not at all); rerun the same command")
    sources = trainer_flags.records_list(f.records)
    kwargs = dict(batch_size=f.batch_size, tta=f.tta, thresholds=tuple(f.age_threshold),
                  challenge_age=f.challenge_age, thumbnails=f.thumbnails, max_false_adult=f.max_false_adult)
    if len(sources) > 1:
        cross.cross_evaluate(f.model_dir, sources, f.split, **kwargs)
    else:
        evaluate_run(f.model_dir, sources[0] if sources else None, f.split, calibrate=f.calibrate, **kwargs)


if __name__ == "__main__":
    entry.run(main, trainer_flags.define_evaluate_flags, trainer_flags)
