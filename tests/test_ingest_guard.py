"""Ingest's guarantees: never touch what it did not make, leave the previous data
set usable on failure, one writer per output, no hangs, one-line errors, and
byte-identical resume after kill -9 (see WORKSPACE.md, "Guarantees")."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.io

from conftest import run_module
from errors import DataError
from ingest import images, output, pipeline, sample
from records.verify import problems
from records.writer import ShardedWriter
from storage import outdir
from storage.checksum import file_sha256
from storage.lock import OutputLock


def _cfg(src, out, **kw) -> pipeline.Config:
    return pipeline.Config(src=str(src), out=str(out), **{"image_size": 16, "shard_mb": 0.01,
                                                          "workers": 1, **kw})


def _quiet(_line):
    pass


@pytest.fixture
def good(sample_dir, tmp_path):
    """A finished data set of sample_dir at tmp_path/good (ingested in-process, inline)."""
    out = tmp_path / "good"
    pipeline.run(_cfg(sample_dir, out), log=_quiet)
    return out


def _snapshot(directory) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _no_tmp_left(root) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# --- rule 1: a command never deletes or overwrites what it did not make ---------

def test_foreign_out_is_refused_untouched(sample_dir, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "train-mine.tfrecord").write_text("precious")
    (out / "manifest.json").write_text('{"mine": true}')
    before = _snapshot(out)
    with pytest.raises(DataError, match="not empty and not written by this project"):
        pipeline.run(_cfg(sample_dir, out), log=_quiet)
    assert _snapshot(out) == before and sorted(os.listdir(tmp_path)) == ["o"]


def test_out_that_is_a_file_is_refused(sample_dir, tmp_path):
    (tmp_path / "o").write_text("x")
    with pytest.raises(DataError, match="is a file, not a directory"):
        pipeline.run(_cfg(sample_dir, tmp_path / "o"), log=_quiet)
    assert (tmp_path / "o").read_text() == "x"


def test_user_files_in_our_out_survive_a_reingest(sample_dir, good):
    (good / "notes.txt").write_text("mine")
    (good / "sub").mkdir()
    (good / "sub" / "a.txt").write_text("mine too")
    pipeline.run(_cfg(sample_dir, good, jpeg_quality=80), log=_quiet)
    assert (good / "notes.txt").read_text() == "mine" and (good / "sub" / "a.txt").read_text() == "mine too"
    assert problems(str(good)) == [] and json.load(open(good / "manifest.json"))["flags"]["jpeg_quality"] == 80
    assert sorted(p.name for p in good.parent.iterdir()) == [".good.lock", "good"]   # no staging/old left


def test_marker_is_dropped_first(sample_dir, tmp_path, monkeypatch):
    """Even a run interrupted at its first shard leaves a recognisable (ours) staging dir."""
    def boom(self, record):
        raise KeyboardInterrupt
    monkeypatch.setattr(ShardedWriter, "write", boom)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(_cfg(sample_dir, tmp_path / "o"), log=_quiet)
    staging = tmp_path / ".o.staging"
    assert outdir.marker_kind(str(staging)) == "images"


# --- rule 2: a failed or interrupted command leaves the previous result usable --

@pytest.mark.parametrize("change", ["min_face_score", "truncated_mat"])
def test_failed_reingest_keeps_the_good_data_set(sample_dir, good, tmp_path, change):
    before = _snapshot(good)
    src, kw = sample_dir, {}
    if change == "min_face_score":
        kw = {"min_face_score": 100}
    else:
        src = tmp_path / "src"
        shutil.copytree(sample_dir, src)
        data = (src / "wiki.mat").read_bytes()
        (src / "wiki.mat").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError):
        pipeline.run(_cfg(src, good, **kw), log=_quiet)
    assert _snapshot(good) == before and problems(str(good)) == []


@pytest.mark.parametrize("state", ["after_first_rename", "after_second_rename", "during_delete"])
def test_an_interrupted_swap_is_repaired_on_the_next_start(tmp_path, state):
    new, old_files = tmp_path / "o", {"manifest.json": "old", "notes.txt": "user"}
    out = outdir.Output(str(new), kind="images", owns=output.owns)
    for name, text in old_files.items():
        (tmp_path / ".o.old").mkdir(exist_ok=True)
        (tmp_path / ".o.old" / name).write_text(text)
    outdir.write_mark(str(tmp_path / ".o.old" / outdir.MARKER_NAME), "images")
    if state == "after_first_rename":          # old aside, complete staging not yet moved in
        outdir.drop_marker(out.staging, "images")
        (tmp_path / ".o.staging" / "manifest.json").write_text("new")
    else:
        outdir.drop_marker(str(new), "images")
        (new / "manifest.json").write_text("new")
    if state == "during_delete":                # old carried over and renamed to trash
        (new / "notes.txt").write_text("user")
        os.replace(out.old, out.trash)
    assert out.repair()
    assert (new / "manifest.json").read_text() == "new" and (new / "notes.txt").read_text() == "user"
    assert sorted(os.listdir(tmp_path)) == ["o"]


def test_a_swap_that_never_started_restores_the_old(tmp_path):
    outdir.drop_marker(str(tmp_path / ".o.old"), "images")       # the old copy carries its marker
    (tmp_path / ".o.old" / "manifest.json").write_text("old")
    out = outdir.Output(str(tmp_path / "o"), kind="images")
    assert "restored" in out.repair()
    assert (tmp_path / "o" / "manifest.json").read_text() == "old"


# --- rule 3: one writer per output directory --------------------------------------

def test_a_second_writer_is_refused_naming_the_holder(sample_dir, tmp_path):
    out = tmp_path / "o"
    with OutputLock(str(out)):
        with pytest.raises(DataError, match=f"already being written by pid {os.getpid()} "
                                            f"on {socket.gethostname()}"):
            pipeline.run(_cfg(sample_dir, out), log=_quiet)
    assert not out.exists()
    pipeline.run(_cfg(sample_dir, out), log=_quiet)        # released: the next one runs


@pytest.mark.slow
def test_a_second_ingest_process_is_refused_at_once(sample_dir, tmp_path):
    out = tmp_path / "o"
    with OutputLock(str(out)):
        start = time.monotonic()
        result = run_module("ingest", "--src", sample_dir, "--out", str(out), "--image_size", "16",
                            "--jpeg_quality", "50")
    assert result.returncode == 1 and time.monotonic() - start < 30
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {out}: already being written by pid {os.getpid()} on "
                     f"{socket.gethostname()} (lock {tmp_path}/.o.lock); wait for it to finish "
                     f"or choose another output directory"], result.stderr


# --- rule 4: no hangs -------------------------------------------------------------

_KILL_A_WORKER = textwrap.dedent("""
    import os, signal, sys, time
    from ingest import images, pipeline
    real = images.process_chunk
    def slow(chunk):
        time.sleep(0.05)
        return real(chunk)
    images.process_chunk = slow          # forked workers inherit it
    real_map = pipeline.DecodePool.map
    def map_and_kill(self, chunks):
        for i, item in enumerate(real_map(self, chunks)):
            if i == 20:
                os.kill(sorted(self._processes)[0], signal.SIGKILL)   # as the OOM killer would
            yield item
    pipeline.DecodePool.map = map_and_kill
    sys.argv = ["ingest", "--src", sys.argv[1], "--out", sys.argv[2], "--image_size", "16",
                "--workers", "2"]
    import entry
    from ingest import flags
    from ingest.__main__ import main
    entry.run(main, flags.define_flags, flags)
