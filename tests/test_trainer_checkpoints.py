"""trainer.checkpoints: checkpoints found from their files, a damaged one skipped."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf

from trainer import checkpoints
from trainer.run_dir import RunDirError


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
