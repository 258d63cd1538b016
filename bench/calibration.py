"""Calibrated intervals per band of the true age, on real faces (not a test: it needs a
trained run and its real shards, which are never committed).

    python -m bench.calibration --model_dir RUN [--model_dir RUN2 ...] [--draws 200] [--tta flip]

For each run, the age distributions of its val and test faces (as trainer.evaluate
computes them, with --tta).  First the project's own split: calibrated on val, scored
on test.  Then --draws random splits of the same val + test faces into a calibration
set the size of val and the rest: per draw each method is fitted on the calibration
faces and scored on the rest.  Per method, interval (50/80/90%) and band of the true
age, the table gives the mean coverage minus nominal over the draws (a method that
holds in a band has a mean near 0) and its scatter (the standard deviation over
draws: what one split of this size can give), and per method the share of draws in
which every band with at least 100 scored faces lands within 3 points at every
interval.

The methods, all split-conformal on the score |age - estimate| / max(sd, 0.5):
  true-age bands   one threshold per band of the true age (what --calibrate fits and
                   the model serves: trainer.calibration)
  estimate bands   one threshold per band of the estimated age
  one threshold    over all faces
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse

import numpy as np

WITHIN = 0.03          # the per-band bar: within 3 points of nominal
MIN_SCORED = 100       # a band with fewer scored faces is left out of the bar
METHODS = ("true-age bands", "estimate bands", "one threshold")


def faces(model_dir: str, tta: str, batch_size: int = 128):
    """(val SplitFaces, test SplitFaces) of a run's own records."""
    from model.load import load_run_model
    from storage.run_dir import RunDir, run_records
    from trainer.calibration import SplitFaces

    run = RunDir(model_dir)
    info = run.read_info()
    records_dir = run_records(info, run.file("run.json"))
    net = load_run_model(run, recalibrating=True)     # only its distributions are read
    return tuple(SplitFaces(net, records_dir, split, batch_size, tta) for split in ("val", "test"))


def served_cover(method: str, cal_age, cal_probs, age, probs) -> dict[float, np.ndarray]:
    """{mass: per scored face, whether its interval holds its true age}."""
    from model import uncertainty
    from trainer import calibration

    if method == METHODS[0]:
        record = calibration.fit(cal_age, cal_probs)
        layer = uncertainty.IntervalCalibration(record["masses"], record["band_starts"], record["thresholds"])
        return {m: _holds(age, *calibration.intervals(probs, m, layer)) for m in calibration.MASSES}
    cal_scores = calibration.scores(cal_age, cal_probs)
    estimate = np.asarray(uncertainty.expected_age(np.asarray(probs, np.float32)), np.float64)
    spread = np.maximum(np.asarray(uncertainty.age_sd(np.asarray(probs, np.float32)), np.float64),
                        uncertainty.SD_FLOOR)
    if method == METHODS[1]:
        cal_band = calibration.estimate_bands(uncertainty.expected_age(np.asarray(cal_probs, np.float32)))
        band = calibration.estimate_bands(estimate)
    else:
        cal_band, band = np.zeros(len(cal_age), int), np.zeros(len(age), int)
    out = {}
    for m in calibration.MASSES:
        pooled = calibration.conformal_threshold(cal_scores, m)
        per_band = [calibration.conformal_threshold(cal_scores[cal_band == b], m) for b in range(band.max() + 1)]
        q = np.array([pooled if t is None else t for t in per_band])[band]
        out[m] = np.abs(age - estimate) <= q * spread * (1 + uncertainty.SCORE_SLACK)
    return out


def _holds(age, low, high) -> np.ndarray:
    return (age >= low) & (age <= high)


