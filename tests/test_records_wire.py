"""records.wire writes what TensorFlow reads: the same Example, the same TFRecord frames."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from records import schema, wire
from records.writer import ShardedWriter


def test_encode_example_is_the_example_tensorflow_would_write():
    ours = schema.encode_example(image=b"\xff\xd8jpeg-bytes\x00", image_format=b"jpeg", height=224,
                                 width=224, age=37, gender=-1, face_score=-3.25, key="17/1_1981-05-05_2009.jpg",
                                 age_mean=36.75, age_std=4.5, real_age=40)
    reference = tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff\xd8jpeg-bytes\x00"])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[224])),
        "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[224])),
        "age": tf.train.Feature(int64_list=tf.train.Int64List(value=[37])),
        "gender": tf.train.Feature(int64_list=tf.train.Int64List(value=[-1])),
        "face_score": tf.train.Feature(float_list=tf.train.FloatList(value=[-3.25])),
        "key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"17/1_1981-05-05_2009.jpg"])),
        "age_mean": tf.train.Feature(float_list=tf.train.FloatList(value=[36.75])),
        "age_std": tf.train.Feature(float_list=tf.train.FloatList(value=[4.5])),
        "real_age": tf.train.Feature(int64_list=tf.train.Int64List(value=[40])),
        "race": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b""])),
    }))
    assert tf.train.Example.FromString(ours) == reference
    parsed = tf.io.parse_single_example(ours, schema.feature_spec())
    assert int(parsed["gender"]) == -1 and int(parsed["age"]) == 37
    assert float(parsed["face_score"]) == -3.25
    assert float(parsed["age_mean"]) == 36.75 and float(parsed["age_std"]) == 4.5
    assert int(parsed["real_age"]) == 40


def test_varints_cover_the_int64_range():
    for value in (0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -(2**63)):
        example = wire.example({"v": wire.int64_feature(value)})
        assert tf.train.Example.FromString(example).features.feature["v"].int64_list.value[0] == value


def test_sharded_writer_frames_read_back_by_tfrecorddataset(tmp_path):
    records = [schema.encode_feature_example(features=np.arange(i + 1, dtype=np.float16).tobytes(),
                                             age=i % 101, gender=i % 2, key=f"k{i}".encode())
               for i in range(50)]
    writer = ShardedWriter(str(tmp_path), "train", shard_bytes=400)
    for r in records:
        writer.write(r)
    entry = writer.finish()
    assert len(entry["shards"]) > 1 and entry["count"] == 50
    files = [str(tmp_path / s["file"]) for s in entry["shards"]]
    # TFRecordDataset checks both CRCs of every frame: a wrong one fails the read.
    read = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(files)]
    assert read == records
    from storage.checksum import file_sha256
    assert [file_sha256(f) for f in files] == [s["sha256"] for s in entry["shards"]]


def test_masked_crc_matches_the_tfrecord_reference_value():
    # crc32c("123456789") = 0xE3069283 (RFC 3720); TFRecord masks it: rotate right 15, add 0xa282ead8.
    crc = 0xE3069283
    assert wire.masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_count_frames_counts_from_the_headers_and_refuses_a_cut_file(tmp_path):
    path = tmp_path / "x.tfrecord"
    records = [b"a" * 5, b"", b"b" * 300]
    path.write_bytes(b"".join(wire.frame(r) for r in records))
    with open(path, "rb") as f:
        assert wire.count_frames(f, path.stat().st_size) == 3
    cut = path.stat().st_size - 2                 # the last frame's footer is cut short
    with open(path, "rb") as f:
        with pytest.raises(wire.CorruptRecord, match=r"^record #2 at byte offset 37: truncated \(frame says 300"):
            wire.count_frames(f, cut)