""")


@pytest.mark.slow
def test_a_dead_decode_worker_ends_ingest_with_one_line(sample_dir, tmp_path):
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", _KILL_A_WORKER, sample_dir, str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 1 and time.monotonic() - start < 60
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "a decode worker died (pid" in lines[0] and "signal 9" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()


_KILL_A_STARTING_WORKER = textwrap.dedent("""
    import os, signal, sys
    from ingest import decode_pool
    def die_while_starting():
        os.kill(os.getpid(), signal.SIGKILL)      # dies in the pool's start-up handshake
    decode_pool._ready = die_while_starting       # forked workers inherit it
    sys.argv = ["ingest", "--src", sys.argv[1], "--out", sys.argv[2], "--image_size", "16",
                "--workers", "2"]
    import entry
    from ingest import flags
    from ingest.__main__ import main
    entry.run(main, flags.define_flags, flags)
""")


@pytest.mark.slow
def test_a_worker_that_dies_while_the_pool_starts_is_one_line(sample_dir, tmp_path):
    result = subprocess.run([sys.executable, "-c", _KILL_A_STARTING_WORKER, sample_dir,
                             str(tmp_path / "o")], capture_output=True, text=True, timeout=90)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "a decode worker died (pid" in lines[0] and "signal 9" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_fifo_is_never_opened_and_counts_as_unreadable(sample_dir, sample_rows, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(sample_dir, src)
    rel = next(r["full_path"] for r in sample_rows if r["category"] == "kept" and r["quirk"] == "rgb")
    os.remove(src / rel)
    os.mkfifo(src / rel)                         # opening it for reading would block forever
    other = next(r["full_path"] for r in sample_rows
                 if r["category"] == "kept" and r["quirk"] == "rgb" and r["full_path"] != rel)
    os.remove(src / other)
    os.mkdir(src / other)
    result = run_module("ingest", "--src", str(src), "--out", str(tmp_path / "o"),
                        "--image_size", "16", "--workers", "2", timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    skipped = json.load(open(tmp_path / "o" / "manifest.json"))["skipped"]
    assert skipped == {**sample.expected_counts(len(sample_rows))["skipped"], images.NOT_A_FILE: 2}


# --- disk full / read-only: one line, no temporary shards left --------------------

def test_disk_full_is_one_line_and_leaves_no_tmp_shards(sample_dir, good, monkeypatch):
    before = _snapshot(good)
    real, calls = ShardedWriter.write, [0]

    def write(self, record):
        calls[0] += 1
        if calls[0] == 60:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, record)
    monkeypatch.setattr(ShardedWriter, "write", write)
    with pytest.raises(DataError) as e:
        pipeline.run(_cfg(sample_dir, good, jpeg_quality=70), log=_quiet)
    assert "\n" not in str(e.value) and "No space left on device" in str(e.value)
    assert "removed the unfinished data set" in str(e.value) and "free space" in str(e.value)
    assert _no_tmp_left(good.parent) and not (good.parent / ".good.staging").exists()
    assert _snapshot(good) == before


def test_read_only_out_is_found_before_any_decoding(sample_dir, tmp_path, monkeypatch):
    decoded = []
    monkeypatch.setattr(images, "process_chunk", lambda chunk: decoded.append(chunk) or [])

    def read_only(directory, kind):
        raise OSError(errno.EROFS, "Read-only file system", directory)
    monkeypatch.setattr(outdir, "drop_marker", read_only)
    with pytest.raises(DataError, match="Read-only file system.*choose an --out on a writable"):
        pipeline.run(_cfg(sample_dir, tmp_path / "o"), log=_quiet)
    assert decoded == [] and _no_tmp_left(tmp_path)


# --- rule 6: bad input is one line -----------------------------------------------

def _mat(path, **fields):
    struct = np.empty((1, 1), dtype=[(f, "O") for f in fields])
    for name, value in fields.items():
        struct[0, 0][name] = value
    scipy.io.savemat(path, {"wiki": struct})


def _fields(n: int) -> dict:
    cells = np.empty((1, n), dtype=object)
    for i in range(n):
        cells[0, i] = np.array([f"00/{i}.jpg"])
    return {"dob": np.full((1, n), 723000), "photo_taken": np.full((1, n), 2000),
            "full_path": cells, "gender": np.ones((1, n)), "name": cells,
            "face_score": np.full((1, n), 4.0), "second_face_score": np.full((1, n), np.nan)}


@pytest.mark.parametrize("case, message", [
    ("zero_bytes", "empty file (0 bytes)"),
    ("no_dob", "struct has no field dob"),
    ("no_full_path", "struct has no field full_path"),
    ("lengths", "fields of different lengths"),
    ("plain_array", "is a plain"),
    ("no_entries", "struct has 0 entries"),
])
def test_a_broken_mat_is_one_line(tmp_path, case, message):
    src = tmp_path / "src"
    src.mkdir()
    mat = src / "wiki.mat"
    fields = _fields(5)
    if case == "zero_bytes":
        mat.write_bytes(b"")
    elif case in ("no_dob", "no_full_path"):
        _mat(mat, **{k: v for k, v in fields.items() if k != case[3:]})
    elif case == "lengths":
        _mat(mat, **{**fields, "gender": np.ones((1, 3))})
    elif case == "plain_array":
        scipy.io.savemat(mat, {"wiki": np.arange(5)})
    else:
        _mat(mat, **_fields(0))
    with pytest.raises(DataError) as e:
        pipeline.run(_cfg(src, tmp_path / "o"), log=_quiet)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert "loosen" not in str(e.value) and not (tmp_path / "o").exists()


def test_src_that_is_a_file_says_so(sample_dir, tmp_path):
    with pytest.raises(DataError, match="is a file; pass the folder that holds it") as e:
        pipeline.run(_cfg(os.path.join(sample_dir, "wiki.mat"), tmp_path / "o"), log=_quiet)
    assert "ingest.sample" not in str(e.value)


def test_zero_test_fraction_fails_before_decoding(sample_dir, tmp_path, monkeypatch):
    decoded = []
    monkeypatch.setattr(images, "process_chunk", lambda chunk: decoded.append(chunk) or [])
    with pytest.raises(DataError, match="--test_fraction=0.0 .*the test split gets none"):
        pipeline.run(_cfg(sample_dir, tmp_path / "o", test_fraction=0.0), log=_quiet)
    assert decoded == [] and not (tmp_path / "o").exists() and not (tmp_path / ".o.staging").exists()


@pytest.mark.slow
def test_a_manifest_that_is_a_json_list_is_one_line(tmp_path):
    (tmp_path / "manifest.json").write_text("[1, 2]")
    for command in ("inspect", "verify"):
        result = run_module("records", command, str(tmp_path))
        assert result.returncode == 1 and "a JSON list, not a manifest object" in result.stderr
        assert "Traceback" not in result.stderr


# --- leftovers of a killed run and resume -----------------------------------------

def test_partial_leftovers_of_a_killed_run_are_removed(sample_dir, tmp_path):
    out = tmp_path / "o"
    staging = tmp_path / ".o.staging"
    outdir.drop_marker(str(staging), "images")
    (staging / ".train-00007.tfrecord.tmp").write_bytes(b"partial")
    (staging / "manifest.json.tmp-123").write_bytes(b"partial")
    pipeline.run(_cfg(sample_dir, out), log=_quiet)
    assert _no_tmp_left(tmp_path) and not staging.exists() and problems(str(out)) == []


_KILL_AT = textwrap.dedent("""
    import os, signal, sys
    from ingest import output, pipeline
    from records import writer
    from storage import outdir
    where, k = sys.argv[3], int(sys.argv[4])
    calls = [0]
    def killer(real):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return wrapped
    target = {"none": (writer.ShardedWriter, "count"),
              "write": (writer.ShardedWriter, "write"),
              "close": (writer.ShardedWriter, "_close_current"),
              "checkpoint": (output.Writing, "_checkpoint"),
              "publish": (output.Writing, "publish"),
              "swap": (outdir.Output, "_carry_and_delete_old")}[where]
    if where != "none":
        setattr(*target, killer(getattr(*target)))
    pipeline.run(pipeline.Config(src=sys.argv[1], out=sys.argv[2], image_size=16, shard_mb=0.004,
                                 workers=2), log=print)
