"""Face finding and framing on real photos (not a test: it needs real faces, which are
never committed).

    python -m bench.framing --src DIR [--n 200]
    python -m bench.framing --src DIR --model_dir RUN [--split test]

The first form: the detectors side by side on the first --n images of DIR (sorted by
name; e.g. UTKFace's tight crops, or portrait photos): photos with a face found,
photos with two or more, and milliseconds per photo, one by one and (MTCNN) in its
own batches of 16 photos of one size (faces.detect.find_faces_batch, as ingest's
workers call it).  Times include reading nothing: the pixels are decoded first.

The second form checks that a face reaches the model framed in use as in training:
RUN was trained on shards ingested from DIR with `--reframe` (its run.json names
them).  trainer.evaluate scores the records of --split (predictions.csv: the
apparent age of each record's stored crop); serving.predict, with the run's framing
(its defaults), finds and frames the face in each record's source image (DIR/key)
and stores it as the data set did (faces.pixels.as_stored).
Per face (the largest, which ingest keeps): the difference between the two apparent
ages; the table gives the faces compared, the share within 1 year, the mean and
largest difference, and the images where prediction found no face.
"""

from __future__ import annotations

import entry  # noqa: F401  first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse
import csv
import os
import sys
import time

BATCH = 16


def image_files(src: str, n: int) -> list[str]:
    names = sorted(name for name in os.listdir(src) if name.lower().endswith((".jpg", ".jpeg", ".png")))
    return [os.path.join(src, name) for name in names[:n]]


def detectors_table(src: str, n: int) -> None:
    from faces import detect, framing
    from faces.pixels import read_rgb

    photos = [read_rgb(path) for path in image_files(src, n)]
    rows = []
    for detector in framing.DETECTORS:
        detect.find_faces(photos[0], detector)           # load the model (and TensorFlow) first
        start = time.perf_counter()
        found = [detect.find_faces(rgb, detector) for rgb in photos]
        one = (time.perf_counter() - start) / len(photos)
        batched = None
        if detector == "mtcnn":
            start = time.perf_counter()
            again = []
            for i in range(0, len(photos), BATCH):
                again += detect.find_faces_batch(photos[i:i + BATCH], detector)
            batched = (time.perf_counter() - start) / len(photos)
            differ = sum(a != b for a, b in zip(again, found))
        rows.append((detector, sum(bool(f) for f in found), sum(len(f) > 1 for f in found), one, batched,
                     differ if detector == "mtcnn" else None))
    print(f"\n{len(photos)} images of {src}, {os.cpu_count()} CPU cores, load avg {os.getloadavg()[0]:.1f}\n")
    print("| detector | face found | 2+ faces | ms per photo, one by one | ms per photo, batches of 16 "
          "| photos whose faces differ, batch vs one by one |")
    print("|---|---:|---:|---:|---:|---:|")
    for detector, hits, many, one, batched, differ in rows:
        print(f"| {detector} | {hits} ({100 * hits / len(photos):.0f}%) | {many} | {1000 * one:.0f} "
              f"| {'-' if batched is None else f'{1000 * batched:.0f}'} | {'-' if differ is None else differ} |")


def consistency_table(src: str, model_dir: str, split: str) -> None:
    from faces import framing
    from serving.predict import AgeModel, Job, face_config, predict_files
    from trainer import evaluate
    from serving.config import PredictConfig
    from storage.run_dir import RunDir

    evaluate.evaluate_run(model_dir, split=split, quiet=True)
    run = RunDir(model_dir)
    records_dir = run.read_info()["records"]
    with open(run.file(evaluate.output_names(records_dir, records_dir, split)["predictions"])) as f:
        evaluated = {row["key"]: float(row["expected_age"]) for row in csv.DictReader(f)}
    age_model = AgeModel.load(model_dir)
    trained = age_model.framing
    if trained.detector not in framing.DETECTORS:
        sys.exit(f"error: {model_dir}: trained on {trained.describe()}; ingest its data with --reframe first")
    config = face_config(PredictConfig(), Job(model_dir=model_dir), age_model)   # serving.predict's defaults
    keys = sorted(evaluated)
    start = time.perf_counter()
    results = list(predict_files(age_model, [os.path.join(src, key) for key in keys], config))
    seconds = time.perf_counter() - start
    diffs, missing = [], 0
    for key, result in zip(keys, results):
        if not result["faces"]:
            missing += 1
            continue
        diffs.append(abs(result["faces"][0]["apparent_age"] - evaluated[key]))
    within = sum(d <= 1.0 for d in diffs)
    print(f"\n{model_dir}: trained on {trained.describe()}; the {split} split's {len(keys)} records against "
          f"serving.predict on their source images in {src} ({seconds:.0f} s)\n")
    print("| faces compared | within 1 year | mean difference (years) | largest | no face found by predict |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {len(diffs)} | {within} ({100 * within / max(1, len(diffs)):.1f}%) "
          f"| {sum(diffs) / max(1, len(diffs)):.3f} | {max(diffs, default=0):.2f} | {missing} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.framing", description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="a folder of real face images (e.g. UTKFace's crops)")
    parser.add_argument("--n", type=int, default=200, help="images for the detectors table")
    parser.add_argument("--model_dir", help="a run trained on --src ingested with --reframe: the consistency table")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    if args.model_dir:
        consistency_table(args.src, args.model_dir, args.split)
    else:
        detectors_table(args.src, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
