"""trainer.checkpoints: checkpoints found from their files, a damaged one skipped."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf

from storage.run_dir import RunDirError
from trainer import checkpoints


def saved(directory: str, epochs: list[int]) -> tf.train.Checkpoint:
    """A checkpoint of one variable saved at `epochs` by the manager, its value = the epoch."""
    value = tf.Variable(0.0)
    ckpt = tf.train.Checkpoint(value=value)
    manager = tf.train.CheckpointManager(ckpt, directory, max_to_keep=2)
    for epoch in epochs:
        value.assign(float(epoch))
        manager.save(checkpoint_number=epoch)
    return ckpt


def flip_a_byte(path: str) -> None:
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("damage", ["lost", "empty", "garbled"])
def test_a_damaged_index_does_not_hide_the_checkpoints(tmp_path, damage):
    directory = str(tmp_path / "checkpoints")
    saved(directory, [1, 2, 3])
    index = os.path.join(directory, checkpoints.INDEX_NAME)
    if damage == "lost":
        os.remove(index)
    else:
        open(index, "w").write("" if damage == "empty" else "model_checkpoint_path: {{{\n")
    assert checkpoints.numbers(directory) == [3, 2]
    checkpoints.write_index(directory)
    assert tf.train.latest_checkpoint(directory) == checkpoints.path(directory, 3)
    # A manager built on the rewritten index prunes the old checkpoints as usual.
    ckpt = saved(directory, [4, 5])
    assert checkpoints.numbers(directory) == [5, 4]
    assert checkpoints.restore(ckpt, directory, log=lambda line: None) == 5
    assert float(ckpt.value.numpy()) == 5.0


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_and_says_so(tmp_path):
    directory = str(tmp_path / "checkpoints")
    ckpt = saved(directory, [1, 2])
    flip_a_byte(checkpoints.path(directory, 2) + ".data-00000-of-00001")
    lines = []
    assert checkpoints.restore(ckpt, directory, log=lines.append) == 1
    assert float(ckpt.value.numpy()) == 1.0
    assert lines[0].startswith(f"Checkpoint {checkpoints.path(directory, 2)} is unreadable (")
    assert "Checksum does not match" in lines[0] and lines[0].endswith("falling back to the previous one")
    assert lines[1] == "Restored ckpt-1 instead of ckpt-2: epochs after 1 are lost and will be trained again"


def test_no_readable_checkpoint_is_one_line(tmp_path):
    directory = str(tmp_path / "checkpoints")
    ckpt = saved(directory, [1, 2])
    for n in (1, 2):
        flip_a_byte(checkpoints.path(directory, n) + ".data-00000-of-00001")
    with pytest.raises(RunDirError) as e:
        checkpoints.restore(ckpt, directory, log=lambda line: None)
    assert str(e.value) == (f"{directory}: no readable checkpoint (ckpt-2, ckpt-1 failed); restore the files "
                            f"from a backup, or start a new run with another --model_dir")


def test_a_killed_save_leaves_only_what_remove_partial_deletes(tmp_path):
    directory = str(tmp_path / "checkpoints")
    saved(directory, [1])
    os.makedirs(os.path.join(directory, "ckpt-2_temp"))
    open(os.path.join(directory, "ckpt-2_temp", "part-00000-of-00001.data-00000-of-00001"), "w").close()
    open(os.path.join(directory, "checkpoint.tmp1a2b3c"), "w").close()
    open(os.path.join(directory, "ckpt-3.index"), "w").close()       # index without data: not a checkpoint
    assert checkpoints.numbers(directory) == [1]
    assert checkpoints.remove_partial(directory) == ["checkpoint.tmp1a2b3c", "ckpt-2_temp"]
    assert sorted(os.listdir(directory)) == ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index",
                                             "ckpt-3.index"]


@pytest.mark.parametrize("listed", ["absolute", "relative"])
def test_an_index_naming_another_runs_checkpoints_never_leads_there(tmp_path, listed):
    """An index (crafted or copied) that names checkpoints outside this directory is
    rewritten from this directory's own files, or removed when there are none, so the
    manager never prunes another run's checkpoints."""
    other = str(tmp_path / "other" / "checkpoints")
    saved(other, [5, 6])
    directory = str(tmp_path / "run" / "checkpoints")
    os.makedirs(directory)
    names = [checkpoints.path(other, n) if listed == "absolute" else
             os.path.join("..", "..", "other", "checkpoints", f"ckpt-{n}") for n in (5, 6)]
    index = os.path.join(directory, checkpoints.INDEX_NAME)
    open(index, "w").write(f'model_checkpoint_path: "{names[1]}"\n' +
                           "".join(f'all_model_checkpoint_paths: "{n}"\n' for n in names))
    checkpoints.write_index(directory)
    assert not os.path.exists(index)
    saved(directory, [1, 2, 3])                   # three saves: the manager prunes to two
    assert checkpoints.numbers(other) == [6, 5]
    assert checkpoints.numbers(directory) == [3, 2]
    # With checkpoints of its own, the index lists exactly those, by plain name.
    open(index, "a").write(f'all_model_checkpoint_paths: "{names[0]}"\n')
    checkpoints.write_index(directory)
    listed_paths = [line.split('"')[1] for line in open(index) if '"' in line]
    assert listed_paths == ["ckpt-3", "ckpt-2", "ckpt-3"]
    saved(directory, [4, 5])
    assert checkpoints.numbers(other) == [6, 5]


def test_a_link_named_like_a_checkpoint_is_not_one(tmp_path):
    other = str(tmp_path / "other")
    saved(other, [7])
    directory = str(tmp_path / "run")
    saved(directory, [1])
    for suffix in (".index", ".data-00000-of-00001"):
        os.symlink(checkpoints.path(other, 7) + suffix, checkpoints.path(directory, 7) + suffix)
    assert checkpoints.numbers(directory) == [1]