def deviations(method: str, cal_age, cal_probs, age, probs) -> np.ndarray:
    """[bands + 1, masses]: coverage minus nominal per band of the true age, then all faces."""
    from trainer import calibration

    cover = served_cover(method, cal_age, cal_probs, age, probs)
    band = calibration.true_bands(age)
    rows = [[cover[m][band == b].mean() - m if (band == b).any() else np.nan for m in calibration.MASSES]
            for b in range(len(calibration.band_names()))]
    return np.array(rows + [[cover[m].mean() - m for m in calibration.MASSES]])


def _cells(dev: np.ndarray) -> str:
    return " ".join(f"{100 * d:+5.1f}" for d in dev)


def bench(model_dir: str, draws: int, tta: str, seed: int) -> None:
    from trainer import calibration

    val, test = faces(model_dir, tta)
    names = calibration.band_names()
    scored = np.bincount(calibration.true_bands(test.true_age), minlength=len(names))
    print(f"\n{model_dir}: {len(val.true_age)} val and {len(test.true_age)} test faces, tta {tta}")
    masses = "/".join(calibration.mass_name(m) for m in calibration.MASSES)
    head = f"{'method':<16} {'':>9}" + "".join(f" {n:>17}" for n in names + ["all faces"])
    print(f"coverage minus nominal, points ({masses}); a band's val faces in brackets")
    print(head)
    val_counts = np.bincount(calibration.true_bands(val.true_age), minlength=len(names))
    print(f"{'':<16} {'faces':>9}" + "".join(f" {f'{t} ({v})':>17}" for t, v in zip(scored, val_counts))
          + f" {f'{len(test.true_age)} ({len(val.true_age)})':>17}")
    for method in METHODS:
        dev = deviations(method, val.true_age, val.probs, test.true_age, test.probs)
        print(f"{method:<16} {'own split':>9}" + "".join(f" {_cells(d):>17}" for d in dev))
    pooled_age = np.concatenate([val.true_age, test.true_age])
    pooled_probs = np.concatenate([val.probs, test.probs])
    rng = np.random.default_rng(seed)
    n_cal = len(val.true_age)
    results = {m: [] for m in METHODS}
    for _ in range(draws):
        order = rng.permutation(len(pooled_age))
        cal, rest = order[:n_cal], order[n_cal:]
        for method in METHODS:
            results[method].append(deviations(method, pooled_age[cal], pooled_probs[cal],
                                              pooled_age[rest], pooled_probs[rest]))
    print(f"over {draws} draws of {n_cal} calibration faces from the {len(pooled_age)} val + test faces:")
    big = np.append(np.bincount(calibration.true_bands(pooled_age), minlength=len(names)) * (1 - n_cal / len(pooled_age))
                    >= MIN_SCORED, False)
    for method in METHODS:
        dev = np.array(results[method])                       # [draws, bands + 1, masses]
        print(f"{method:<16} {'mean':>9}" + "".join(f" {_cells(d):>17}" for d in np.nanmean(dev, 0)))
        print(f"{'':<16} {'scatter':>9}" + "".join(f" {_cells(d).replace('+', ' '):>17}" for d in np.nanstd(dev, 0)))
        every = (np.abs(dev[:, big]) <= WITHIN).all(axis=(1, 2))
        overall = (np.abs(dev[:, -1]) <= 0.02).all(axis=1)
        print(f"{'':<16} {'':>9} draws with every band within 3 points: {every.mean():.0%};"
              f" all faces within 2 points: {overall.mean():.0%}")


def main(args: argparse.Namespace) -> int:
    for model_dir in args.model_dir:
        bench(model_dir, args.draws, args.tta, args.seed)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", action="append", required=True, help="a trained run (repeatable)")
    p.add_argument("--draws", type=_draws, default=200, help="random calibration splits (1..10000; default 200)")
    p.add_argument("--tta", choices=("none", "flip"), default="flip", help="test-time augmentation")
    p.add_argument("--seed", type=int, default=0)
    return p


def _draws(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10000:
        raise argparse.ArgumentTypeError(f"{text}: must be 1..10000")
    return value


if __name__ == "__main__":
    entry.run_parsed(main, parser())
