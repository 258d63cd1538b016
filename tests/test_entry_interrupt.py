"""Ctrl-C in a running command (SIGINT to its whole process group, as a terminal sends
it): one `interrupted: ...` line on stderr saying what is kept and how to go on, exit
status 130, no traceback (ingest's decode workers included), nothing half-written
looking complete, and the same command then resumes and completes."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from entry import interrupt
from entry.startup_notices import is_notice
from ingest import sample

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_line_says_what_the_command_noted_else_that_nothing_was_written(monkeypatch):
    monkeypatch.setattr(interrupt, "_note", None)
    assert interrupt.message() == (f"interrupted: {interrupt.command()} stopped before writing anything; rerun "
                                   f"the same command")
    interrupt.note("ingest stopped; the shards are kept")
    assert interrupt.message() == "interrupted: ingest stopped; the shards are kept"
    interrupt.note(lambda: f"predict stopped; {2 + 2} lines kept")          # asked when Ctrl-C comes
    assert interrupt.message() == "interrupted: predict stopped; 4 lines kept"
    interrupt.note(lambda: 1 / 0)                                           # the goodbye never fails
    assert interrupt.message().startswith("interrupted: ") and "stopped before writing anything" in interrupt.message()


def test_entry_turns_ctrl_c_in_a_main_into_the_line_and_status_130(monkeypatch, capfd):
    import entry

    def exit_now(status):
        raise SystemExit(status)

    def main():
        raise KeyboardInterrupt

    monkeypatch.setattr(interrupt, "_note", "trainer stopped; the checkpoint is kept")
    monkeypatch.setattr(os, "_exit", exit_now)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as e:
            entry.one_line(main)
    finally:
        signal.signal(signal.SIGINT, handler)
    assert e.value.code == interrupt.STATUS == 130
    assert capfd.readouterr().err == "interrupted: trainer stopped; the checkpoint is kept\n"


def interrupted(args: list[str], ready, cwd: str, timeout: float = 300) -> tuple[int, list[str]]:
    """Run `python -m ARGS`, wait until `ready()` (the command is at work), send SIGINT
    to its process group; its exit status and stderr lines (TensorFlow's filtered
    start-up notices aside)."""
    # SIGINT as a terminal's foreground command has it: a suite started in the background
    # (`make test &`, nohup) passes SIGINT ignored to its children, and Python keeps it so.
    process = subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    start = time.monotonic()
    while not ready():
        assert process.poll() is None, f"ended before it could be interrupted: {process.stderr.read()[-2000:]}"
        assert time.monotonic() - start < timeout, "never got to work"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    return process.returncode, [line for line in err.splitlines() if line.strip() and not is_notice(line)]


def rerun(args: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.slow
def test_ctrl_c_in_ingest_keeps_the_finished_shards_and_the_same_command_resumes(tmp_path):
    src = str(tmp_path / "wiki_crop")
    sample.generate(src, 3000, 0, workers=2, face_px=(200, 240))
    out = tmp_path / "shards" / "wiki"
    staging = tmp_path / "shards" / ".wiki.staging"
    args = ["ingest", "--src", src, "--out", str(out), "--image_size", "96", "--shard_mb", "0.05",
            "--workers", "2"]
    # .resume.json: a shard is complete (shards keep hidden names until the data set is)
    status, lines = interrupted(args, lambda: (staging / ".resume.json").exists(), str(tmp_path))
    assert status == interrupt.STATUS
    assert lines == ["interrupted: ingest stopped; the finished shards are kept in shards/.wiki.staging and "
                     "the same command resumes"]
    assert not out.exists() and staging.is_dir()             # nothing looks like a finished data set
    again = rerun(args, str(tmp_path))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "ingest: resuming" in again.stdout and (out / "manifest.json").is_file()


@pytest.fixture(scope="module")
def resumed_run(sample_shards, tmp_path_factory) -> tuple[str, list[str], int, subprocess.CompletedProcess]:
    """A tiny training run interrupted after its first checkpoint, then run again to the end."""
    run = str(tmp_path_factory.mktemp("interrupt") / "run")
    args = ["trainer", f"--records={sample_shards}", "--variant=tiny", "--weights=none", "--epochs=4",
            "--batch_size=32", "--noevaluate", f"--model_dir={run}"]
    status, lines = interrupted(args, lambda: glob.glob(os.path.join(run, "checkpoints", "ckpt-1.index")), REPO)
    return run, lines, status, rerun(args, REPO)


@pytest.mark.slow
def test_ctrl_c_in_the_trainer_keeps_the_last_checkpoint_and_the_same_command_resumes(resumed_run):
    run, lines, status, again = resumed_run
    assert status == interrupt.STATUS
    assert lines == [f"interrupted: trainer stopped; {run} keeps the checkpoint of its last completed epoch (the "
                     f"epoch under way is lost) and the same command resumes from it"]
    assert again.returncode == 0, again.stderr[-2000:]
    with open(os.path.join(run, "history.csv")) as f:
        assert [row.split(",")[0] for row in f.read().splitlines()[1:]] == ["1", "2", "3", "4"]


PHOTOS = 2000    # photos the predict Ctrl-C test makes


@pytest.mark.slow
def test_ctrl_c_in_predict_keeps_whole_lines_and_the_same_command_continues(resumed_run, tmp_path):
    run = resumed_run[0]
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    # Enough photos, one a model call, that the run is still at work when Ctrl-C comes
    # even on an idle machine.
    for i in range(PHOTOS):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(photos / f"p{i:04}.jpg")
    out = tmp_path / "preds.jsonl"
    args = ["serving.predict", f"--model_dir={run}", "--no_detect", "--batch_size=1", f"--jsonl={out}",
            str(photos)]
    status, lines = interrupted(args, lambda: out.exists() and out.stat().st_size > 0, str(tmp_path))
    assert status == interrupt.STATUS
    assert lines == [f"interrupted: serving.predict stopped; {out} keeps the predictions of the photos finished "
                     f"so far and the same command continues after them"]
    done = [json.loads(line) for line in out.read_text().splitlines()]      # every line whole
    assert 0 < len(done) < PHOTOS
    again = rerun(args, str(tmp_path))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{out}: {len(done)} files already done; continuing with {PHOTOS - len(done)}" in again.stderr
    assert len(out.read_text().splitlines()) == PHOTOS
