"""`python -m trainer.predict --model_dir runs/X photo.jpg [more.jpg ...]`

Apparent age per face: detect faces (offline Haar cascade), crop each with the
IMDB-WIKI 40% margin, bring the crop to the pixels the model was trained on with
the very functions ingest and the reader use (`ingest.images.fit` to the shards'
size, then `records.reader.resize_uint8` to the model input when they differ),
and report DEX's expected age and the most likely age class.

A bad file costs one line and the others still get their results; the exit
status is non-zero only when no file could be processed.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app  # noqa: E402

from trainer import flags as trainer_flags  # noqa: E402


class Predictor:
    """best.keras of a run plus the preprocessing its training data had."""

    def __init__(self, model_dir: str):
        from trainer.evaluate import load_run_model
        from trainer.run_dir import RunDir

        run = RunDir(model_dir)
        info = run.read_info()
        self.net = load_run_model(run)
        self.stored_size = int(info["image_size"])     # what ingest wrote
        self.input_size = int(self.net.input_shape[1])  # what the model takes
        self.with_gender = isinstance(self.net.output, dict)

    def prepare(self, crops: list[np.ndarray]) -> np.ndarray:
        from PIL import Image

        from ingest.images import fit
        from records.reader import resize_uint8

        batch = np.stack([np.asarray(fit(Image.fromarray(c), self.stored_size)) for c in crops])
        if self.stored_size != self.input_size:
            batch = resize_uint8(batch, self.input_size,
                                 shrinking=self.input_size < self.stored_size).numpy()
        return batch

    def __call__(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Age distributions [faces, 101] (and gender distributions [faces, 2])."""
        outputs = self.net.predict(self.prepare(crops), verbose=0)
        if self.with_gender:
            return np.asarray(outputs["age"]), np.asarray(outputs["gender"])
        return np.asarray(outputs), None


def read_photo(path: str) -> np.ndarray:
    """RGB uint8 pixels of any image PIL can open (EXIF rotation applied)."""
    from PIL import Image, ImageOps

    from ingest.images import to_rgb

    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(to_rgb(ImageOps.exif_transpose(image)))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None


def predict_file(predictor: Predictor, path: str, *, detect: bool, margin: float, min_face: int,
                 out_dir: str | None) -> dict:
    from trainer import faces, plots

    result = {"file": path, "faces": [], "error": None}
    try:
        rgb = read_photo(path)
    except ValueError as e:
        result["error"] = str(e)
        return result
    if detect:
        boxes = faces.detect_faces(rgb, min_face)
        if not boxes:
            result["error"] = (f"{path}: no face found; pass a photo with a frontal face, or "
                               f"--no_detect if the image already is a face crop")
            return result
        crops = [faces.crop_with_margin(rgb, box, margin) for box in boxes]
    else:
        boxes = [(0, 0, rgb.shape[1], rgb.shape[0])]
        crops = [rgb]
    age_probs, gender_probs = predictor(crops)
    ages = np.arange(age_probs.shape[1])
    for i, box in enumerate(boxes):
        face = {"box": [int(v) for v in box],
                "apparent_age": round(float(np.sum(age_probs[i] * ages)), 2),
                "most_likely_age": int(np.argmax(age_probs[i]))}
        if gender_probs is not None:
            face["gender"] = "male" if gender_probs[i, 1] >= 0.5 else "female"
        result["faces"].append(face)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        stem = os.path.splitext(os.path.basename(path))[0]
        result["annotated"] = plots.annotate(rgb, result["faces"], os.path.join(out_dir, f"{stem}_annotated.png"))
        result["distributions"] = [
            plots.age_distribution(age_probs[i], os.path.join(out_dir, f"{stem}_face{i + 1}_ages.png"),
                                   f"{stem} face {i + 1}")
            for i in range(len(boxes))]
    return result


def print_text(result: dict) -> None:
    if result["error"]:
        print(f"error: {result['error']}", file=sys.stderr)
        return
    for i, face in enumerate(result["faces"], 1):
        extra = f", {face['gender']}" if "gender" in face else ""
        print(f"{result['file']}: face {i} at {tuple(face['box'])}: apparent age "
              f"{face['apparent_age']:.1f} (most likely {face['most_likely_age']}{extra})")
    for path in [result.get("annotated")] + result.get("distributions", []):
        if path:
            print(f"  wrote {path}")


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give one or more photos: python -m trainer.predict --model_dir runs/X photo.jpg")
    f = trainer_flags.FLAGS
    trainer_flags.quiet_logs()
    from trainer.run_dir import RunDirError
    try:
        predictor = Predictor(f.model_dir)
    except RunDirError as e:
        sys.exit(f"error: {e}")
    results = [predict_file(predictor, p, detect=not f.no_detect, margin=f.margin, min_face=f.min_face,
                            out_dir=f.out) for p in paths]
    if f.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print_text(result)
    if all(r["error"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    trainer_flags.define_predict_flags()
    trainer_flags.flags.adopt_module_key_flags(trainer_flags)  # so --help lists them
    app.run(main)
