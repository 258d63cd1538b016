"""report.html: an evaluation as one page a person reads in a browser, beside report.json.

One self-contained file (pictures inline as data: URIs, no script, no network), laid
out for a laptop and a phone alike.  Sections, each an element with its id (SECTIONS):
the headline numbers with the mean-predictor baseline, the MAE by age, the errors per
group, the calibration of the intervals (overall and per group), the age thresholds, the
age-assurance rates per group with the MAE per gender x age band, and the worst faces as
thumbnails with their true and estimated age (left out with --nothumbnails).
"""

from __future__ import annotations

import html

import numpy as np

from model.metric_names import CS_NAME, METRICS
from reports.html_page import figure_uri as _figure_uri
from reports.html_page import page, table as _table, thumbnail_uri as _thumbnail_uri
from reports.plots import plt
from storage.atomic import atomic_write_bytes
from reports import groups as groups_lib

SECTIONS = ("headline", "mae-by-age", "groups", "calibration", "thresholds", "age-assurance", "worst-faces")
WORST_FACES = 12          # thumbnails shown

class WorstFaces:
    """The WORST_FACES faces with the largest |estimate - true age| seen so far."""

    def __init__(self, k: int = WORST_FACES):
        self.k, self.faces = k, []

    def add(self, images: np.ndarray, keys, true_age: np.ndarray, estimate: np.ndarray) -> None:
        error = np.abs(np.asarray(estimate, np.float64) - true_age)
        for i in np.argsort(-error)[:self.k]:
            self.faces.append((float(error[i]), keys[i].decode("utf-8", "replace"), int(true_age[i]),
                               float(estimate[i]), np.asarray(images[i])))
        self.faces = sorted(self.faces, key=lambda f: -f[0])[:self.k]