""")


def _run_killable(sample_dir, out, where="none", k=0):
    return subprocess.run([sys.executable, "-c", _KILL_AT, sample_dir, str(out), where, str(k)],
                          capture_output=True, text=True, timeout=120)


def _same_data_set(a, b) -> None:
    ma, mb = (json.load(open(d / "manifest.json")) for d in (a, b))
    for m in (ma, mb):
        m.pop("created")
    assert ma == mb
    shards = sorted(p.name for p in a.iterdir() if p.name.endswith(".tfrecord"))
    assert shards == sorted(p.name for p in b.iterdir() if p.name.endswith(".tfrecord"))
    assert len(shards) > 10
    assert all(file_sha256(a / s) == file_sha256(b / s) for s in shards)


@pytest.mark.slow
def test_kill_9_at_several_points_then_rerun_is_byte_identical(sample_dir, tmp_path):
    out = tmp_path / "o"
    reference = _run_killable(sample_dir, out)
    assert reference.returncode == 0, reference.stderr[-2000:]
    os.replace(out, tmp_path / "reference")
    cases = [("write", 1), ("write", 45), ("close", 5), ("checkpoint", 9), ("write", 150),
             ("publish", 1), ("swap", 1)]
    for where, k in cases:
        if where == "swap":                       # a swap needs an old data set to replace
            _run_killable(sample_dir, out)
        killed = _run_killable(sample_dir, out, where, k)
        assert killed.returncode == -signal.SIGKILL, (where, k, killed.stderr[-2000:])
        rerun = _run_killable(sample_dir, out)
        assert rerun.returncode == 0, (where, k, rerun.stderr[-2000:])
        resumed = "ingest: resuming" in rerun.stdout
        assert resumed == ((where, k) in {("write", 45), ("close", 5), ("checkpoint", 9),
                                          ("write", 150)}), (where, k, rerun.stdout)
        _same_data_set(tmp_path / "reference", out)
        assert _no_tmp_left(tmp_path) and sorted(os.listdir(tmp_path)) == [".o.lock", "o", "reference"]
        shutil.rmtree(out)


@pytest.mark.slow
def test_a_changed_flag_or_source_starts_over_and_says_so(sample_dir, tmp_path):
    out = tmp_path / "o"
    assert _run_killable(sample_dir, out, "write", 60).returncode == -signal.SIGKILL
    result = run_module("ingest", "--src", sample_dir, "--out", str(out), "--image_size", "16",
                        "--shard_mb", "0.004", "--workers", "2", "--jpeg_quality", "90")
    assert result.returncode == 0
    assert "starting over: --jpeg_quality changed since the interrupted run" in result.stdout
    src = tmp_path / "src"
    shutil.copytree(sample_dir, src)
    rows = sample.build_rows(400, 0)
    rows[0] = {**rows[0], "name": "changed"}
    sample.write_mat(str(src / "wiki.mat"), rows)
    shutil.rmtree(out)
    assert _run_killable(str(src), out, "write", 60).returncode == -signal.SIGKILL
    result = _run_killable(sample_dir, out)
    assert "starting over: the source (.mat sha256) changed" in result.stdout, result.stdout


@pytest.mark.parametrize("where", ["staging", "out"])
def test_a_folder_killed_while_its_marker_was_written_is_repaired(sample_dir, tmp_path, where):
    """The marker's exact temporary (`..dex-age.tmp-PID`) is a kill inside drop_marker:
    the next run removes it and goes on, never refuses forever."""
    folder = tmp_path / (".o.staging" if where == "staging" else "o")
    folder.mkdir()
    (folder / f".{outdir.MARKER_NAME}.tmp-99").write_text('{"kind": "im')
    pipeline.run(_cfg(sample_dir, tmp_path / "o"), log=_quiet)
    assert sorted(os.listdir(tmp_path)) == [".o.lock", "o"] and problems(str(tmp_path / "o")) == []
    assert not [n for n in os.listdir(tmp_path / "o") if ".tmp-" in n]


@pytest.mark.parametrize("name", ["thesis.pdf", ".dex-age-notes.txt", ".dex-age.tmp-1", "..dex-age.tmp-x"])
def test_a_users_staging_folder_is_refused_whatever_its_names(sample_dir, tmp_path, name):
    staging = tmp_path / ".o.staging"
    staging.mkdir()
    (staging / name).write_text("mine")
    with pytest.raises(DataError, match="is in the way of the staging directory"):
        pipeline.run(_cfg(sample_dir, tmp_path / "o"), log=_quiet)
    assert (staging / name).read_text() == "mine" and not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["link", "dangling", "users_file", "fifo"])
def test_the_lock_file_is_never_written_through_a_link_or_onto_a_users_file(sample_dir, tmp_path, kind):
    victim, lock = tmp_path / "victim", tmp_path / ".o.lock"
    if kind == "link":
        victim.write_text("mine")
        os.symlink(victim, lock)
    elif kind == "dangling":
        os.symlink(victim, lock)
    elif kind == "users_file":
        lock.write_text("my notes")
    else:
        os.mkfifo(lock)
    with pytest.raises(DataError, match=r"\.o\.lock: is (a symbolic link|in the way of this project's lock "
                                        r"file).*nothing was touched"):
        pipeline.run(_cfg(sample_dir, tmp_path / "o"), log=_quiet)
    if kind == "link":
        assert victim.read_text() == "mine"
    elif kind == "users_file":
        assert lock.read_text() == "my notes"
    assert not (tmp_path / "o").exists() and (kind != "dangling" or not victim.exists())


def test_a_lock_cut_short_by_a_kill_and_a_dead_writers_temporary_are_taken_over(tmp_path):
    lock = tmp_path / ".o.lock"
    lock.write_bytes(b"pid 7 on host\n     ")                 # overwritten, not yet cut
    (tmp_path / ".o.lock.tmp-999999999").write_text("pid 999999999 on h\n")   # no such process
    with OutputLock(str(tmp_path / "o")):
        assert lock.read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"
    assert sorted(os.listdir(tmp_path)) == [".o.lock"]


def test_an_out_that_is_a_link_is_refused_and_never_replaced(sample_dir, good, tmp_path):
    link = tmp_path / "faces"
    os.symlink(good, link)
    before = _snapshot(good)
    with pytest.raises(DataError, match=rf"--out {link}: is a symbolic link \(to {good}\); nothing was touched: "
                                        r"pass the folder it points to"):
        pipeline.run(_cfg(sample_dir, link, jpeg_quality=60), log=_quiet)
    assert os.path.islink(link) and _snapshot(good) == before


def test_a_feature_cache_survives_only_an_identical_reingest(sample_dir, good):
    cache = good / "features" / "tiny-abc"
    outdir.drop_marker(str(cache), "features")
    (cache / "train-00000-of-00001.tfrecord").write_bytes(b"cached")
    pipeline.run(_cfg(sample_dir, good), log=_quiet)               # byte-identical shards
    assert (cache / "train-00000-of-00001.tfrecord").read_bytes() == b"cached"
    pipeline.run(_cfg(sample_dir, good, jpeg_quality=60), log=_quiet)   # other shards
    assert not (good / "features").exists() and problems(str(good)) == []


def test_a_data_set_without_the_marker_is_the_users_and_refused_untouched(sample_dir, good):
    """No adoption without a mark: a manifest and shards of ours, unmarked, are a copy the user owns."""
    os.remove(good / outdir.MARKER_NAME)
    (good / "notes.txt").write_text("mine")
    before = _snapshot(good)
    with pytest.raises(DataError, match=r"not empty and not written by this project \(no \.dex-age marker\)"):
        pipeline.run(_cfg(sample_dir, good, jpeg_quality=60), log=_quiet)
    assert _snapshot(good) == before


@pytest.mark.parametrize("content", ["{}", '{"kind": "images"}', "notes", None])
def test_a_marker_name_that_is_not_exactly_our_mark_makes_nothing_ours(sample_dir, good, tmp_path, content):
    """A `.dex-age` that is not the JSON {kind, created} (or is a link) is the user's."""
    os.remove(good / outdir.MARKER_NAME)
    if content is None:
        (tmp_path / "elsewhere").write_text('{"kind": "images", "created": "x"}')
        os.symlink(tmp_path / "elsewhere", good / outdir.MARKER_NAME)
    else:
        (good / outdir.MARKER_NAME).write_text(content)
    before = _snapshot(good)
    with pytest.raises(DataError, match=r"not written by this project"):
        pipeline.run(_cfg(sample_dir, good, jpeg_quality=60), log=_quiet)
    assert _snapshot(good) == before


