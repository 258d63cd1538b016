"""Batch prediction (`serving.predict`'s tf.data path) against a per-image loop.

    python -m bench.predict [--n 1000] [--photos 200] [--big_photos 20] [--detectors mtcnn,haar,blazeface]
                            [--variants tiny,full] [--workdir bench_out/predict]

Face crops: `--n` synthetic crops of 150-600 px (`ingest.sample --face_px 150 600`,
the real wiki crops' range), built once under --workdir.  For each variant (random
weights; the cost does not depend on them), in one process with the model loaded once:

- per-image loop: for each file read + decode (faces.pixels.read_rgb, PIL), resize
  to the input size (model.resize_pixels, the in-model op), then the model on a batch
  of one through a compiled `tf.function`;
- batch path: `serving.predict.predict_files` with --no_detect, --batch_size 64
  (parallel read/decode, resize, batches of 64, the same compiled call).

Both decode each file the same way.  Each path runs once on 64 files first (tracing,
thread pools), then is timed over all files.  Photos: `--photos` 640x480 and
`--big_photos` 4000x3000 JPEGs with one real face (scikit-image's astronaut portrait
at several scales and places); face detection on with each of `--detectors` (each
framing faces its default way: MTCNN and BlazeFace aligned), tiny variant: images/s of both paths,
the share of a per-image loop's time spent finding and framing faces, and the photos
whose face was found.
"""

from __future__ import annotations

import entry  # noqa: F401  first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse
import os
import platform
import sys
import time

FACE_PX = (150, 600)
WARMUP = 64


def face_crops(workdir: str, n: int) -> list[str]:
    """Readable synthetic face-crop files (the sample's damaged files are left out)."""
    from ingest import sample
    from faces.pixels import PixelError, read_rgb

    src = os.path.join(workdir, f"crops{n}")
    if not os.path.exists(os.path.join(src, "wiki.mat")):
        # The sample keeps about half its rows and damages some files: ask for enough.
        sample.generate(src, int(n * 2.2), seed=0, workers=2, face_px=FACE_PX)
    paths = []
    for root, _, files in sorted(os.walk(src)):
        for name in sorted(files):
            if name.endswith(".jpg"):
                try:
                    read_rgb(os.path.join(root, name))
                except PixelError:
                    continue
                paths.append(os.path.join(root, name))
    if len(paths) < n:
        sys.exit(f"error: {src}: only {len(paths)} readable crops; delete it and rerun")
    return paths[:n]


def photos(workdir: str, n: int, size: tuple[int, int] = (640, 480)) -> list[str]:
    """width x height JPEG photos with the astronaut's portrait at several scales and places."""
    import importlib.util

    import numpy as np
    from PIL import Image

    folder = os.path.join(workdir, f"photos{n}" + ("" if size == (640, 480) else f"-{size[0]}x{size[1]}"))
    paths = [os.path.join(folder, f"photo{i:04d}.jpg") for i in range(n)]
    if all(os.path.exists(p) for p in paths):
        return paths
    os.makedirs(folder, exist_ok=True)
    portrait = Image.open(os.path.join(importlib.util.find_spec("skimage").submodule_search_locations[0],
                                       "data", "astronaut.png")).convert("RGB")
    rng = np.random.default_rng(0)
    for path in paths:
        side = int(rng.integers(260, 420) * size[1] / 480)
        face = portrait.resize((side, side), Image.BILINEAR)
        canvas = Image.new("RGB", size, tuple(int(v) for v in rng.integers(60, 200, 3)))
        canvas.paste(face, (int(rng.integers(0, size[0] - side)), int(rng.integers(0, size[1] - side))))
        canvas.save(path, quality=90)
    return paths