def _num(value, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def _ci(stat: dict, spec: str = ".2f") -> str:
    if stat["value"] is None:
        return "–"
    lo, hi = stat["ci"]
    return f"{stat['value']:{spec}} <span class=note>[{lo:{spec}}, {hi:{spec}}]</span>"


def headline(report: dict) -> str:
    baseline = report.get("mae_mean_predictor", report.get("baseline_mae_predicting_train_mean"))
    cards = [("faces", f"{report['count']}")] + [(m.label, _num(report.get(m.name), m.fmt))
                                                  for m in METRICS if m.card] + [
             ("MAE of predicting the training mean", _num(baseline))]
    calib = report.get("calibration")
    if calib:
        cards.append(("90% interval holds the true age", f"{calib['coverage']['90%']['coverage']:.1%}"))
    text = "".join(f"<div class=card>{html.escape(name)}<b>{value}</b></div>" for name, value in cards)
    return (f"<p>{html.escape(report['split'])} split of <code>{html.escape(str(report['records']))}</code>"
            f"{'' if report.get('tta', 'none') == 'none' else ', test-time augmentation ' + report['tta']}</p>"
            f"<div class=cards>{text}</div>")


def mae_by_age(true_age: np.ndarray, expected: np.ndarray, report: dict) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ages = np.arange(int(true_age.max()) + 1 if len(true_age) else 1)
    counts = np.bincount(true_age, minlength=len(ages))
    err = np.bincount(true_age, weights=np.abs(expected - true_age), minlength=len(ages))
    known = counts > 0
    ax.bar(ages, counts, color="0.85")
    ax.set_xlabel("true age")
    ax.set_ylabel("faces")
    ax2 = ax.twinx()
    ax2.plot(ages[known], err[known] / counts[known], "o-", ms=3, color="C3")
    ax2.set_ylabel("MAE (years)", color="C3")
    ax.set_title("Error of the estimate by true age (bars: faces)")
    rows = [[html.escape(d), f"{v['count']}", f"{v['mae']:.2f}"] for d, v in report["mae_by_decade"].items()]
    return f"<img class=plot alt='MAE by age' src='{_figure_uri(fig)}'>" + _table(["decade", "faces", "MAE"], rows)


def group_tables(section: dict) -> str:
    out = [f"<p class=note>Each value with its {groups_lib.CONFIDENCE:.0%} bootstrap interval "
           f"({groups_lib.BOOTSTRAP_SAMPLES} resamples, seeded). Grey rows: under "
           f"{groups_lib.MIN_FACES} faces. bias = mean (estimate - true age): positive means too old.</p>"]
    for attribute, entry in section.items():
        names = list(entry["groups"])
        rows = [[html.escape(n), f"{g['count']}{' (few)' if g['few'] else ''}", _ci(g["mae"]),
                 _ci(g["bias"]), _ci(g[CS_NAME], ".3f")] for n, g in entry["groups"].items()]
        classes = ["few" if entry["groups"][n]["few"] else "" for n in names]
        gap = entry["gap"]
        gap_text = ("" if gap is None else f"<p>Gap: the worst group ({html.escape(gap['worst'])}) is "
                    f"{gap['mae']:.2f} years worse than the best ({html.escape(gap['best'])}).</p>")
        out.append(f"<h3>{html.escape(attribute.replace('_', ' '))}</h3>"
                   + _table(["group", "faces", "MAE", "bias", CS_NAME.upper()], rows, classes) + gap_text
                   + age_mix_note(entry.get("age_mix")))
    return "".join(out)


def threshold_table(entries: list[dict]) -> str:
    if not entries:
        return "<p>No age threshold asked for (--age_threshold).</p>"
    head = ["threshold", "minors", "adults", "false adult", "false minor"]
    challenge = "challenge_age" in entries[0]
    if challenge:
        head.append(f"minors passing challenge {entries[0]['challenge_age']}")
    rows = [[f"{e['age']}", f"{e['minors']}", f"{e['adults']}", _ci(e["false_adult"], ".3f"),
             _ci(e["false_minor"], ".3f")] + ([_ci(e["passed_challenge"], ".3f")] if challenge else [])
            for e in entries]
    return ("<p class=note>false adult: the share of faces under the threshold estimated at or over it; "
            "false minor: the share at or over it estimated under it.</p>" + _table(head, rows))


def worst_faces(worst: WorstFaces | None) -> str:
    if worst is None:
        return "<p>Thumbnails left out (--nothumbnails).</p>"
    figures = "".join(
        f"<figure><img alt='{html.escape(key)}' src='{_thumbnail_uri(pixels)}'>"
        f"<figcaption>true {true} / est. {est:.1f}<br><span class=note>{html.escape(key[-28:])}</span>"
        f"</figcaption></figure>" for _, key, true, est, pixels in worst.faces)
    return f"<div class=faces>{figures}</div>"


def render(report: dict, true_age: np.ndarray, expected: np.ndarray, worst: WorstFaces | None) -> str:
    body = {"headline": ("Headline", headline(report)),
            "mae-by-age": ("Error by age", mae_by_age(np.asarray(true_age), np.asarray(expected), report)),
            "groups": ("Errors by group", group_tables(report["groups"])),
            "calibration": ("How sure: the intervals' coverage", calibration_block(report["calibration"])),
            "thresholds": ("Age thresholds", threshold_table(report["thresholds"])),
            "age-assurance": ("Age assurance", assurance_block(report["age_assurance"], report["groups"])),
            "worst-faces": (f"The {WORST_FACES} worst faces", worst_faces(worst))}
    return page("Age model report", [(sid, *body[sid]) for sid in SECTIONS])


def write_report(path: str, report: dict, true_age, expected, worst: WorstFaces | None) -> str:
    atomic_write_bytes(path, render(report, true_age, expected, worst).encode("utf-8"))
    return path


def age_mix_note(mix: dict | None) -> str:
    """Beside a gap: whether the groups' ages differ, and the gap at equal age bands."""
    if mix is None:
        return ""
    gap = mix["gap_at_equal_bands"]
    at_equal = (f"At equal age bands (each group's per-band MAE weighted by the same band shares) the "
                f"gap is {gap['mae']:.2f} years ({html.escape(gap['worst'])} vs {html.escape(gap['best'])}).")
    if not mix["differ"]:
        return f"<p class=note>The groups' age bands are alike (distance {mix['max_distance']:.2f}). {at_equal}</p>"
    shares = "; ".join(f"{html.escape(g)}: " + ", ".join(f"{b} {v:.0%}" for b, v in bands.items() if v)
                       for g, bands in mix["band_shares"].items())
    return (f"<p class=warn>Confounded with age: the groups' ages differ (distance {mix['max_distance']:.2f}; "
            f"{shares}), so part of the gap is their ages'. {at_equal}</p>")


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def coverage_table(section: dict) -> str:
    """Coverage of every interval, overall before/after, then per group."""
    masses = list(section["coverage"])
    rows = ([["before (central intervals)"] + [_pct(v["coverage"]) for v in section["before"]["coverage"].values()]]
            if "before" in section else [])
    rows.append(["calibrated" if section["calibrated"] else "central intervals"]
                + [_pct(v["coverage"]) for v in section["coverage"].values()])
    out = [_table(["all faces", *masses], rows)]
    fit = section.get("fit")
    bands = (fit or {}).get("bands", {})
    for attribute, entries in section["groups"].items():
        head = ["group", "faces", *[f"{m} {'after (before)' if section['calibrated'] else ''}" for m in masses],
                "90% width (years)"]
        rows, classes = [], []
        for name, g in entries.items():
            cells = [_pct(g["coverage"][m]) + (f" <span class=note>({_pct(g['coverage_before'][m])})</span>"
                                                 if "coverage_before" in g else "") for m in masses]
            width = f"{g['width_90']:.1f}" + (f" <span class=note>({g['width_90_before']:.1f})</span>"
                                              if "width_90_before" in g else "")
            label = html.escape(name)
            if attribute == "age_band" and name in bands:
                few = [m for m, ok in bands[name]["guaranteed"].items() if not ok]
                spread = "/".join(f"{100 * v:.1f}" for v in bands[name].get("scatter", {}).values())
                label += f"<span class=note>val {bands[name]['faces']}{f' (±{spread})' if spread else ''}</span>"
                if few:
                    label += (f"<span class='note warn'>no {'/'.join(few)} guarantee: under "
                              f"{'/'.join(str(fit['needed_faces'][m]) for m in few)} val faces</span>")
            rows.append([label, f"{g['count']}", *cells, width])
            classes.append("few" if g["count"] < groups_lib.MIN_FACES else "")
        title = {"estimated_age_band": "band of the estimated age",
                 "age_band": "band of the true age (the calibration's groups)"}.get(attribute, attribute.replace("_", " "))
        out.append(f"<h3>{html.escape(title)}</h3>" + _table(head, rows, classes, wrap=(0,) if attribute == "age_band" else ()))
    return "".join(out)


def calibration_block(section: dict) -> str:
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], "--", color="0.6", label="calibrated")  # coverage = claim
    m, c, claimed = zip(*section["reliability"])
    ax.plot(claimed, c, "o-", label="central intervals")
    ax.set_xlabel("probability the intervals hold (claimed)")
    ax.set_ylabel("share of true ages inside")
    ax.set_title("Reliability of the model's distribution")
    ax.legend()
    fit = section.get("fit")
    if fit:
        note = (f"<p>Calibrated on the {fit['split']} split ({fit['faces']} faces) by "
                f"{html.escape(fit['method'])}: each interval holds the true age with at least its "
                f"nominal probability in each band of the true age that had enough val faces "
                f"({', '.join(f'{m}: {n}' for m, n in fit['needed_faces'].items())}); stored in best.keras. "
                f"Beside each band of the true age: its val faces and (±) the points by which a fit on that "
                f"many faces typically lands off its {'/'.join(fit['needed_faces'])}. The other groups "
                f"(the estimate's bands, gender, race) carry no guarantee of their own: their coverage is "
                f"measured, not calibrated for.</p>")
    elif section["off"]:
        note = (f"<p class=warn>A coverage is off by more than {section['tolerance']:.0%}: "
                f"<code>python -m trainer.evaluate --calibrate</code> calibrates the intervals.</p>")
    else:
        note = ""
    return (note + coverage_table(section)
            + f"<img class=plot alt='reliability' src='{_figure_uri(fig)}'>")


