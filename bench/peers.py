"""A published small age model beside ours on the same real faces (not a test: it
needs real faces and the peer's weights, which are never committed).

    python -m bench.peers --src FACES --ssrnet_weights SSRNET.h5 [--model_dir RUN] [--limit N] [--json OUT]

FACES: a data set ingest reads (a faces.csv, a folder of UTKFace-named crops, ...;
ingest.sources), its images and ages; --limit N: N of its rows, drawn with --seed.
The peer is SSR-Net (bench.ssrnet: our Keras 3 build of its architecture) with the
authors' weights file given by --ssrnet_weights (e.g. ssrnet_3_3_3_64_1.0_1.0.h5 of
their pre-trained/imdb/; never downloaded), on faces framed its way: MTCNN
(faces.detect, the largest face), the box plus 0.4 per side, 64x64, BGR 0..255.
With --model_dir, the run's best.keras scores the same images through
serving.predict, framed as the run's training faces were (its defaults).

The table: per model, the images with a face found, then MAE and CS5 on the faces
both models found (the same photos) and, per model, on all of its own; times and
images/s.
"""

from __future__ import annotations

import entry  # noqa: F401  first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse
import json
import os
import time

import numpy as np

from model.metric_names import CS_NAME, CS_THRESHOLD

BATCH = 32
DETECTOR = "mtcnn"          # the authors' demo detector


def faces_of(src: str, limit: int | None, seed: int) -> tuple[list[str], np.ndarray]:
    """The image paths and real ages of data set `src` (rows whose age is a number in
    1..100, whose path stays inside the data set's folder); `limit` of them drawn
    with `seed`, in the data set's order."""
    from ingest.sources import AUTO, Options, resolve
    from errors import DataError

    table = resolve(AUTO, src).load_table(src, Options(min_face_score=0.0))
    frame = table.frame
    ages = frame["age_mean"].to_numpy(np.float64) if "age_mean" in frame else frame["age"].to_numpy(np.float64)
    root = os.path.realpath(table.root)
    paths, kept = [], []
    for i, (path, age) in enumerate(zip(frame["path"], ages)):
        full = os.path.realpath(os.path.join(root, path))
        if np.isfinite(age) and 1 <= age <= 100 and full.startswith(root + os.sep):
            paths.append(full)
            kept.append(i)
    if not paths:
        raise DataError(f"--src {src}: no row with an age in 1..100 and a path inside its folder")
    ages = ages[kept]
    if limit is not None and limit < len(paths):
        chosen = np.sort(np.random.default_rng(seed).choice(len(paths), limit, replace=False))
        paths, ages = [paths[i] for i in chosen], ages[chosen]
    return paths, ages


def ssrnet_ages(paths: list[str], weights: str) -> tuple[np.ndarray, float]:
    """SSR-Net's age of the largest MTCNN face of each image (NaN: no face, or the
    file gives no pixels); the seconds it took."""
    from bench import ssrnet
    from faces import detect
    from faces.pixels import read_rgb

    net = ssrnet.build()
    ssrnet.load_weights(net, weights)
    out = np.full(len(paths), np.nan)
    start = time.perf_counter()
    for begin in range(0, len(paths), BATCH):
        photos, where = [], []
        for i in range(begin, min(begin + BATCH, len(paths))):
            try:
                photos.append(read_rgb(paths[i]))
                where.append(i)
            except Exception:   # an unreadable file counts as no face found
                continue
        faces, at = [], []
        for i, rgb, found in zip(where, photos, detect.find_faces_batch(photos, DETECTOR)):
            if found:
                faces.append(ssrnet.crop(rgb, found[0].box))
                at.append(i)
        if faces:
            out[at] = np.asarray(net(np.stack(faces), training=False)).reshape(-1)
    return out, time.perf_counter() - start


def our_ages(paths: list[str], model_dir: str) -> tuple[np.ndarray, float, str]:
    """The run's apparent age of the first (largest) face serving.predict finds in each
    image (NaN: none); the seconds it took; the framing it used, in words."""
    from faces import framing
    from serving.predict import AgeModel, Job, face_config, predict_files
    from serving.config import PredictConfig

    age_model = AgeModel.load(model_dir)
    config = face_config(PredictConfig(), Job(model_dir=model_dir), age_model)
    out = np.full(len(paths), np.nan)
    start = time.perf_counter()
    for i, result in enumerate(predict_files(age_model, paths, config)):
        if result["faces"]:
            out[i] = result["faces"][0]["apparent_age"]
    used = framing.Framing(config.detector, config.align, config.margin).describe()
    return out, time.perf_counter() - start, used


def scores(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """MAE and CS(θ) (the share within θ years) of the finite predictions."""
    error = np.abs(pred - true)
    return float(error.mean()), float((error <= CS_THRESHOLD).mean())


def table(src: str, true: np.ndarray, rows: list[tuple[str, np.ndarray, float, str]]) -> list[dict]:
    """Prints the table; returns its rows on the same faces (for --json: serving.ship's card)."""
    out = []
    both = np.logical_and.reduce([np.isfinite(pred) for _, pred, _, _ in rows])
    print(f"\n{src}: {len(true)} images, real ages {true.min():g}..{true.max():g} (mean {true.mean():.1f}); "
          f"{int(both.sum())} with a face found by every model\n")
    print(f"| model | framing | faces found | MAE, same faces | {CS_NAME}, same faces | MAE, own faces "
          f"| {CS_NAME}, own faces | seconds | images/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, pred, seconds, framed in rows:
        own = np.isfinite(pred)
        same_mae, same_cs = scores(pred[both], true[both]) if both.any() else (float("nan"),) * 2
        own_mae, own_cs = scores(pred[own], true[own]) if own.any() else (float("nan"),) * 2
        print(f"| {name} | {framed} | {int(own.sum())} | {same_mae:.2f} | {100 * same_cs:.1f}% | {own_mae:.2f} "
              f"| {100 * own_cs:.1f}% | {seconds:.0f} | {len(true) / seconds:.1f} |")
        out.append({"model": name, "data": os.path.basename(os.path.normpath(src)), "framing": framed,
                    "faces": int(both.sum()), "mae": same_mae, "cs5": same_cs})
    return out


def main(args: argparse.Namespace) -> int:
    from bench import ssrnet

    ssrnet.check_file(args.ssrnet_weights)     # before any work
    paths, true = faces_of(args.src, args.limit, args.seed)
    pred, seconds = ssrnet_ages(paths, args.ssrnet_weights)
    rows = [(f"SSR-Net ({os.path.basename(args.ssrnet_weights)})", pred, seconds,
             f"{DETECTOR}, box + {ssrnet.MARGIN:g} per side, {ssrnet.IMAGE_SIZE}px BGR")]
    if args.model_dir:
        ours, seconds, used = our_ages(paths, args.model_dir)
        rows.append((f"ours ({args.model_dir})", ours, seconds, used))
    found = table(args.src, true, rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"src": args.src, "rows": found}, f, indent=2)
        print(f"Wrote {args.json}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, help="a data set ingest reads: a faces.csv, a UTKFace folder, ...")
    p.add_argument("--ssrnet_weights", required=True,
                   help="SSR-Net's weights file (the authors' ssrnet_3_3_3_64_1.0_1.0.h5)")
    p.add_argument("--model_dir", help="a run of ours to score on the same images")
    p.add_argument("--limit", type=_positive, help="score this many of the data set's rows (drawn with --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the table's rows here (serving.ship --peers reads them)")
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


if __name__ == "__main__":
    entry.run_parsed(main, parser())