def test_a_users_folder_holding_a_copy_of_an_output_survives_a_reingest(sample_dir, good, tmp_path):
    """Only subfolders marked as the data set's nested outputs (feature caches) are dropped
    with it; a user's folder holding a copy of a run, or of a cache, is the user's."""
    experiments = good / "experiments"
    outdir.drop_marker(str(experiments / "run-copy"), "run")
    (experiments / "run-copy" / "run.json").write_text("{}")
    outdir.drop_marker(str(experiments / "cache-copy"), "features")
    (experiments / "results.md").write_text("mine")
    outdir.drop_marker(str(good / "features" / "tiny-abc"), "features")
    (good / "features" / "notes.md").write_text("also mine")
    pipeline.run(_cfg(sample_dir, good, jpeg_quality=60), log=_quiet)        # other shards
    assert (experiments / "results.md").read_text() == "mine"
    assert (experiments / "run-copy" / "run.json").read_text() == "{}"
    assert outdir.marker_kind(str(experiments / "cache-copy")) == "features"
    assert os.listdir(good / "features") == ["notes.md"] and problems(str(good)) == []


@pytest.mark.parametrize("sibling", [".o.trash", ".o.old"])
@pytest.mark.parametrize("existing_out", [False, True], ids=["new_out", "our_out"])
def test_a_users_folder_named_like_trash_or_old_is_refused_untouched(sample_dir, good, tmp_path,
                                                                      sibling, existing_out):
    """Only siblings that carry the marker are ours to move or delete."""
    out = tmp_path / "o"
    if existing_out:
        shutil.copytree(good, out)
    mine = tmp_path / sibling
    mine.mkdir()
    (mine / "thesis.pdf").write_text("mine")
    role = "trash" if sibling.endswith("trash") else "old copy"
    with pytest.raises(DataError, match=rf"{sibling}: is in the way of the {role} of .* nothing was "
                                        rf"touched: move it away"):
        pipeline.run(_cfg(sample_dir, out), log=_quiet)
    assert (mine / "thesis.pdf").read_text() == "mine"
    assert os.listdir(out) == os.listdir(good) if existing_out else not out.exists()


