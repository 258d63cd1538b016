"""The trained models that ship in the repository's `models/` folder.

    models/<name>/          one folder per shipped model (variant and data: small-utkface)
      .dex-age              the marker, kind "model" (a trainer never writes into it)
      best.keras            the age model (loaded in safe mode), what predict and --init_from use
      model.tflite          its float16 TFLite (the pixel endpoint, serving.export)
      run.json, flags.txt   the training run's facts and resolved flags
      export.json           the framing a caller reproduces, in plain terms
      report.json, report.html, mae_by_age.png   its test split (trainer.evaluate)
      MODEL_CARD.md, MODEL_CARD.html   the model card (reports.model_card)
      model.json            name, summary and every file's size and sha256

`python -m serving.predict photo.jpg` without --model_dir and `AgeEstimator()` use
DEFAULT; `python -m serving.ship` builds such a folder from a run and its export.
Every size and checksum model.json vouches for is checked before the model is used
(`verify`): a truncated or replaced file is one line, never a wrong age.
Standard library only: predict checks the model before TensorFlow loads.
"""

from __future__ import annotations

import json
import os

from errors import ProjectError
from storage import outdir
from storage.checksum import file_sha256
from storage.json_file import read_json_object

MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")
DEFAULT = "small-utkface"      # the default model of prediction and the start of fine-tuning
KIND = "model"                  # the marker's kind
INFO = "model.json"
MAX_FILE_BYTES = 10 * 2 ** 20   # the whole folder stays under 10 MB
# What a shipped folder holds (model.json lists each with its size and sha256).
FILES = ("best.keras", "model.tflite", "run.json", "flags.txt", "export.json", "report.json", "report.html",
         "mae_by_age.png", "MODEL_CARD.md", "MODEL_CARD.html")
REQUIRED = ("best.keras", "run.json", "MODEL_CARD.md")


class ShippedModelError(ProjectError):
    """A shipped model folder that is missing, incomplete or altered; the message says how to restore it."""


def path(name: str = DEFAULT) -> str:
    return os.path.join(MODELS_DIR, name)


def is_shipped(directory: str) -> bool:
    """True for a folder this project's `serving.ship` wrote (marker kind "model")."""
    return outdir.marker_kind(directory) == KIND


def read_info(directory: str) -> dict:
    return read_json_object(os.path.join(directory, INFO), "a shipped model's description",
                            "restore the folder with `git checkout -- " + directory + "`", ShippedModelError)


def verify(directory: str) -> dict:
    """model.json of a shipped folder after checking every file it lists: present, a
    regular file, of the recorded size and sha256. Returns model.json."""
    restore = f"restore it with `git checkout -- {directory}` or rebuild it with `make model`"
    if not os.path.isdir(directory):
        raise ShippedModelError(f"{directory}: the shipped model is missing; {restore}")
    info = read_info(directory)
    files = info.get("files")
    if not isinstance(files, dict) or not all(name in files for name in REQUIRED):
        raise ShippedModelError(f"{os.path.join(directory, INFO)}: does not list {', '.join(REQUIRED)}; {restore}")
    for name, facts in files.items():
        if name not in FILES or not isinstance(facts, dict):
            raise ShippedModelError(f"{os.path.join(directory, INFO)}: lists {name!r}, not a file of a "
                                    f"shipped model; {restore}")
        full = os.path.join(directory, name)
        if not os.path.isfile(full) or os.path.islink(full):
            raise ShippedModelError(f"{full}: missing or not a regular file; {restore}")
        size = os.path.getsize(full)
        if size != facts.get("bytes") or size > MAX_FILE_BYTES:
            raise ShippedModelError(f"{full}: {size} bytes, model.json says {facts.get('bytes')}; {restore}")
        if file_sha256(full) != facts.get("sha256"):
            raise ShippedModelError(f"{full}: its sha256 differs from model.json's; {restore}")
    return info


def describe(directory: str, info: dict) -> str:
    """The line predict and AgeEstimator print when the shipped model answers."""
    summary = info.get("summary", {})
    facts = ", ".join(f"{k} {v}" for k, v in summary.items())
    return f"model: the shipped {info.get('name', os.path.basename(directory))} ({facts}); --model_dir picks another"


def write_info(directory: str, name: str, summary: dict) -> None:
    """model.json listing every shipped file present in `directory` with its size and sha256."""
    files = {f: {"bytes": os.path.getsize(os.path.join(directory, f)), "sha256": file_sha256(os.path.join(directory, f))}
             for f in FILES if os.path.isfile(os.path.join(directory, f))}
    with open(os.path.join(directory, INFO), "w") as out:
        json.dump({"name": name, "summary": summary, "files": files}, out, indent=2)
        out.write("\n")
