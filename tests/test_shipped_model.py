"""The shipped model (models/small-utkface, serving.shipped): its files as model.json
records them, safe-mode loading, a real portrait's age with its interval, the Python
API against the command, a bad image in a list, fine-tuning from it, and serving.ship
building a folder of its own from a run."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conftest import run_module
from serving import shipped

MODEL = shipped.path()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def astronaut() -> np.ndarray:
    from skimage import data     # a public-domain portrait that ships with scikit-image

    return data.astronaut()


@pytest.fixture(scope="module")
def estimator():
    from serving import AgeEstimator

    return AgeEstimator()


@pytest.fixture(scope="module")
def astronaut_file(tmp_path_factory) -> str:
    from PIL import Image

    path = str(tmp_path_factory.mktemp("photos") / "astronaut.png")
    Image.fromarray(astronaut()).save(path)
    return path


def test_every_file_is_the_one_model_json_records():
    info = shipped.verify(MODEL)
    assert set(shipped.REQUIRED) <= set(info["files"])
    assert {"best.keras", "model.tflite", "export.json", "MODEL_CARD.md"} <= set(info["files"])
    assert sum(f["bytes"] for f in info["files"].values()) <= 10 * 2 ** 20
    assert info["name"] == shipped.DEFAULT and shipped.is_shipped(MODEL)


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-1], "bytes, model.json says"),
    (lambda data: data[:1000] + bytes([data[1000] ^ 1]) + data[1001:], "its sha256 differs from model.json's"),
])
def test_an_altered_file_is_one_line_naming_it(tmp_path, damage, message):
    copy = tmp_path / "small-utkface"
    shutil.copytree(MODEL, copy)
    weights = copy / "best.keras"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(shipped.ShippedModelError, match=message) as caught:
        shipped.verify(str(copy))
    assert str(weights) in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_model_is_one_line(tmp_path):
    with pytest.raises(shipped.ShippedModelError, match="the shipped model is missing"):
        shipped.verify(str(tmp_path / "nothing"))


def test_it_loads_in_safe_mode_as_the_card_says():
    import keras

    import model

    model.register_layers()
    net = keras.saving.load_model(os.path.join(MODEL, "best.keras"), safe_mode=True, compile=False)
    run = json.load(open(os.path.join(MODEL, "run.json")))
    assert run["variant"] == "small" and run["detector"] == "blazeface" and run["aligned"] is True
    assert f"{net.count_params():,} parameters" in open(os.path.join(MODEL, "MODEL_CARD.md")).read()


def test_the_astronaut_is_an_adult_with_an_interval(estimator):
    faces = estimator.predict(astronaut())
    assert len(faces) == 1 and faces.error is None
    face = faces[0]
    assert 20 <= face.age <= 60, face
    assert face.age_low < face.age < face.age_high
    x, y, w, h = face.box
    assert 150 <= x + w / 2 <= 290 and 50 <= y + h / 2 <= 190      # her face, not the flag or the suit


def test_a_bad_image_in_a_list_is_that_item_s_error(estimator, tmp_path):
    from serving import ImageError

    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"not an image")
    results = estimator.predict([str(bad), astronaut(), np.zeros((4, 4), np.uint8)])
    assert [len(r) for r in results] == [0, 1, 0]
    assert "notes.jpg" in results[0].error and results[1].error is None
    assert "HxWx3 uint8" in results[2].error
    with pytest.raises(ImageError, match="notes.jpg"):
        estimator.predict(str(bad))


@pytest.mark.slow
def test_the_command_uses_it_by_default_and_agrees_with_the_api(estimator, astronaut_file):
    result = run_module("serving.predict", "--json", astronaut_file, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"model: the shipped {shipped.DEFAULT} ("), lines
    assert not any(line.startswith("warning") for line in lines), lines
    (face,) = json.loads(result.stdout)[0]["faces"]
    (mine,) = estimator.predict(astronaut_file)
    assert abs(face["apparent_age"] - mine.age) <= 0.01
    assert (face["age_low"], face["age_high"], tuple(face["box"])) == (mine.age_low, mine.age_high, mine.box)


@pytest.mark.slow
def test_fine_tuning_starts_from_it(sample_shards, tmp_path):
    run = tmp_path / "run"
    result = run_module("trainer", "--flagfile=finetune.flags", f"--records={sample_shards}", f"--model_dir={run}",
                        "--epochs=1", "--steps_per_epoch=2", "--batch_size=16", "--noevaluate", cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"init_from {os.path.join('models', shipped.DEFAULT, 'best.keras')}" in result.stdout
    assert "training every layer (--trainable_from=all" in result.stdout
    assert (run / "best.keras").is_file()
