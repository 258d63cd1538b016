"""The model card of a shipped model (models/<name>/MODEL_CARD.md and .html): what the
model is, what it was trained on and under which terms, how it scores on its test split
(overall, per age band, gender and race with their intervals, the interval coverage,
the age-threshold errors), on other data sets and beside a published peer, where it
fails, and what it is for. Built by `python -m serving.ship` from the run's facts
(run.json, the data set's manifest, report.json, history) and the cross-data-set
reports; every number comes from those files, none is typed here.
"""

from __future__ import annotations

import html

from reports.html_page import page, table

# What a user may and may not do with an apparent-age model, whatever its numbers.
INTENDED_USE = (
    "Research and prototyping on apparent age: estimating the age a face looks, for photo "
    "collections, demographic statistics over many faces, and as the start of fine-tuning "
    "on a user's own age data (`--init_from`).")
OUT_OF_SCOPE = (
    "Any automated decision about a person (access, age verification, eligibility, law "
    "enforcement) without human review; use on faces unlike its training faces (profile views, "
    "occluded or very small faces, faces under poor light) without measuring it there first; "
    "inferring a person's real age, identity, gender or race.")
# The terms of the training data sets the weights inherit, by the manifest's source name.
DATA_TERMS = {
    "utkface": "UTKFace is available for non-commercial research purposes only (its authors' terms); "
               "the copyright of the images stays with their owners. These weights inherit those terms: "
               "non-commercial research use only.",
}


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(stat: dict | None, digits: int = 2, percent: bool = False) -> str:
    if not stat:
        return "-"
    scale = 100 if percent else 1
    value, ci = stat.get("value"), stat.get("ci") or [None, None]
    if value is None:
        return "-"
    unit = "%" if percent else ""
    if ci[0] is None:
        return f"{value * scale:.{digits}f}{unit}"
    return f"{value * scale:.{digits}f}{unit} ({ci[0] * scale:.{digits}f}-{ci[1] * scale:.{digits}f})"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def group_rows(report: dict, kind: str) -> list[list[str]]:
    groups = report.get("groups", {}).get(kind, {}).get("groups", {})
    return [[name, str(g.get("count", 0)), _ci(g.get("mae")), _ci(g.get("cs5"), 1, percent=True)]
            for name, g in groups.items()]


def coverage_rows(report: dict) -> list[list[str]]:
    """The intervals' claimed and measured coverage on the test split (report.json's `calibration`)."""
    coverage = report.get("calibration", {}).get("coverage", {})
    rows = []
    for level, c in coverage.items():
        if isinstance(c, dict):
            rows.append([level, f"{100 * c.get('coverage', 0):.1f}%"])
    return rows


def band_coverage_rows(report: dict) -> list[list[str]]:
    """Per band of the true age (the calibration's groups): test faces, val faces the
    band's thresholds were fitted on, coverage of each interval, the 90% width."""
    section = report.get("calibration", {})
    fitted = section.get("fit", {}).get("bands", {})
    return [[band, str(b.get("count")), str(fitted.get(band, {}).get("faces", "")),
             *(f"{100 * v:.1f}%" for v in b.get("coverage", {}).values()), f"{b.get('width_90', 0):.1f}"]
            for band, b in section.get("groups", {}).get("age_band", {}).items()]


def assurance_rows(report: dict) -> list[list[str]]:
    """Per threshold and challenge age, over all test minors: false-adult and challenge pass rates."""
    rows = []
    for gate in report.get("age_assurance", {}).get("gates", []):
        for r in gate.get("rows", []):
            if r.get("attribute") in ("all", "gender"):
                rows.append([str(gate.get("threshold")), str(gate.get("challenge_age")), r.get("group", ""),
                             str(r.get("minors")), _ci(r.get("false_adult"), 1, percent=True),
                             _ci(r.get("passed_challenge"), 1, percent=True),
                             _ci(r.get("teens_challenged"), 1, percent=True)])
    return rows


