"""storage.run_dir and train.open_run: a run directory is ours or refused, has one
writer, loses a killed run's partial files, and damaged files cost one line."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import keras
import pytest

import model
from errors import DataError
from model.load import load_run_model
from storage import outdir
from storage.run_dir import RunDir, RunDirError
from trainer import flags as trainer_flags
from trainer import train


def config(model_dir: str, **overrides) -> trainer_flags.TrainConfig:
    values = dict(records="unused", model_dir=model_dir, weights=None, variant="tiny", strategy="default",
                  flag_lines=("--variant=tiny",))
    values.update(overrides)
    return trainer_flags.TrainConfig(**values).check()


def test_a_new_run_directory_gets_the_marker_first(tmp_path):
    run, resuming = train.open_run(config(str(tmp_path / "run")), chief=True, manifest={})
    try:
        assert resuming is False
        assert outdir.marker_kind(run.path) == "run"
        assert sorted(os.listdir(run.path)) == [".dex-age", "flags.txt"]
    finally:
        run.release()


def test_a_foreign_directory_is_refused_untouched(tmp_path):
    target = tmp_path / "photos"
    target.mkdir()
    (target / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(DataError) as e:
        train.open_run(config(str(target)), chief=True, manifest={})
    assert str(e.value).startswith(f"--model_dir {target}: not empty and not written by this project")
    assert "\n" not in str(e.value)
    assert os.listdir(target) == ["holiday.jpg"] and (target / "holiday.jpg").read_bytes() == b"precious"


def test_a_model_dir_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "run"
    target.write_text("not a directory")
    with pytest.raises(DataError, match=r"--model_dir .*run: is a file, not a directory"):
        train.open_run(config(str(target)), chief=True, manifest={})
    assert target.read_text() == "not a directory"


def test_a_data_set_of_this_project_is_not_a_run_directory(tmp_path):
    target = tmp_path / "shards"
    outdir.drop_marker(str(target), "images")
    (target / "manifest.json").write_text("{}")
    with pytest.raises(RunDirError, match=r"--model_dir .*shards: holds a images output of this project, not a "
                                          r"training run; nothing was touched"):
        train.open_run(config(str(target)), chief=True, manifest={})
    assert sorted(os.listdir(target)) == [".dex-age", "manifest.json"]


def test_a_lock_file_that_cannot_be_created_names_the_model_dir(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args)
    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(RunDirError, match=rf"--model_dir {tmp_path}/run: cannot write {tmp_path}/.run.lock "
                                          rf"\(Read-only file system\); choose a --model_dir on a writable disk"):
        train.open_run(config(str(tmp_path / "run")), chief=True, manifest={})


@pytest.mark.parametrize("holding", ["run.json", "checkpoints", "checkpoints/checkpoint"])
def test_a_users_folder_looking_like_a_run_is_refused_untouched(tmp_path, holding):
    """No adoption without a mark: a run.json or checkpoints/ without the marker are the user's."""
    target = tmp_path / "run"
    (target / "checkpoints").mkdir(parents=True)
    if holding != "checkpoints":
        (target / holding).write_text("mine")
    (target / "history.csv").write_text("my,table\n")
    before = sorted(p.relative_to(target).as_posix() for p in target.rglob("*"))
    with pytest.raises(DataError, match=rf"--model_dir {target}: not empty and not written by this project "
                                        r"\(no \.dex-age marker\); nothing was touched"):
        train.open_run(config(str(target)), chief=True, manifest={})
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == before
    assert (target / "history.csv").read_text() == "my,table\n" and not (tmp_path / ".run.lock").exists()


def test_a_model_dir_that_is_a_link_is_refused(tmp_path):
    outdir.drop_marker(str(tmp_path / "elsewhere"), "run")
    os.symlink(tmp_path / "elsewhere", tmp_path / "run")
    with pytest.raises(DataError, match=r"--model_dir .*/run: is a symbolic link"):
        train.open_run(config(str(tmp_path / "run")), chief=True, manifest={})
    assert os.listdir(tmp_path / "elsewhere") == [".dex-age"]