def per_image_loop(age_model, paths: list[str], *, detect: bool = False,
                   detector: str = "haar") -> tuple[float, float, int]:
    """(seconds, seconds finding and framing faces, photos with a face) of the
    one-file-at-a-time loop."""
    import model
    from faces import framing
    from faces.detect import MIN_FACE
    from faces.facebox import DEFAULT_MARGIN
    from faces.pixels import read_rgb
    from serving import faces

    detecting, found = 0.0, 0
    start = time.perf_counter()
    for path in paths:
        rgb = read_rgb(path)
        crops = [rgb]
        if detect:
            t = time.perf_counter()
            crops = [pixels for _, _, pixels, _ in faces.framed_faces(
                rgb, detector, framing.aligns_by_default(detector), DEFAULT_MARGIN, MIN_FACE)]
            detecting += time.perf_counter() - t
            found += bool(crops)
        for crop in crops:
            age_model(model.resize_pixels(crop, age_model.input_size)[None])
    return time.perf_counter() - start, detecting, found


def batch_path(age_model, paths: list[str], *, detect: bool = False, detector: str = "haar") -> float:
    from faces import framing
    from serving.predict import PredictConfig, predict_files

    config = PredictConfig(detect=detect, detector=detector, align=framing.aligns_by_default(detector),
                           batch_size=64)
    start = time.perf_counter()
    count = sum(1 for _ in predict_files(age_model, paths, config))
    assert count == len(paths)
    return time.perf_counter() - start


def main(argv=None) -> int:
    from faces import framing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="face crops per variant")
    parser.add_argument("--photos", type=int, default=200, help="photos for the detection run")
    parser.add_argument("--big_photos", type=int, default=20, help="4000x3000 photos for the detection run")
    parser.add_argument("--detectors", default=",".join(framing.DETECTORS))
    parser.add_argument("--variants", default="tiny,full")
    parser.add_argument("--workdir", default="bench_out/predict")
    args = parser.parse_args(argv)

    crops = face_crops(args.workdir, args.n)      # before TensorFlow: the sample forks workers
    pictures = {"640x480": photos(args.workdir, args.photos),
                "4000x3000": photos(args.workdir, args.big_photos, (4000, 3000)) if args.big_photos else []}

    import keras

    import model
    from serving.predict import AgeModel
    rows = []
    for variant in args.variants.split(","):
        keras.utils.set_random_seed(0)
        age_model = AgeModel(model.build_age_model(variant=variant))
        per_image_loop(age_model, crops[:WARMUP])
        batch_path(age_model, crops[:WARMUP])
        loop_s, _, _ = per_image_loop(age_model, crops)
        batch_s = batch_path(age_model, crops)
        rows.append((f"{variant} ({age_model.input_size} px), --no_detect", len(crops),
                     len(crops) / loop_s, len(crops) / batch_s, "", ""))
        print(f"  {variant}: loop {len(crops) / loop_s:.0f}/s, batch {len(crops) / batch_s:.0f}/s", flush=True)
        for detector in args.detectors.split(",") if variant == "tiny" else ():
            for size, files in pictures.items():
                if not files:
                    continue
                per_image_loop(age_model, files[:4], detect=True, detector=detector)
                batch_path(age_model, files[:4], detect=True, detector=detector)
                loop_s, detect_s, found = per_image_loop(age_model, files, detect=True, detector=detector)
                batch_s = batch_path(age_model, files, detect=True, detector=detector)
                rows.append((f"{variant}, {detector} on {size} photos", len(files), len(files) / loop_s,
                             len(files) / batch_s, f"{100 * detect_s / loop_s:.0f}%", f"{found}"))
                print(f"  {detector} {size}: loop {len(files) / loop_s:.1f}/s, batch {len(files) / batch_s:.1f}/s",
                      flush=True)
        del age_model
        keras.backend.clear_session()

    print(f"\n{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), random weights, "
          f"batch 64, crops {FACE_PX[0]}-{FACE_PX[1]} px JPEG\n")
    print("| input | files | per-image loop (img/s) | batch path (img/s) | batch / loop "
          "| detector's share of the loop | face found |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, loop_rate, batch_rate, share, found in rows:
        print(f"| {name} | {n} | {loop_rate:.1f} | {batch_rate:.1f} | {batch_rate / loop_rate:.2f}x "
              f"| {share or '-'} | {found or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