def test_an_old_copy_that_is_a_link_is_never_followed(sample_dir, good, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(good, elsewhere)          # even a data set of ours, reached by a link
    (elsewhere / "notes.txt").write_text("mine")
    os.symlink(elsewhere, tmp_path / ".good.old")
    with pytest.raises(DataError, match=r"\.good\.old: is in the way of the old copy"):
        pipeline.run(_cfg(sample_dir, good), log=_quiet)
    assert (elsewhere / "notes.txt").read_text() == "mine" and not (good / "notes.txt").exists()


def test_our_trash_is_removed_marker_last(good, tmp_path):
    """A trash left by a killed swap carries the marker until the very end, so it is recognised."""
    trash = tmp_path / ".good.trash"
    shutil.copytree(good, trash)
    out = output.DataSetOutput(str(good), _quiet)
    out.check()
    out.repair()
    assert not trash.exists() and problems(str(good)) == []


@pytest.mark.parametrize("damage", [
    "[" * 100000 + "]" * 100000,                                     # RecursionError in json
    '{"fingerprint": [], "splits": {}}',
    '{"fingerprint": {"flags": [1]}, "splits": {"train": {"shards": []}}}',
    '{"fingerprint": {}, "splits": {"train": {"shards": [{"tmp": 5}]}}}',
    '{"fingerprint": {}, "splits": {"train": {"shards": [], "consumed": "9"}}}',
])
def test_a_damaged_resume_state_starts_over_and_says_so(sample_dir, tmp_path, damage):
    out, staging = tmp_path / "o", tmp_path / ".o.staging"
    outdir.drop_marker(str(staging), "images")
    (staging / output.RESUME_NAME).write_text(damage)
    said = []
    pipeline.run(_cfg(sample_dir, out), log=said.append)
    assert any(line.startswith(f"ingest: starting over: {staging / output.RESUME_NAME} is damaged (")
               for line in said), said
    assert not staging.exists() and problems(str(out)) == []


def test_a_resume_state_of_the_wrong_types_is_named():
    state = {"fingerprint": {"flags": {}}, "splits": {"train": {
        "shards": [{"tmp": ".train-00000.tfrecord.tmp", "sha256": "ab", "count": 3, "bytes": 90}],
        **output.SplitTally().snapshot()}}}
    assert output.resume_state_problem(state) is None
    for field, value in (("consumed", -1), ("skipped", {"x": "1"}), ("age_histogram", [0]),
                         ("gender_counts", {"male": 1}), ("group_counts", {"race": [1]})):
        damaged = json.loads(json.dumps(state))
        damaged["splits"]["train"][field] = value
        assert output.resume_state_problem(damaged) == "split 'train': its counts are not counts", field
    assert output.resume_state_problem({**state, "splits": {"../x": {"shards": []}}}) == \
        "split '../x' is not a split with a list of shards"


@pytest.mark.parametrize("given", [".", "..", "/"])
def test_an_out_that_is_where_you_stand_is_refused_before_any_decoding(sample_dir, tmp_path, monkeypatch, given):
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    monkeypatch.setattr(images, "process_chunk", lambda *a: pytest.fail("an image was decoded"))
    with pytest.raises(DataError) as e:
        pipeline.run(_cfg(sample_dir, given), log=_quiet)
    assert str(e.value).startswith(f"--out {given}: is the current directory or holds it (")
    assert sorted(os.listdir(tmp_path)) == ["a"] and os.listdir(here) == []