@pytest.mark.parametrize("kind", ["link", "users_file"])
def test_the_runs_lock_file_is_never_written_through_a_link_or_onto_a_users_file(tmp_path, kind):
    victim, lock = tmp_path / "victim", tmp_path / ".run.lock"
    victim.write_text("mine")
    if kind == "link":
        os.symlink(victim, lock)
    else:
        os.replace(victim, lock)
    with pytest.raises(DataError, match=r"\.run\.lock: is (a symbolic link|in the way of this project's lock file)"):
        train.open_run(config(str(tmp_path / "run")), chief=True, manifest={})
    assert (victim if kind == "link" else lock).read_text() == "mine"


def test_a_run_killed_while_its_marker_was_written_is_resumed(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / f".{outdir.MARKER_NAME}.tmp-77").write_text("")
    run, _ = train.open_run(config(str(target)), chief=True, manifest={})
    run.release()
    assert outdir.marker_kind(str(target)) == "run" and ".{}.tmp-77".format(outdir.MARKER_NAME) not in os.listdir(target)


@pytest.mark.slow
def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path):
    first, _ = train.open_run(config(str(tmp_path / "run")), chief=True, manifest={})
    try:
        # Another process, as a second trainer would be (flock is per open file).
        code = ("import sys; from trainer import train; from tests.test_trainer_run_dir import config\n"
                "try:\n    train.open_run(config(sys.argv[1]), chief=True, manifest={})\n"
                "except Exception as e:\n    print(e)")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                             timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
        line = out.stdout.strip()
        assert line.startswith(f"{tmp_path / 'run'}: already being written by pid {os.getpid()} on "), line
    finally:
        first.release()
    again, _ = train.open_run(config(str(tmp_path / "run")), chief=True, manifest={})   # released: free again
    again.release()


def test_a_killed_runs_partial_files_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "run"
    run, _ = train.open_run(config(str(target)), chief=True, manifest={})
    run.release()
    leftovers = [".history.csv.tmp-4242", ".best.keras.tmp-4242.keras", ".best.keras.tmp-4242", ".run.json.tmp-7",
                 ".report-appa_real-test.json.tmp-9", ".mae_by_age-wiki-val.png.tmp-9"]
    for name in leftovers + [".my-notes.txt", "notes.tmp-1", ".report-notes.txt.tmp-3"]:
        (target / name).write_text("x")
    (target / "checkpoints" / "ckpt-3_temp").mkdir(parents=True)
    run, _ = train.open_run(config(str(target)), chief=True, manifest={})
    run.release()
    assert sorted(os.listdir(target)) == [".dex-age", ".my-notes.txt", ".report-notes.txt.tmp-3", "checkpoints",
                                          "flags.txt", "notes.tmp-1"]
    assert os.listdir(target / "checkpoints") == []


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_a_read_only_or_full_model_dir_is_one_line(tmp_path, monkeypatch, code):
    # Root writes into read-only directories, so the failure is injected where the write happens.
    def refuse(path, data):
        raise OSError(code, os.strerror(code), path)
    monkeypatch.setattr(outdir, "atomic_write_bytes", refuse)
    target = tmp_path / "run"
    with pytest.raises(RunDirError) as e:
        train.open_run(config(str(target)), chief=True, manifest={})
    msg = str(e.value)
    assert msg.startswith(f"--model_dir {target}: cannot write {target / '.dex-age'} ({os.strerror(code)}); "
                          f"choose a --model_dir on a writable disk with free space"), msg
    monkeypatch.undo()
    run, _ = train.open_run(config(str(target)), chief=True, manifest={})   # the lock was released
    run.release()


@pytest.mark.parametrize("text, what", [("{not json", "unreadable"), ("[1, 2]", "a JSON list, not a run description")])
def test_a_damaged_run_json_is_one_line(tmp_path, text, what):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(RunDirError) as e:
        RunDir(str(tmp_path)).read_info()
    assert str(e.value).startswith(f"{tmp_path / 'run.json'}: {what}") and "\n" not in str(e.value)


