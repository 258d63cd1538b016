"""Every command answers a flag mistake before TensorFlow loads: the flags and the
configs they build import no TensorFlow or Keras (entry.check_flags parses them first),
so a typo costs a fraction of a second instead of TensorFlow's start-up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (command line, what its one line says)
MISTAKES = [
    (["trainer", "--epocs=3"], "Unknown command line flag 'epocs'. Did you mean: epochs ?"),
    (["trainer", "--flagfile=cpu.flags", "--variant=huge"], "flag --variant=huge: value should be one of"),
    (["trainer", "--flagfile=cpu.flags", "--batch_size=0"], "error: --batch_size=0: must be at least 1"),
    (["trainer", "--flagfile=cpu.flags", "extra"], "error: unexpected arguments ['extra']; every option is a --flag"),
    (["trainer.evaluate", "--model_dir=x", "--splitt=val"], "Unknown command line flag 'splitt'"),
    (["trainer.evaluate", "--model_dir=x", "--age_threshold=-3"], "error: --age_threshold=-3: must be an age in 1..100"),
    (["trainer.evaluate", "--model_dir=x", "--batch_size=0"], "error: --batch_size=0: must be at least 1"),
    (["trainer.features", "--records=x", "--variant=huge"], "flag --variant=huge: value should be one of"),
    (["serving.predict", "--model_dir=x", "--output=p.jsonl", "a.jpg"], "Unknown command line flag 'output'"),
    (["trainer.predict", "--model_dir=x", "--detector=dlib", "a.jpg"], "flag --detector=dlib: value should be"),
    (["serving.predict", "--model_dir=x", "--margin=-0.1", "a.jpg"], "error: --margin=-0.1: must be 0 or more"),
    (["trainer.predict", "--model_dir=x"], "error: no photo given: name one or more images"),
    (["serving.export", "--model_dir=x"], "Flag --out must have a value other than None"),
    (["serving.export", "--model_dir=x", "--out=e", "extra"], "error: unexpected arguments ['extra']; every option"),
    (["trainer.features", "--records=x", "extra"], "error: unexpected arguments ['extra']; every option"),
    (["trainer.export", "--model_dir=x", "--out=e", "--tflite=int4"], "flag --tflite=int4: value should be"),
    (["ingest", "--src=x", "--image_sise=32"], "Unknown command line flag 'image_sise'"),
]


def imports_of(args: list[str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime -m ARGS`; its result and the top-level packages it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:") and line.count("|") == 2}
    return result, imported


@pytest.mark.slow
@pytest.mark.parametrize("args, says", MISTAKES, ids=[" ".join(a[:2]) for a, _ in MISTAKES])
def test_a_flag_mistake_is_one_line_before_tensorflow_loads(args, says):
    result, imported = imports_of(args)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == 1, result.stderr[-2000:]
    assert says in lines[0], lines
    assert "Traceback" not in result.stderr
    assert not {"tensorflow", "keras"} & imported, sorted({"tensorflow", "keras"} & imported)


@pytest.mark.slow
def test_help_lists_the_flags_without_loading_tensorflow():
    result, imported = imports_of(["serving.predict", "--help"])
    assert "--jsonl" in result.stdout and "--pictures_dir" in result.stdout, result.stdout[-2000:]
    assert "tensorflow" not in imported
    # The control: a command that runs does load it (so the import log is read right).
    control, imported = imports_of(["trainer", "--flagfile=cpu.flags", "--records=nowhere"])
    assert control.returncode == 1 and "tensorflow" in imported, control.stderr[-500:]
