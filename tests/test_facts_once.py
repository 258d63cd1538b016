"""Facts the code once wrote in several places are written in one module now: each
literal below occurs in exactly one library file, its home (tests, bench and docs aside)."""

from __future__ import annotations

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("entry", "errors", "storage", "faces", "ingest", "model", "records", "reports", "serving", "trainer")

# literal -> the one file that defines it
ONCE = {
    '= "epsilon_error"': "model/metric_names.py",      # the metric names table
    'f"cs{': "model/metric_names.py",
    '"val_"': "model/metric_names.py",
    "+ 0.5": "records/schema.py",                      # round_age: floor(x + 0.5)
    "tf.image.resize(": None,                          # faces.resize.resize_pixels is the one resize
    "ops.image.resize(": "faces/resize.py",
    "= 0.4": "faces/facebox.py",                     # the crop margin
    '"real"': "records/schema.py",                     # the label kinds
    '"apparent"': "records/schema.py",
    "= 224": "records/schema.py",                      # VGG-Face's input, ingest's stored size
    "= 366": "ingest/sources/imdb_wiki.py",            # Matlab datenum offset
    ".read(chunk)": "storage/checksum.py",             # hashing a file
    'rpartition(":")': "records/service/address.py",   # HOST:PORT
    '"<QI"': "records/wire.py",                        # TFRecord frame headers
    "def count_records": "records/service/pipeline.py",
    "DEFAULT_OPS if": "records/augment_ops.py",        # augment-op resolution
    '("flip", "crop"': "records/augment_ops.py",       # the op names
    '"conv5_1", "all"': "model/variants.py",           # the depths that can train
    "input_size=32": "model/variants.py",              # the variants
    "REGISTERED = (": "model/families.py",             # the registry of model families
    "MobileNetV3Small(": "model/mobilenet.py",         # the mobilenet family's network
    "= 4096\n": "records/schema.py",                  # the shuffle buffer
    "JPEG_QUALITY = 95": "faces/encoding.py",           # ingest's JPEG quality, prediction's too
    '".jpg", ".jpeg", ".png", ".bmp"': "faces/pixels.py",   # what counts as an image file
    "DEFAULT_THRESHOLDS = ": "trainer/config.py",      # the age gate every report shows
    "MIN_N = ": "ingest/sample_contract.py",           # what the synthetic samples share
    "def age_level": "ingest/sample_contract.py",
    "rng.integers(-12, 13": "ingest/sample_contract.py",
    "MIN_FACE = 24": "faces/detect.py",               # the detector's smallest face
    "int = 256": "trainer/config.py",                  # batch sizes: the flags read TrainConfig
}


def _library_files():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("literal, home", sorted(ONCE.items()))
def test_the_fact_is_written_once(literal, home):
    found = [str(p.relative_to(ROOT)) for p in _library_files() if literal in p.read_text()]
    assert found == ([home] if home else []), found


def test_no_library_module_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in _library_files()
            if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}