def test_a_truncated_best_keras_is_one_line(tmp_path):
    run = RunDir(str(tmp_path))
    model.build_age_model(variant="tiny").save(run.best_model)
    assert load_run_model(run).name                        # whole: loads
    data = open(run.best_model, "rb").read()
    open(run.best_model, "wb").write(data[:len(data) // 2])
    with pytest.raises(RunDirError) as e:
        load_run_model(run)
    assert str(e.value) == (f"{run.best_model}: truncated or not a .keras file; train again with "
                            f"`python -m trainer --model_dir {tmp_path}` (it resumes)")
    keras.backend.clear_session()


def test_best_record_round_trip_and_damage(tmp_path):
    run = RunDir(str(tmp_path))
    assert run.read_best_record() is None
    run.write_best_record(3, "val_mae", 7.25)
    assert run.read_best_record() == {"epoch": 3, "metric": "val_mae", "value": 7.25}
    (tmp_path / "best.json").write_text("{")
    assert run.read_best_record() is None


def test_a_data_set_given_as_a_run_says_so_and_the_command_meant(sample_shards):
    with pytest.raises(RunDirError) as e:
        RunDir(sample_shards).read_info()
    name = os.path.basename(sample_shards)
    assert str(e.value) == (
        f"{os.path.join(sample_shards, 'run.json')}: not found; {sample_shards} is a data set (it holds "
        f"manifest.json), not a training run: train one on it with `python -m trainer --records "
        f"{sample_shards} --model_dir runs/{name} ...`, or score a run on it with `python -m trainer.evaluate "
        f"--model_dir runs/RUN --records {sample_shards}`")


def test_check_run_says_what_a_path_is_instead_of_a_trained_run(sample_shards, tmp_path, monkeypatch):
    from storage.run_dir import check_run

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "small-utk"
    outdir.drop_marker(str(run), "run")
    (run / "run.json").write_text("{}")

    def refusal(path):
        with pytest.raises(RunDirError) as e:
            check_run(str(path))
        return str(e.value)

    assert refusal("runs/smal-utk") == "runs/smal-utk does not exist; did you mean runs/small-utk?"
    assert refusal("runs/other") == ("runs/other does not exist; train a run there with `python -m trainer "
                                     "--model_dir runs/other ...`")
    assert refusal("runs/small-utk") == ("runs/small-utk/best.keras: not found; the run has not finished an epoch "
                                         "yet (train with `python -m trainer --model_dir runs/small-utk`)")
    (run / "best.keras").write_bytes(b"")
    check_run("runs/small-utk")                                         # a trained run passes
    assert refusal(sample_shards).startswith(f"{sample_shards} is a data set (it holds manifest.json)")
    export = tmp_path / "exports" / "x"
    outdir.drop_marker(str(export), "export")
    assert refusal(export) == (f"{export} is an output of this project of kind 'export', not a training run; "
                               f"pass the run's directory (the --model_dir it was trained with)")
    (tmp_path / "notes.txt").write_text("x")
    assert refusal("notes.txt").startswith("notes.txt is a file, not a training run directory")


@pytest.mark.parametrize("row", ["x,1.0,2.0", "3,abc,2.0", ",1.0,2.0", "4,1.0,2.0,9"])
def test_a_bad_history_row_is_one_line_naming_the_line(tmp_path, row):
    run = RunDir(str(tmp_path))
    (tmp_path / "history.csv").write_text(f"epoch,loss,val_mae\n1,2.5,9.0\n{row}\n")
    with pytest.raises(RunDirError) as e:
        run.read_history()
    assert str(e.value).startswith(f"{tmp_path / 'history.csv'}: line 3 is not an epoch number and its metrics")
    assert str(e.value).endswith("correct or delete that line (the run keeps training from its checkpoints)")
    (tmp_path / "history.csv").write_text("epoch,loss,val_mae\n1,2.5,9.0\n2,2.0,\n")
    assert run.read_history() == [{"epoch": 1, "loss": 2.5, "val_mae": 9.0}, {"epoch": 2, "loss": 2.0}]