def _rate(stat: dict | None) -> str:
    if stat is None or stat["value"] is None:
        return "–"
    lo, hi = stat["ci"]
    return f"{stat['value']:.1%} <span class=note>[{lo:.1%}, {hi:.1%}]</span>"


def gate_table(gate: dict, teens) -> str:
    c = gate["challenge_age"]
    head = ["group", "minors", f"false adult (estimated {gate['threshold']}+)"]
    if c is not None:
        head += [f"minors passing challenge {c}", f"{teens[0]}-{teens[1]} estimated under {c}"]
    rows, classes = [], []
    for r in gate["rows"]:
        name = "all" if r["attribute"] == "all" else f"{r['attribute']}: {r['group']}"
        cells = [html.escape(name), f"{r['minors']}", _rate(r["false_adult"])]
        if c is not None:
            cells += [_rate(r["passed_challenge"]),
                      _rate(r["teens_challenged"]) + f" <span class=note>of {r['teens_challenged']['count']}</span>"]
        rows.append(cells)
        classes.append("few" if r["few"] else "")
    return _table(head, rows, classes)


def gender_band_mae(section: dict) -> str:
    """MAE [95% CI] with gender in rows and age band in columns."""
    cells = section["groups"]
    genders = list(dict.fromkeys(k.split(" x ")[0] for k in cells))
    bands = list(dict.fromkeys(k.split(" x ")[1] for k in cells))
    rows = [[html.escape(g)] + [(_ci(cells[f"{g} x {b}"]["mae"]) + f" <span class=note>n={cells[f'{g} x {b}']['count']}</span>")
                                if f"{g} x {b}" in cells else "–" for b in bands] for g in genders]
    return _table(["gender", *bands], rows)


