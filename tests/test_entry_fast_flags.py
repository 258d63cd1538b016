"""Every command answers a flag mistake, and a path of the wrong kind, before TensorFlow
loads: the flags, the configs they build and the path checks (a run, a data set and
its splits, photos, the predictions file) import no TensorFlow or Keras
(entry.check_flags runs them first), so a mistake costs a fraction of a second
instead of TensorFlow's start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from storage import outdir

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


# Path mistakes (path_mistakes builds the paths they name): id -> (command line, what its line says).
PATH_MISTAKE_IDS = ("missing photo", "unknown split", "images as --records", "data set as --model_dir",
                    "folder as --jsonl", "cpu.flags without its data set", "typo in a run", "typo in export's run",
                    "typo in a data set", "shard file to records inspect", "another file as --jsonl",
                    "a foreign folder as export's --out", "resuming a run with another variant")


def path_mistakes(root: str, shards: str) -> dict[str, tuple[list[str], str]]:
    """The path mistakes, run in `root` (given the data set `shards`): makes there a run
    `runs/small-utk` of the tiny variant (run.json, a placeholder best.keras and checkpoint:
    recognising a run reads neither), a photo, a folder of images, a text file and a
    folder of the user's."""
    run = os.path.join(root, "runs", "small-utk")
    os.makedirs(os.path.join(root, "photos"), exist_ok=True)
    os.makedirs(os.path.join(run, "checkpoints"), exist_ok=True)
    outdir.drop_marker(run, "run")      # a run of this project's: marked first
    with open(os.path.join(run, "run.json"), "w") as f:
        json.dump({"records": shards, "variant": "tiny"}, f)
    os.makedirs(os.path.join(root, "mine"), exist_ok=True)
    for path in (os.path.join(run, "best.keras"), os.path.join(root, "photo.jpg"),
                 os.path.join(root, "photos", "a.jpg"), os.path.join(root, "mine", "notes.txt"),
                 os.path.join(run, "checkpoints", "ckpt-1.index"),
                 os.path.join(run, "checkpoints", "ckpt-1.data-00000-of-00001")):
        with open(path, "wb") as f:
            f.write(b"placeholder\n")
    shard = sorted(n for n in os.listdir(shards) if n.endswith(".tfrecord"))[0]
    rows = [
        (["serving.predict", "--model_dir=runs/small-utk", "phot.jpg"],
         "error: phot.jpg does not exist; did you mean photo.jpg?"),
        (["trainer.evaluate", "--model_dir=runs/small-utk", "--split=testing"],
         f"error: --split testing: the data set {shards} has no split 'testing'; pass one of test, train, val"),
        (["trainer.evaluate", "--model_dir=runs/small-utk", "--records=photos"],
         "error: photos is a folder of images (a source for ingest), not a data set of shards"),
        (["trainer.evaluate", f"--model_dir={shards}"],
         f"error: {shards} is a data set (it holds manifest.json), not a training run"),
        (["serving.predict", "--model_dir=runs/small-utk", "--jsonl=photos", "photo.jpg"],
         "error: --jsonl photos: is a folder"),
        (["trainer", f"--flagfile={os.path.join(REPO, 'cpu.flags')}"],
         "error: demo/shards/wiki does not exist; create the data set with `python -m ingest"),
        (["trainer.evaluate", "--model_dir=runs/smal-utk"], "error: runs/smal-utk does not exist; did you mean "
                                                            "runs/small-utk?"),
        (["serving.export", "--model_dir=runs/smal-utk", "--out=e"], "error: runs/smal-utk does not exist; did you "
                                                                     "mean runs/small-utk?"),
        (["trainer.features", f"--records={shards}x"], f"error: {shards}x does not exist; did you mean {shards}?"),
        (["records", "inspect", os.path.join(shards, shard)],
         f"is a shard file of the data set {shards}; run `python -m records inspect {shards}`"),
        (["serving.predict", "--model_dir=runs/small-utk", "--jsonl=mine/notes.txt", "photo.jpg"],
         "error: mine/notes.txt: line 1 is not a prediction line"),
        (["serving.export", "--model_dir=runs/small-utk", "--out=mine"],
         "error: mine: exists and is not an export this project wrote"),
        (["trainer", f"--flagfile={os.path.join(REPO, 'cpu.flags')}", f"--records={shards}",
          "--model_dir=runs/small-utk", "--variant=small"],
         "error: --variant=small but the run in runs/small-utk was trained with --variant=tiny"),
    ]
    return dict(zip(PATH_MISTAKE_IDS, rows))


def imports_of(args: list[str], cwd: str = REPO) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime -m ARGS`; its result and the top-level packages it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", *args], cwd=cwd, capture_output=True,
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


@pytest.fixture(scope="module")
def mistakes_root(sample_shards, tmp_path_factory) -> tuple[str, dict]:
    root = str(tmp_path_factory.mktemp("mistakes"))
    return root, path_mistakes(root, sample_shards)


@pytest.mark.slow
@pytest.mark.parametrize("name", PATH_MISTAKE_IDS)
def test_a_path_of_the_wrong_kind_is_one_line_before_tensorflow_loads(name, mistakes_root):
    root, mistakes = mistakes_root
    args, says = mistakes[name]
    result, imported = imports_of(args, cwd=root)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == 1, result.stderr[-2000:]
    assert len(lines) == 1 and says in lines[0], lines
    assert not {"tensorflow", "keras"} & imported, sorted({"tensorflow", "keras"} & imported)


@pytest.mark.slow
def test_help_lists_the_flags_without_loading_tensorflow(mistakes_root):
    result, imported = imports_of(["serving.predict", "--help"])
    assert "--jsonl" in result.stdout and "--pictures_dir" in result.stdout, result.stdout[-2000:]
    assert "tensorflow" not in imported
    # The control: a command that gets past its checks does load it (so the import log is
    # read right): the run's best.keras is a placeholder, found out once Keras reads it.
    control, imported = imports_of(["serving.predict", "--model_dir=runs/small-utk", "photo.jpg"],
                                   cwd=mistakes_root[0])
    assert control.returncode == 1 and "tensorflow" in imported, control.stderr[-500:]
    assert "truncated or not a .keras file" in control.stderr
