"""TFRecord framing and `tf.train.Example` encoding without importing TensorFlow.

Ingest's writer process only ever *writes* records. Importing TensorFlow there
costs ~0.85 GB of resident memory and seconds of a core that the decode workers
need, for two tiny jobs: a protobuf message of a few scalar fields and the
TFRecord frame around it. Both formats are small and frozen, so they are encoded
here; `google-crc32c` supplies the CRC-32C checksum TFRecord frames use. Readers
keep using TensorFlow (`tf.data.TFRecordDataset`, `tf.io.parse_example`), and
the tests check that they read these bytes back exactly.

TFRecord frame: uint64 length, uint32 masked crc32c(length), data, uint32 masked crc32c(data).
Example proto:  Example{1: Features{1: map<string, Feature>}}, Feature{1: BytesList,
                2: FloatList, 3: Int64List}, each list {1: repeated value}.
"""

from __future__ import annotations

import struct

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record as it is laid out in a .tfrecord file."""
    length = struct.pack("<Q", len(record))
    return (length + struct.pack("<I", masked_crc32c(length)) + record
            + struct.pack("<I", masked_crc32c(record)))


class CorruptRecord(Exception):
    """A .tfrecord file stops being valid at record `index`, whose frame starts at
    byte `offset` (the records before it are intact)."""

    def __init__(self, index: int, offset: int, why: str):
        super().__init__(f"record #{index} at byte offset {offset}: {why}")
        self.index, self.offset, self.why = index, offset, why


def _frames(f):
    """Walk the frames of an open .tfrecord file: yield (index, offset, length) of each,
    its header checked, with `f` at the start of its data; the caller reads or skips
    the data and its 4-byte footer before the next one."""
    index = offset = 0
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise CorruptRecord(index, offset, f"truncated frame header ({len(header)} of 12 bytes)")
        length, crc = struct.unpack("<QI", header)
        if masked_crc32c(header[:8]) != crc:
            raise CorruptRecord(index, offset, "length checksum mismatch")
        yield index, offset, length
        index += 1
        offset += 16 + length


def _truncated(index: int, offset: int, length: int) -> CorruptRecord:
    return CorruptRecord(index, offset, f"truncated (frame says {length} bytes of data)")


def read_frames(f):
    """Yield the records of an open .tfrecord file, checking both CRCs of every
    frame; raises CorruptRecord naming the first bad record and where it starts."""
    for index, offset, length in _frames(f):
        data = f.read(length)
        footer = f.read(4)
        if len(data) < length or len(footer) < 4:
            raise _truncated(index, offset, length)
        if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
            raise CorruptRecord(index, offset, "data checksum mismatch")
        yield data


def count_frames(f, size: int) -> int:
    """The records of an open .tfrecord file of `size` bytes, from its frame headers
    alone (the data is skipped, its CRC unchecked: for a file a sha256 vouches for);
    raises CorruptRecord when a frame runs past the end."""
    count = 0
    for index, offset, length in _frames(f):
        end = offset + 16 + length
        if end > size:
            raise _truncated(index, offset, length)
        f.seek(end)
        count += 1
    return count


# --- protobuf wire format: only what tf.train.Example needs -------------------

def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64          # int64 negatives are 10-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def bytes_feature(value: bytes) -> bytes:
    return _field(1, _field(1, value))                                   # Feature.bytes_list


def float_feature(value: float) -> bytes:
    return _field(2, _field(1, struct.pack("<f", value)))                # packed FloatList


def int64_feature(value: int) -> bytes:
    return _field(3, _field(1, _varint(int(value))))                     # packed Int64List


def example(features: dict[str, bytes]) -> bytes:
    """A serialized Example from {name: encoded Feature} (see the *_feature helpers)."""
    entries = b"".join(_field(1, _field(1, name.encode()) + _field(2, feature))
                       for name, feature in features.items())
    return _field(1, entries)