def threshold_rows(report: dict) -> list[list[str]]:
    rows = []
    for t in report.get("thresholds", []):
        rows.append([str(t.get("age")), str(t.get("minors")), _ci(t.get("false_adult"), 1, percent=True),
                     str(t.get("adults")), _ci(t.get("false_minor"), 1, percent=True)])
    return rows


def known_failures(report: dict) -> list[str]:
    """The groups whose error is largest, from the report's gaps (worst against best)."""
    lines = []
    for kind, block in report.get("groups", {}).items():
        gap, groups = block.get("gap") or {}, block.get("groups", {})
        worst, best = gap.get("worst"), gap.get("best")
        if worst in groups and best in groups and kind != "gender_x_age_band":
            w, b = groups[worst]["mae"]["value"], groups[best]["mae"]["value"]
            lines.append(f"- {kind.replace('_', ' ')}: MAE {w:.1f} for {worst} against {b:.1f} for {best} "
                         f"({groups[worst]['count']} and {groups[best]['count']} test faces).")
    return lines


def markdown(name: str, facts: dict, run: dict, manifest: dict, report: dict, cross: list[dict],
             peers: list[dict]) -> str:
    """The card as Markdown. `facts`: parameters, tflite_bytes, command, best_epoch, epochs."""
    source = manifest.get("source", {}).get("name", "?")
    splits = manifest.get("splits", {})
    lines = [f"# Model card: {name}", "",
             f"An apparent-age model (DEX: the expectation of a 101-way softmax over ages 0-100), "
             f"the `{run.get('variant')}` variant of this project trained from random initialisation on "
             f"{source} only. It is the default model of `python -m serving.predict` and "
             f"`serving.AgeEstimator()`, and the start of fine-tuning with `--init_from models/{name}`.", "",
             "## The model", ""]
    lines += _table(["what", "value"], [
        ["variant", f"`{run.get('variant')}` ({facts.get('parameters', '?'):,} parameters)"],
        ["input", f"a face framed as below, stored at {run.get('image_size')} px ({run.get('encoding')}, "
                  f"quality {run.get('jpeg_quality')}), given to the model at {run.get('input_size')} px (uint8 RGB)"],
        ["framing", f"detector `{run.get('detector')}`, eyes levelled: {run.get('aligned')}, margin "
                    f"{run.get('margin')} of the face box on every side (`export.json` states it in plain terms)"],
        ["outputs", "apparent age (years), its spread, a 90% interval, the 101 age probabilities"],
        ["files", f"best.keras (Keras, safe mode), model.tflite (float16, {facts.get('tflite_bytes', 0) / 1e6:.2f} MB)"],
    ])
    lines += ["", "## Training data", ""]
    lines += _table(["split", "faces"], [[s, str(v.get("count"))] for s, v in splits.items()])
    gender = manifest.get("gender_counts", {})
    race = manifest.get("group_counts", {}).get("race", {})
    lines += ["", f"Source: `{source}` ({manifest.get('source', {}).get('read', '')}), kept "
                  f"{manifest.get('kept')} after cleaning, "
                  f"{', '.join(f'{v} skipped ({k})' for k, v in manifest.get('skipped', {}).items()) or 'none skipped'}; "
                  f"gender {', '.join(f'{k} {v}' for k, v in gender.items())}; "
                  f"race {', '.join(f'{k} {v}' for k, v in race.items())}.",
              "Ages: see the age-band rows below (the test split follows the same random split).", "",
              f"Terms: {DATA_TERMS.get(source, 'see the data set its manifest names.')}", "",
              "## How it was trained", "", "```", facts.get("command", ""), "```", "",
              f"best.keras is epoch {facts.get('best_epoch')} of {facts.get('epochs')} by {run.get('best_metric')}.",
              "", "## Test split", ""]
    lines += _table(["faces", "MAE", "CS5", "always answering the training mean"], [[
        str(report.get("count")), _fmt(report.get("mae")), _fmt(report.get("cs5"), 3),
        _fmt(report.get("baseline_mae_predicting_train_mean"))]])
    for kind in ("age_band", "gender", "race"):
        if report.get("groups", {}).get(kind):
            lines += ["", f"### By {kind.replace('_', ' ')} (95% bootstrap intervals)", ""]
            lines += _table([kind.replace("_", " "), "faces", "MAE", "CS5"], group_rows(report, kind))
    if coverage_rows(report):
        lines += ["", "### Interval coverage (test split; intervals calibrated on the val split)", ""]
        lines += _table(["interval", "holds the true age"], coverage_rows(report))
    if band_coverage_rows(report):
        lines += ["", "By band of the true age (each band's intervals fitted on its own val faces; a band with "
                  "n val faces lands within about ±sqrt(m(1 - m)/n) of m, and its n test faces measure it to "
                  "about the same):", ""]
        lines += _table(["true age", "test faces", "val faces", "50%", "80%", "90%", "90% width (years)"],
                        band_coverage_rows(report))
    if threshold_rows(report):
        lines += ["", "### Age thresholds", ""]
        lines += _table(["threshold", "minors", "estimated adult", "adults", "estimated minor"],
                        threshold_rows(report))
    if assurance_rows(report):
        lines += ["", "### Age assurance (minors: true age under the threshold)", ""]
        lines += _table(["threshold", "challenge age", "group", "minors", "estimated adult", "pass the challenge",
                         "13-17 challenged"], assurance_rows(report))
    lines += ["", "## Other data sets (not used for training)", ""]
    if cross:
        lines += _table(["data set", "framing", "faces", "MAE", "CS5", "always answering the training mean",
                         "50/80/90% intervals hold"], [
            [c["name"], c.get("framing", ""), str(c.get("count")), _fmt(c.get("mae")), _fmt(c.get("cs5"), 3),
             _fmt(c.get("baseline_mae_predicting_train_mean")),
             "/".join(f"{100 * v:.1f}%" for v in (c.get("coverage") or {}).values() if v is not None)]
            for c in cross])
        lines += ["", "Intervals are calibrated on UTKFace's val faces: on another data set, where the "
                  "errors are larger, they hold less often than they claim; calibrate on your own data "
                  "(`python -m trainer.evaluate --model_dir RUN --calibrate`) after fine-tuning."]
    else:
        lines += ["None measured for this build."]
    if peers:
        lines += ["", "Beside a published small model on the same photos (`python -m bench.peers`):", ""]
        lines += _table(["model", "data set", "faces", "MAE", "CS5"], [
            [p["model"], p["data"], str(p["faces"]), _fmt(p["mae"]), _fmt(p["cs5"], 3)] for p in peers])
    lines += ["", "## Known failures", ""] + (known_failures(report) or ["- none measured"])
    lines += ["- Faces unlike UTKFace's (frontal, well lit, cropped by a detector) are out of its training "
              "distribution; measure before relying on it.", "",
              "## Intended use", "", INTENDED_USE, "", "## Out of scope", "", OUT_OF_SCOPE, ""]
    return "\n".join(lines)


def to_html(name: str, md: str) -> str:
    """The same card as one self-contained page (reports.html_page): each `##` section of
    the Markdown a section, its tables as tables, its other lines as paragraphs."""
    sections, heading, body, rows = [], "", [], []

    def flush_table():
        if rows:
            body.append(table([html.escape(c) for c in rows[0]], [[html.escape(c) for c in r] for r in rows[2:]]))
            rows.clear()

    def flush_section():
        flush_table()
        if heading or body:
            sections.append((f"s{len(sections)}", heading or name, "\n".join(body)))

    for line in md.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
            continue
        flush_table()
        if line.startswith("## "):
            flush_section()
            heading, body = line[3:], []
        elif line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.strip() and line != "```":
            body.append(f"<p>{html.escape(line)}</p>")
    flush_section()
    return page(f"Model card: {name}", sections)
