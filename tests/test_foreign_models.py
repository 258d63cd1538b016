"""A .keras file or run.json the project did not write as expected: one line each
(WeightsError for --init_from, RunDirError for predict, evaluate and export)."""

from __future__ import annotations

import json
import os
import zipfile

import keras
import numpy as np
import pytest

from model import transfer
from model.load import load_run_model
from model.weights import WeightsError
from storage.run_dir import RunDir, RunDirError, run_margin


def tiny_keras(path: str) -> str:
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    net.save(path)
    return path


def with_config(path: str, out: str, edit) -> str:
    """A copy of the .keras zip at `path` with config.json edited (edit(None) drops it)."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                data = edit(data)
                if data is None:
                    continue
            dst.writestr(item, data)
    return out


def _unregistered_layer(data: bytes) -> bytes:
    config = json.loads(data)
    layer = config["config"]["layers"][-1]
    layer.update(class_name="NoSuchLayer", module="nowhere", registered_name="nowhere>NoSuchLayer")
    return json.dumps(config).encode()


@pytest.fixture
def foreign(tmp_path) -> dict[str, str]:
    good = tiny_keras(str(tmp_path / "good.keras"))
    text = tmp_path / "notes.keras"
    text.write_text("just notes")
    return {"text": str(text),
            "no_config": with_config(good, str(tmp_path / "no_config.keras"), lambda data: None),
            "custom_layer": with_config(good, str(tmp_path / "custom.keras"), _unregistered_layer)}


@pytest.mark.parametrize("case, says", [
    ("text", "not a .keras file (a .keras file is a zip archive)"),
    ("no_config", "cannot be loaded as a Keras model (KeyError"),
    ("custom_layer", "cannot be loaded as a Keras model (TypeError"),
])
def test_init_from_a_foreign_keras_file_is_one_line(foreign, case, says):
    with pytest.raises(WeightsError) as e:
        transfer.load_source(foreign[case])
    line = str(e.value)
    assert line.startswith(f"{foreign[case]}: {says}") and "\n" not in line
    assert line.endswith("pass a run directory holding best.keras or a .keras file to --init_from")


@pytest.mark.parametrize("case", ["no_config", "custom_layer"])
def test_a_runs_foreign_best_keras_is_one_line(foreign, tmp_path, case):
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    os.replace(foreign[case], run.best_model)
    with pytest.raises(RunDirError) as e:
        load_run_model(run)
    assert str(e.value).startswith(f"{run.best_model}: cannot be loaded (") and "\n" not in str(e.value)


@pytest.mark.parametrize("margin", [-1, float("nan"), "0.4", True, None])
def test_a_run_margin_that_is_not_a_number_at_least_zero_is_refused(margin):
    with pytest.raises(RunDirError, match=rf"runs/x/run.json: margin {margin!r} is not a number >= 0"):
        run_margin({"margin": margin}, "runs/x/run.json")
    assert run_margin({}, "runs/x/run.json") == 0.4 and run_margin({"margin": 0}) == 0
    assert np.isclose(run_margin({"margin": 0.25}), 0.25)
