"""Session fixtures shared by every test module: a small synthetic wiki_crop
sample and the shards ingest makes of it (built once per session: ~5 s), and the
shards of a small synthetic APPA-REAL sample (apparent ages with their spreads)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from ingest import sample, sample_sources

SAMPLE_N = 400          # rows in the sample's wiki.mat
SAMPLE_SEED = 0
SAMPLE_IMAGE_SIZE = 32  # --image_size of sample_shards
SAMPLE_SHARD_MB = 0.05  # small enough that train has several shards
APPA_N = 300            # faces in the APPA-REAL sample (train, valid and test)


def run_module(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """`python -m <args>` in a subprocess (ingest's decode pool must fork from a
    process that has not imported TensorFlow, which pytest's has)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kwargs)


def free_ports(n: int) -> list[int]:
    """`n` distinct loopback ports that were free a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def read_records(directory: str) -> dict[str, list[dict]]:
    """split -> parsed image records, straight from the shard files the manifest lists."""
    import tensorflow as tf      # here, not at the top: ingest tests fork from this process

    from records import schema

    manifest = json.load(open(os.path.join(directory, "manifest.json")))
    out = {}
    for name, entry in manifest["splits"].items():
        out[name] = []
        for shard in entry["shards"]:
            for raw in tf.data.TFRecordDataset(os.path.join(directory, shard["file"])):
                ex = tf.io.parse_single_example(raw, schema.feature_spec())
                out[name].append({k: v.numpy() for k, v in ex.items()})
    return out


@pytest.fixture(scope="session")
def sample_rows() -> list[dict]:
    """Ground truth of sample_dir, one dict per wiki.mat row (see ingest.sample.build_rows):
    category (the cleaning step that removes it, or "kept"), quirk, full_path, age, ..."""
    return sample.build_rows(SAMPLE_N, SAMPLE_SEED)


@pytest.fixture(scope="session")
def sample_expected() -> dict:
    """ingest.sample.expected_counts(SAMPLE_N): what default ingest reports on sample_dir."""
    return sample.expected_counts(SAMPLE_N)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> str:
    """A wiki_crop-format folder (wiki.mat + 00/..99/) of SAMPLE_N rows."""
    path = str(tmp_path_factory.mktemp("sample") / "wiki_crop")
    sample.generate(path, SAMPLE_N, SAMPLE_SEED, workers=1)
    return path


@pytest.fixture(scope="session")
def sample_shards(sample_dir, tmp_path_factory) -> str:
    """sample_dir ingested with default cleaning at SAMPLE_IMAGE_SIZE px JPEG,
    SAMPLE_SHARD_MB shards (train >= 2 shards), random split, seed 0."""
    out = str(tmp_path_factory.mktemp("shards") / "wiki")
    result = run_module("ingest", "--src", sample_dir, "--out", out,
                        "--image_size", str(SAMPLE_IMAGE_SIZE),
                        "--shard_mb", str(SAMPLE_SHARD_MB), "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def appa_real_shards(tmp_path_factory) -> str:
    """A synthetic appa-real-release/ of APPA_N faces (every age_std > 0) ingested at
    SAMPLE_IMAGE_SIZE px: manifest label "apparent", APPA-REAL's own splits."""
    root = tmp_path_factory.mktemp("appa")
    sample_sources.generate("appa_real", str(root / "appa-real-release"), APPA_N)
    out = str(root / "appa_real")
    result = run_module("ingest", "--src", str(root / "appa-real-release"), "--out", out,
                        "--image_size", str(SAMPLE_IMAGE_SIZE), "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return out