def assurance_block(section: dict, groups: dict) -> str:
    out = [f"<p class=note>Per gate and group, each rate with its {groups_lib.CONFIDENCE:.0%} bootstrap interval. "
           f"Grey rows: under {section['min_faces']} minors.</p>"]
    for gate in section["gates"]:
        out.append(f"<h3>Age {gate['threshold']}" + (f", challenge {gate['challenge_age']}" if gate["challenge_age"]
                                                     else "") + "</h3>" + gate_table(gate, section["teens"]))
    for gate in section.get("chosen", []):
        if gate["challenge_age"] is None:
            out.append(f"<p class=warn>Age {gate['threshold']}: no challenge age up to 100 keeps the minors' "
                       f"pass rate on the val split at or under {gate['max_false_adult']:.1%} in every group.</p>")
            continue
        out.append(f"<h3>Age {gate['threshold']}, challenge {gate['challenge_age']} (chosen)</h3>"
                   f"<p>The smallest challenge age whose minors' pass rate on the val split "
                   f"({gate['val_minors']} minors) is at most {gate['max_false_adult']:.1%} in each of "
                   f"{html.escape(', '.join(gate['groups_checked']))}; its rates on this split:</p>"
                   + gate_table(gate, section["teens"]))
    if "gender_x_age_band" in groups:
        out.append("<h3>MAE per gender and age band</h3>" + gender_band_mae(groups["gender_x_age_band"]))
    return "".join(out)
