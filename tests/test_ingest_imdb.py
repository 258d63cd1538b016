"""The imdb route end to end: `ingest.sample --dataset imdb` writes the real
imdb.mat layout, and `python -m ingest` on it finds imdb.mat, keeps the known
counts, and with --split_by identity keeps every celeb_id in one split."""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from conftest import SAMPLE_IMAGE_SIZE, run_module
from ingest import pipeline, sample, split
from records import schema
from records.verify import problems
from storage.checksum import file_sha256

IMDB_N = 300
IMDB_SEED = 0


@pytest.fixture(scope="module")
def imdb_dir(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("imdb") / "imdb_crop")
    sample.generate(path, IMDB_N, IMDB_SEED, workers=1, dataset="imdb")
    return path


@pytest.fixture(scope="module")
def celeb_of(imdb_dir) -> dict[str, int]:
    """full_path -> celeb_id, read straight from imdb.mat with scipy (not via ingest)."""
    s = scipy.io.loadmat(os.path.join(imdb_dir, "imdb.mat"))["imdb"][0, 0]
    return {str(p[0]): int(c) for p, c in zip(s["full_path"][0], s["celeb_id"][0])}


def _ingest(src: str, *args: str, cwd: str | None = None) -> None:
    result = run_module("ingest", "--src", src, "--image_size", str(SAMPLE_IMAGE_SIZE),
                        "--workers", "2", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def random_shards(imdb_dir, tmp_path_factory) -> str:
    """Default flags and no --out, run in a scratch cwd: the default out is shards/imdb."""
    cwd = tmp_path_factory.mktemp("cwd")
    _ingest(imdb_dir, cwd=str(cwd))
    return str(cwd / "shards" / "imdb")


@pytest.fixture(scope="module")
def identity_shards(imdb_dir, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("identity") / "imdb")
    _ingest(imdb_dir, "--out", out, "--split_by", "identity")
    return out


def _celebs_by_split(directory: str, celeb_of: dict[str, int]) -> dict[str, set[int]]:
    """split -> celeb_ids of its records, read back from the shards with TensorFlow."""
    manifest = json.load(open(os.path.join(directory, "manifest.json")))
    out = {}
    for name, entry in manifest["splits"].items():
        keys = []
        for shard in entry["shards"]:
            for raw in tf.data.TFRecordDataset(os.path.join(directory, shard["file"])):
                ex = tf.io.parse_single_example(raw, schema.feature_spec())
                keys.append(ex[schema.KEY].numpy().decode())
        assert len(keys) == entry["count"]
        out[name] = {celeb_of[k] for k in keys}
    return out


def test_imdb_mat_has_the_real_structure(imdb_dir):
    assert not os.path.exists(os.path.join(imdb_dir, "wiki.mat"))
    mat = scipy.io.loadmat(os.path.join(imdb_dir, "imdb.mat"))
    assert [k for k in mat if not k.startswith("__")] == ["imdb"]
    imdb = mat["imdb"]
    assert imdb.shape == (1, 1)
    assert imdb.dtype.names == sample.IMDB_FIELDS == sample.WIKI_FIELDS + ("celeb_names", "celeb_id")
    s = imdb[0, 0]
    for field in sample.WIKI_FIELDS + ("celeb_id",):
        assert s[field].shape == (1, IMDB_N), field
    assert s["dob"].dtype == np.int32 and s["photo_taken"].dtype == np.uint16
    assert s["celeb_id"].dtype.kind == "u"
    names = [c[0] for c in s["celeb_names"][0]]
    assert s["celeb_names"].shape == (1, len(names)) and len(set(names)) == len(names)
    ids = s["celeb_id"][0].astype(int)
    assert ids.min() >= 1 and ids.max() == len(names)          # 1-based, every name used
    row_names = [c[0] if c.size else "" for c in s["name"][0]]
    assert all(nm == names[i - 1] for nm, i in zip(row_names, ids) if nm)
    nameless = [i for nm, i in zip(row_names, ids) if not nm]
    assert nameless and set(nameless) & {i for nm, i in zip(row_names, ids) if nm}
    assert max(collections.Counter(ids.tolist()).values()) >= 3  # several photos per celeb


def test_imdb_sample_has_the_same_rows_and_images_as_wiki(imdb_dir, tmp_path):
    wiki = str(tmp_path / "wiki_crop")
    sample.generate(wiki, IMDB_N, IMDB_SEED, workers=1)
    a = scipy.io.loadmat(os.path.join(wiki, "wiki.mat"))["wiki"][0, 0]
    b = scipy.io.loadmat(os.path.join(imdb_dir, "imdb.mat"))["imdb"][0, 0]
    for field in ("dob", "photo_taken", "gender", "face_score", "second_face_score"):
        np.testing.assert_array_equal(a[field], b[field], err_msg=field)
    assert [c[0] for c in a["full_path"][0]] == [c[0] for c in b["full_path"][0]]
    for r in sample.build_rows(IMDB_N, IMDB_SEED)[:40]:
        path = os.path.join(wiki, r["full_path"])
        if os.path.exists(path):
            assert open(path, "rb").read() == open(os.path.join(imdb_dir, r["full_path"]), "rb").read()


@pytest.mark.slow
def test_cli_dataset_flag(tmp_path):
    ok = run_module("ingest.sample", "--out", str(tmp_path / "i"), "--n", "120", "--dataset", "imdb")
    assert ok.returncode == 0, ok.stderr
    assert "imdb.mat" in ok.stdout and f"keeps {sample.expected_counts(120)['kept']}" in ok.stdout
    assert scipy.io.loadmat(tmp_path / "i" / "imdb.mat")["imdb"][0, 0]["celeb_id"].shape == (1, 120)
    bad = run_module("ingest.sample", "--out", str(tmp_path / "x"), "--n", "120", "--dataset", "lfw")
    assert bad.returncode != 0 and "--dataset" in bad.stderr
    with pytest.raises(ValueError, match="dataset"):
        sample.generate(str(tmp_path / "y"), 120, dataset="lfw")


def test_default_ingest_of_imdb_keeps_the_known_counts(random_shards, imdb_dir):
    expected = sample.expected_counts(IMDB_N)
    manifest = json.load(open(os.path.join(random_shards, "manifest.json")))
    assert manifest["source"] == {"name": "imdb_wiki", "dataset": "imdb", "read": "imdb.mat",
                                  "entries": IMDB_N,
                                  "fingerprint": file_sha256(os.path.join(imdb_dir, "imdb.mat"))}
    assert manifest["flags"]["split_by"] == "random"
    assert [{k: c[k] for k in ("step", "removed", "remaining")} for c in manifest["cleaning"]] == \
        expected["cleaning"]
    assert manifest["kept"] == expected["kept"] and manifest["skipped"] == expected["skipped"]
    assert sum(manifest["splits"][s]["count"] for s in schema.SPLITS) == expected["written"]
    assert manifest["gender_counts"]["unknown"] == expected["unknown_gender"]
    assert problems(random_shards) == []


def test_identity_split_keeps_each_celeb_id_in_one_split(identity_shards, random_shards, celeb_of):
    manifest = json.load(open(os.path.join(identity_shards, "manifest.json")))
    assert manifest["flags"]["split_by"] == "identity"
    assert sum(manifest["splits"][s]["count"] for s in schema.SPLITS) == \
        sample.expected_counts(IMDB_N)["written"]
    by_split = _celebs_by_split(identity_shards, celeb_of)
    assert all(by_split[s] for s in schema.SPLITS)
    for a, b in ((a, b) for i, a in enumerate(schema.SPLITS) for b in schema.SPLITS[i + 1:]):
        assert not by_split[a] & by_split[b], (a, b)
    # the same check fails on a random split of the same sample, so it can fail
    rand = _celebs_by_split(random_shards, celeb_of)
    assert any(rand[a] & rand[b] for i, a in enumerate(schema.SPLITS) for b in schema.SPLITS[i + 1:])


def test_identity_groups_by_celeb_id_not_by_name(imdb_dir):
    """Nameless rows carry their celeb's id: grouped by celeb_id they stay with
    their celeb; grouped by name (the wiki rule) some of them would not."""
    _, _, kept, _ = pipeline.load_and_clean(pipeline.Config(src=imdb_dir))
    ids = kept["celeb_id"].to_numpy()

    def leaked(assignment):
        return [c for c in set(ids) if len(set(assignment[ids == c])) > 1]

    assert leaked(split.assign(kept, by="identity", seed=0)) == []
    assert leaked(split.assign(kept.assign(identity=kept["name"]), by="identity", seed=0))
