"""The pixel contract (Resize layer, one JPEG decoder, EXIF, 16-bit) and batch
prediction (`python -m serving.predict PATH... --jsonl`): every bad-file kind is
its line's error, --jsonl resumes, and a record's bytes predict as they evaluate."""

from __future__ import annotations

import fcntl
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE_IMAGE_SIZE, run_module

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INPUT_SIZE = 48   # the test model's input: not the shards' 32 px, so the Resize layer works


def build_run(run_dir: str, records_dir: str, seed: int = 0, gender: bool = False) -> str:
    """A run directory with a random tiny model whose age logits are spread (so
    different faces get clearly different distributions)."""
    import keras

    import model
    from storage.run_dir import RunDir

    keras.utils.set_random_seed(seed)
    net = model.build_age_model(variant="tiny", input_size=INPUT_SIZE, gender=gender)
    layer = net.get_layer("predictions")
    layer.kernel.assign(layer.kernel * 40.0)
    os.makedirs(run_dir, exist_ok=True)
    net.save(os.path.join(run_dir, "best.keras"))
    RunDir(run_dir).write_info({"records": records_dir, "image_size": SAMPLE_IMAGE_SIZE,
                                "input_size": INPUT_SIZE, "variant": "tiny",
                                "task": "age_gender" if gender else "age"})
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(sample_shards, tmp_path_factory) -> str:
    return build_run(str(tmp_path_factory.mktemp("predict_run") / "run"), sample_shards)


def predict(run_dir, *args, cwd=REPO, timeout=180):
    return run_module("serving.predict", f"--model_dir={run_dir}", *args, cwd=cwd, timeout=timeout)


def read_lines(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def jpeg_bytes(pixels: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG header claiming width x height RGB pixels (400 megapixels by default)
    followed by a few bytes of data: what a decompression bomb looks like before decoding."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- pixel contract

def test_resize_layer_is_the_models_first_layer_and_an_identity_at_its_size():
    import keras

    import model

    net = model.build_age_model(variant="tiny", input_size=INPUT_SIZE)
    assert net.input_shape == (None, None, None, 3) and model.input_size(net) == INPUT_SIZE
    rng = np.random.default_rng(1)
    at_size = rng.integers(0, 256, (2, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(net.get_layer("resize")(at_size)), at_size)
    other = rng.integers(0, 256, (2, 70, 52, 3), dtype=np.uint8)
    resized = np.asarray(model.resize_pixels(other, INPUT_SIZE))
    assert resized.shape == (2, INPUT_SIZE, INPUT_SIZE, 3) and resized.dtype == np.uint8
    # The model on any size = the model on the same op's output at its own size.
    np.testing.assert_allclose(np.asarray(net(other)), np.asarray(net(resized)), atol=1e-6)
    # The size survives a save/load (in the layer's config).
    config = keras.saving.serialize_keras_object(net.get_layer("resize"))
    assert config["config"]["size"] == INPUT_SIZE


def test_the_readers_jpeg_decoder_gives_pils_pixels():
    import tensorflow as tf

    from records.reader import JPEG_DCT_METHOD

    data = jpeg_bytes(np.random.default_rng(3).integers(0, 256, (61, 47, 3), dtype=np.uint8))
    ours = tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT_METHOD).numpy()
    assert np.array_equal(ours, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    default = tf.io.decode_jpeg(data, channels=3).numpy()
    assert not np.array_equal(default, ours)   # why the method is named: the default differs


def test_exif_orientation_is_applied_in_ingest_and_in_prediction(tmp_path):
    from ingest.images import load
    from faces.pixels import read_rgb

    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :20] = 255                               # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6                                   # "rotate 90 degrees clockwise to view"
    path = tmp_path / "sideways.jpg"
    path.write_bytes(jpeg_bytes(pixels, exif=exif))
    stored = Image.open(path)
    upright = np.asarray(stored.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert upright.shape == (60, 40, 3) and upright[:20].mean() > 200   # the band is now on top
    assert np.array_equal(read_rgb(str(path)), upright)
    assert np.array_equal(np.asarray(load(str(path), 60)),
                          np.asarray(Image.fromarray(upright).resize((60, 60), Image.BILINEAR)))


def test_a_16_bit_grey_image_is_grey_in_ingest_and_in_prediction(tmp_path):
    from ingest.images import load
    from faces.pixels import read_rgb

    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((30, 30), 32896, np.uint16)).save(path)   # 32896 / 257 = 128
    assert Image.open(path).mode.startswith("I")
    assert np.all(read_rgb(str(path)) == 128)
    assert np.all(np.asarray(load(str(path), 30)) == 128)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    """Over the limit: PIL refuses to open (over twice the limit) or we refuse before load()."""
    from ingest.images import UNDECODABLE, SkipImage, load
    from faces.pixels import PixelError, read_rgb

    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    with pytest.raises(PixelError, match="bomb.png: an image, more than the 89478485 pixel limit"):
        read_rgb(str(path))
    with pytest.raises(SkipImage) as e:
        load(str(path), 32)
    assert e.value.reason == UNDECODABLE
    near = tmp_path / "near.png"
    near.write_bytes(bomb_png(10000, 9000))     # over the limit, under PIL's own refusal
    with pytest.raises(PixelError, match="near.png: 10000x9000 pixels, more than the 89478485 pixel limit"):
        read_rgb(str(near))


# ----------------------------------------------------------------------------- listing and resume

def test_paths_expand_files_folders_and_lists_in_order_once(tmp_path):
    from serving.predict import expand_paths

    (tmp_path / "d" / "b").mkdir(parents=True)
    for name in ("d/z.jpg", "d/a.PNG", "d/b/c.jpeg", "d/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'one.jpg'}\n\n{tmp_path / 'd'}\n")
    d = str(tmp_path / "d")
    assert expand_paths([d, f"@{listing}", os.path.join(d, "z.jpg")]) == [
        os.path.join(d, "a.PNG"), os.path.join(d, "z.jpg"), os.path.join(d, "b", "c.jpeg"),
        str(tmp_path / "one.jpg"), d]


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "large"])
def test_a_list_that_is_a_fifo_a_device_or_too_large_is_refused_unread(tmp_path, kind, monkeypatch):
    from serving import predict

    listing = tmp_path / "list.txt"
    if kind == "fifo":
        os.mkfifo(listing)                  # opening it for reading would wait for a writer
    elif kind == "dev_zero":
        listing = "/dev/zero"                # never ends
    else:
        listing.write_text("a.jpg\n" * 10)
        monkeypatch.setattr(predict, "MAX_LIST_BYTES", 59)
    with pytest.raises(predict.PredictError) as e:
        predict.expand_paths([f"@{listing}"])
    says = "60 bytes, more than the 59" if kind == "large" else "not a regular file"
    assert str(e.value).startswith(f"@{listing}: cannot read the list ({says}")


def test_a_long_foreign_file_is_refused_at_its_first_line_without_reading_the_rest(tmp_path, monkeypatch):
    import io
    from serving import output
    from serving.predict import PredictError, open_output

    class Counting(io.BytesIO):
        taken = 0

        def read(self, size=-1):
            data = super().read(size)
            Counting.taken += len(data)
            return data

        def readline(self, size=-1):
            data = super().readline(size)
            Counting.taken += len(data)
            return data

    monkeypatch.setattr(output, "MAX_LINE_BYTES", 1000)
    with pytest.raises(PredictError, match="big.jsonl: line 1 is not a prediction line"):
        output.resume_output(Counting(b"x" * 50000 + b"\n" + b"y" * 100), str(tmp_path / "big.jsonl"))
    assert Counting.taken <= 1001
    ours = tmp_path / "ours.jsonl"
    ours.write_bytes(TORN)
    from storage import outdir
    outdir.write_mark(output.mark_path(str(ours)), output.MARK_KIND)     # a file it started: marked
    assert open_output(str(ours))[1] == {"a.jpg"} and ours.read_bytes() == TORN[:TORN.index(b"\n") + 1]


def test_the_pipeline_does_not_autotune(tmp_path):
    """Autotuning's model thread made deleting the iterator wait out its sleep period
    (seconds of idle tail per run); the pipeline sets its parallelism itself."""
    from serving.predict import PredictConfig, make_pipeline

    for detect in (True, False):
        pipeline = make_pipeline([str(tmp_path / "a.jpg")], INPUT_SIZE, PredictConfig(detect=detect))
        assert pipeline.options().autotune.enabled is False


def test_resume_cuts_a_torn_line_and_refuses_a_foreign_file(tmp_path):
    from serving.predict import PredictError, open_output

    from storage import outdir

    out = tmp_path / "preds.jsonl"
    out.write_text('{"file": "a.jpg", "faces": [], "error": null}\n{"file": "b.jpg", "fa')
    outdir.write_mark(str(tmp_path / ".preds.jsonl.dex-age"), "predictions")     # a file predict started
    handle, done = open_output(str(out))
    assert done == {"a.jpg"}
    assert out.read_text() == '{"file": "a.jpg", "faces": [], "error": null}\n'
    handle.write(b'{"file": "b.jpg", "faces": [], "error": null}\n')   # appends after the cut
    handle.close()
    assert open_output(str(out))[1] == {"a.jpg", "b.jpg"}
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text("my notes\n")
    with pytest.raises(PredictError, match="notes.jsonl: line 1 is not a prediction line"):
        open_output(str(foreign))
    assert foreign.read_text() == "my notes\n"
    assert open_output(str(tmp_path / "new" / "preds.jsonl"))[1] == set()


TORN = b'{"file": "a.jpg", "faces": [], "error": null}\n{"file": "b.jpg", "fa'


def test_a_file_in_use_is_refused_before_a_byte_of_it_is_cut(tmp_path):
    """A live writer holds the lock mid-line: a second open is refused and the
    half-written line is still there."""
    from serving.predict import PredictError, open_output

    out = tmp_path / "preds.jsonl"
    out.write_bytes(TORN)
    with open(out, "ab") as live:
        fcntl.flock(live, fcntl.LOCK_EX)
        with pytest.raises(PredictError) as refused:
            open_output(str(out))
        assert str(refused.value) == (f"{out}: another serving.predict is writing it; wait for it or "
                                      f"pass another --jsonl")
        assert out.read_bytes() == TORN


@pytest.mark.slow
def test_predict_on_an_output_in_use_is_one_line_and_changes_nothing(tiny_run, tmp_path):
    out = tmp_path / "preds.jsonl"
    out.write_bytes(TORN)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg_bytes(np.zeros((30, 30, 3), np.uint8)))
    with open(out, "ab") as live:
        fcntl.flock(live, fcntl.LOCK_EX)
        result = predict(tiny_run, "--no_detect", f"--jsonl={out}", str(photo))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {out}: another serving.predict is writing it; wait for it or pass another --jsonl")
    assert out.read_bytes() == TORN


def test_any_exception_in_one_files_work_is_its_error_and_the_others_come_out(tmp_path, monkeypatch):
    """A reader raising RuntimeError on one file and the detector raising on another
    (as cv2.error does on a damaged image): two error results, the third file's faces."""
    import keras

    import model
    from serving import faces, predict

    names = ["a.jpg", "b.jpg", "c.jpg"]
    for name, size in zip(names, (60, 64, 60)):   # b.jpg's size marks it for the detector
        (tmp_path / name).write_bytes(jpeg_bytes(np.full((size, size, 3), 100, np.uint8)))
    real_read = predict.read_rgb

    def read(path):
        if path.endswith("a.jpg"):
            raise RuntimeError("broken\nstream")
        return real_read(path)

    def detect(rgb, detector, min_face):
        if rgb.shape[0] == 64:
            raise ValueError("detector failed")
        return [faces.Face((10, 10, 30, 30), None)]

    monkeypatch.setattr(predict, "read_rgb", read)
    monkeypatch.setattr(faces, "find_faces", detect)

    keras.utils.set_random_seed(0)
    age_model = predict.AgeModel(model.build_age_model(variant="tiny", input_size=INPUT_SIZE))
    config = predict.PredictConfig(batch_size=2)
    results = list(predict.predict_files(age_model, [str(tmp_path / n) for n in names], config))
    assert [os.path.basename(r["file"]) for r in results] == names
    a, b, c = results
    assert a["error"] == f"{tmp_path / 'a.jpg'}: could not be processed (RuntimeError: broken stream)"
    assert b["error"] == f"{tmp_path / 'b.jpg'}: could not be processed (ValueError: detector failed)"
    assert a["faces"] == b["faces"] == []
    assert c["error"] is None and [f["box"] for f in c["faces"]] == [[10, 10, 30, 30]]


# ----------------------------------------------------------------------------- end to end

def record_bytes(shards: str, split: str, n: int) -> list[tuple[str, bytes]]:
    """The first n records of a split: (key, stored JPEG bytes)."""
    import tensorflow as tf

    import records
    from records import schema

    manifest = records.read_manifest(shards)
    files = [os.path.join(shards, s["file"]) for s in manifest["splits"][split]["shards"]]
    out = []
    for raw in tf.data.TFRecordDataset(files).take(n):
        ex = tf.train.Example.FromString(raw.numpy())
        feature = ex.features.feature
        out.append((feature[schema.KEY].bytes_list.value[0].decode(),
                    feature[schema.IMAGE_ENCODED].bytes_list.value[0]))
    return out


@pytest.mark.slow
def test_a_records_bytes_predict_as_its_record_evaluates(tiny_run, sample_shards, tmp_path):
    """Training/evaluation decode with TensorFlow and resize inside the model; prediction
    decodes with PIL and resizes in its pipeline: the same probabilities."""
    import keras

    import model  # noqa: F401
    import records

    n = 12
    stored = record_bytes(sample_shards, "test", n)
    paths = []
    for i, (_, data) in enumerate(stored):
        paths.append(str(tmp_path / f"record{i:02d}.jpg"))
        with open(paths[-1], "wb") as f:
            f.write(data)
    out = tmp_path / "preds.jsonl"
    result = predict(tiny_run, "--no_detect", "--probs", "--batch_size=5", f"--jsonl={out}", *paths)
    assert result.returncode == 0, result.stderr[-3000:]
    predicted = np.array([line["faces"][0]["age_probs"] for line in read_lines(out)])

    net = keras.saving.load_model(os.path.join(tiny_run, "best.keras"), safe_mode=True)
    by_key = {}
    for images, labels in records.make_dataset(sample_shards, "test", 64, training=False, with_keys=True):
        assert images.shape[1] == SAMPLE_IMAGE_SIZE != INPUT_SIZE    # the model's layer resizes
        by_key.update(zip((k.decode() for k in labels["key"].numpy()), np.asarray(net(images, training=False))))
    evaluated = np.array([by_key[key] for key, _ in stored])
    assert predicted.shape == evaluated.shape == (n, 101)
    np.testing.assert_allclose(predicted, evaluated, atol=2e-6)
    assert np.abs(evaluated[1:] - evaluated[0]).max() > 1e-2          # faces differ: could fail


@pytest.mark.slow
def test_every_bad_file_is_its_lines_error_and_the_run_goes_on(tiny_run, tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes(np.random.default_rng(4).integers(0, 256, (40, 36, 3), dtype=np.uint8)))
    (tmp_path / "notes.jpg").write_text("this is not a picture")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    Image.fromarray(np.full((40, 40), 32896, np.uint16)).save(tmp_path / "grey16.png")
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(tmp_path / "grey8.png")
    names = ["good.jpg", "notes.jpg", "empty.jpg", "folder", "pipe.jpg", "bomb.png", "missing.jpg",
             "grey16.png", "grey8.png"]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{tmp_path / name}\n" for name in names))
    out = tmp_path / "preds.jsonl"
    result = predict(tiny_run, "--no_detect", f"--jsonl={out}", f"@{listing}", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {os.path.basename(line["file"]): line for line in read_lines(out)}
    assert sorted(lines) == sorted(names)
    errors = {name: lines[name]["error"] for name in names}
    assert errors["good.jpg"] is None and len(lines["good.jpg"]["faces"]) == 1
    assert "notes.jpg: not a readable image" in errors["notes.jpg"]
    assert errors["empty.jpg"].endswith("empty.jpg: empty file")
    assert "folder: is a directory" in errors["folder"]
    assert "pipe.jpg: not a regular file" in errors["pipe.jpg"] and "not opened" in errors["pipe.jpg"]
    assert "bomb.png: an image, more than the 89478485 pixel limit" in errors["bomb.png"]
    assert errors["missing.jpg"].endswith("missing.jpg: no such file")
    assert all(lines[name]["faces"] == [] for name in names if errors[name])
    # 16-bit mid-grey predicts as 8-bit mid-grey (not as white).
    assert errors["grey16.png"] is None
    assert lines["grey16.png"]["faces"][0]["apparent_age"] == lines["grey8.png"]["faces"][0]["apparent_age"]


@pytest.mark.slow
def test_a_rerun_continues_the_output_and_repairs_a_torn_line(tiny_run, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(7):
        (folder / f"p{i}.jpg").write_bytes(jpeg_bytes(rng.integers(0, 256, (30 + i, 34, 3), dtype=np.uint8)))
    out = tmp_path / "preds.jsonl"
    full = predict(tiny_run, "--no_detect", f"--jsonl={out}", str(folder))
    assert full.returncode == 0, full.stderr[-3000:]
    reference = read_lines(out)
    assert [os.path.basename(r["file"]) for r in reference] == [f"p{i}.jpg" for i in range(7)]
    # A job killed while writing its fourth line; the first line marked to prove it is kept.
    kept = dict(reference[0], faces=[dict(reference[0]["faces"][0], apparent_age=-1.0)])
    torn = json.dumps(reference[3])[:25]
    out.write_text("".join(json.dumps(r) + "\n" for r in [kept] + reference[1:3]) + torn)
    again = predict(tiny_run, "--no_detect", f"--jsonl={out}", str(folder))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{out}: 3 files already done; continuing with 4" in again.stderr
    assert read_lines(out) == [kept] + reference[1:]
    # Each run ends with its tally: this run's files and faces, the file's total.
    assert again.stderr.rstrip().splitlines()[-1] == (
        f"done: 4 files, 4 faces; predictions in {out} (7 files with 3 from earlier runs)")
    done = predict(tiny_run, "--no_detect", f"--jsonl={out}", str(folder), str(folder / "gone.jpg"))
    assert done.returncode == 1, done.stderr[-3000:]        # no file of this run could be processed
    assert f"{out}: 7 files already done; continuing with 1\n" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1] == (
        f"done: 1 file, 0 faces; 1 file failed (1 missing); predictions in {out} (8 files with 7 from "
        f"earlier runs, each error on its file's line)")


@pytest.mark.slow
def test_detection_runs_in_the_pipeline_and_a_faceless_photo_is_an_error(tiny_run, tmp_path):
    import importlib.util
    portrait = os.path.join(importlib.util.find_spec("skimage").submodule_search_locations[0],
                            "data", "astronaut.png")
    faceless = tmp_path / "gray.png"
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(faceless)
    result = predict(tiny_run, "--json", "--probs", portrait, str(faceless))
    assert result.returncode == 0, result.stderr[-3000:]
    face_photo, empty = json.loads(result.stdout)     # stdout: the results only
    # stdout is not a terminal: progress on stderr, its last line at the end of the run.
    progress = [line.split()[0] for line in result.stderr.splitlines() if " files  " in line]
    assert progress == ["2/2"], result.stderr[-3000:]
    x, y, w, h = face_photo["faces"][0]["box"]
    assert 100 < x < 300 and 0 < y < 200 and w > 50     # her face, not the background
    probs = face_photo["faces"][0]["age_probs"]
    assert len(probs) == 101 and abs(sum(probs) - 1) < 1e-4
    assert empty["faces"] == [] and "no face found" in empty["error"]


def test_flip_tta_is_the_mean_of_the_image_and_mirror_softmaxes():
    import keras

    import model
    from serving.predict import AgeModel

    keras.utils.set_random_seed(5)
    net = model.build_age_model(None, variant="tiny", gender=True)
    pixels = np.random.RandomState(0).randint(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    out = AgeModel(net, tta="flip")(pixels)
    plain, mirrored = net(pixels), net(pixels[:, :, ::-1])
    by_hand = (np.asarray(plain["age"]) + np.asarray(mirrored["age"])) / 2
    np.testing.assert_allclose(out["age_probs"], by_hand, atol=1e-6)
    np.testing.assert_allclose(out["apparent_age"], (by_hand * np.arange(101)).sum(-1), atol=1e-4)
    np.testing.assert_allclose(out["male_probability"],
                               (np.asarray(plain["gender"])[:, 1] + np.asarray(mirrored["gender"])[:, 1]) / 2,
                               atol=1e-6)
    assert not np.allclose(AgeModel(net)(pixels)["age_probs"], by_hand, atol=1e-6)   # tta none differs


# ----------------------------------------------------------------------------- the run's margin

def astronaut() -> str:
    """scikit-image's astronaut portrait: one frontal face the Haar cascade finds."""
    import importlib.util
    return os.path.join(importlib.util.find_spec("skimage").submodule_search_locations[0],
                        "data", "astronaut.png")


def predicted_face(run_dir, *args) -> dict:
    result = predict(run_dir, "--json", *args, astronaut())
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = json.loads(result.stdout)
    return line["faces"][0]


def expected_crop(box, margin) -> list[int]:
    from faces.facebox import crop_region

    x, y, w, h = box
    return list(crop_region((x, y, x + w, y + h), margin, 512, 512))   # the portrait is 512x512


@pytest.fixture(scope="module")
def utkface_run(tmp_path_factory) -> str:
    """A tiny run trained one epoch on the UTKFace sample (tight crops: margin 0.0)."""
    root = tmp_path_factory.mktemp("utkface_run")
    made = run_module("ingest.sample", "--dataset", "utkface", "--out", str(root / "UTKFace"), "--n", "200",
                      "--workers", "2")
    assert made.returncode == 0, made.stderr[-3000:]
    shards = str(root / "shards")
    ingested = run_module("ingest", "--src", str(root / "UTKFace"), "--out", shards, "--image_size", "32",
                          "--workers", "2")
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    run_dir = str(root / "run")
    trained = run_module("trainer", f"--records={shards}", f"--model_dir={run_dir}", "--weights=none",
                         "--variant=tiny", "--epochs=1", "--batch_size=32", "--noevaluate", cwd=REPO,
                         timeout=300)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_predict_with_blazeface_finds_her_face_and_levels_its_eyes(tiny_run):
    from faces import detect
    from faces.pixels import read_rgb

    (face,) = detect.find_faces(read_rgb(astronaut()), "blazeface")
    found = predicted_face(tiny_run, "--detector=blazeface")
    assert found["box"] == list(face.box)
    assert found["angle"] == pytest.approx(face.angle(True), abs=0.05) and abs(found["angle"]) > 1   # to 0.1 degree


@pytest.mark.slow
def test_a_utkface_run_records_margin_0_and_predict_crops_tight(utkface_run, tiny_run, tmp_path):
    from serving.export import export_run

    with open(os.path.join(utkface_run, "run.json")) as f:
        assert json.load(f)["margin"] == 0.0
    # Default --margin: the run's. Tight crops: the region given to the model is the face box.
    tight = predicted_face(utkface_run, "--detector=haar")
    x, y, w, h = tight["box"]
    assert tight["crop"] == [x, y, x + w, y + h] == expected_crop(tight["box"], 0.0)
    # An explicit --margin overrides the run's.
    wide = predicted_face(utkface_run, "--detector=haar", "--margin=0.4")
    assert wide["box"] == tight["box"]
    assert wide["crop"] == expected_crop(tight["box"], 0.4) != tight["crop"]
    # A run.json without a margin (trained before runs recorded it): 0.4.
    assert "margin" not in json.load(open(os.path.join(tiny_run, "run.json")))
    older = predicted_face(tiny_run, "--detector=haar")
    assert older["crop"] == expected_crop(older["box"], 0.4) != [older["box"][0], older["box"][1],
                                                                 older["box"][0] + older["box"][2],
                                                                 older["box"][1] + older["box"][3]]
    # The export records it.
    info = export_run(utkface_run, str(tmp_path / "export"), log=lambda *_: None)
    assert info["margin"] == 0.0
    assert json.load(open(tmp_path / "export" / "export.json"))["margin"] == 0.0


@pytest.mark.slow
@pytest.mark.slow
def test_no_photo_is_one_line_not_the_help(tiny_run):
    result = predict(tiny_run)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: no photo given: name one or more images, folders or @lists after the flags, "
        "e.g. python -m serving.predict photo.jpg")
    assert "A run directory holding best.keras" not in result.stderr + result.stdout   # not the --help text


def test_a_negative_margin_is_one_line(tiny_run):
    result = predict(tiny_run, "--margin=-0.1", astronaut())
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --margin=-0.1: must be 0 or more (a fraction of the face box added on every side); "
        "leave it out to use the run's margin")


@pytest.mark.slow
def test_predict_never_imports_ingest(tiny_run, tmp_path):
    """The whole command, detection included, under -X importtime: every module it
    loads is listed, and none is ingest's."""
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "serving.predict",
                             f"--model_dir={tiny_run}", "--json", astronaut()],
                            capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:") and line.count("|") == 2}
    assert {"serving.faces", "faces.detect", "faces.blazeface", "faces.facebox", "entry.progress"} <= imported   # the whole path ran
    assert sorted(m for m in imported if m.split(".")[0] == "ingest") == []


@pytest.mark.slow
def test_trainer_predict_is_the_same_command_as_serving_predict(tiny_run, sample_dir):
    from faces.detect import MIN_FACE

    def big_enough(path):        # the sample's first files include 1x1 no-face placeholders
        try:
            with Image.open(path) as image:
                return min(image.size) >= MIN_FACE
        except OSError:
            return False
    photo = next(p for root, _, names in sorted(os.walk(sample_dir)) for name in sorted(names)
                 if name.endswith(".jpg") and big_enough(p := os.path.join(root, name)))
    answers = []
    for command in ("serving.predict", "trainer.predict"):
        result = run_module(command, f"--model_dir={tiny_run}", "--no_detect", "--json", photo, cwd=REPO)
        assert result.returncode == 0, result.stderr[-2000:]
        answers.append(json.loads(result.stdout))
    assert answers[0] == answers[1]
    assert answers[0][0]["file"] == photo and len(answers[0][0]["faces"]) == 1


@pytest.mark.parametrize("box", [(0, 0, 40, 40), (150, 0, 50, 60), (170, 90, 30, 30), (-5, -5, 210, 130)])
def test_an_age_label_stays_inside_the_picture(box):
    import matplotlib.pyplot as plt

    from reports.prediction_plots import annotated_figure

    fig = annotated_figure(np.zeros((120, 200, 3), np.uint8), [{"box": box, "apparent_age": 100.0}])
    fig.canvas.draw()
    inside = fig.bbox
    (label,) = fig.axes[0].texts
    extent = label.get_bbox_patch().get_window_extent()
    plt.close(fig)
    assert extent.x0 >= inside.x0 - 0.5 and extent.x1 <= inside.x1 + 0.5, (box, extent)
    assert extent.y0 >= inside.y0 - 0.5 and extent.y1 <= inside.y1 + 0.5, (box, extent)


@pytest.mark.parametrize("content", [b"my notes, no final newline", b'{"a": 1}',
                                     b'{"file": "a.jpg", "faces": [], "error": null}\nmore notes'])
def test_a_file_without_a_final_newline_that_is_not_ours_is_refused_untouched(tmp_path, content):
    from serving.predict import PredictError, open_output

    out = tmp_path / "notes.txt"
    out.write_bytes(content)
    with pytest.raises(PredictError, match=r"notes.txt: does not end with a newline and is not a predictions "
                                           r"file \(no \.dex-age mark beside it\); --jsonl only continues"):
        open_output(str(out))
    assert out.read_bytes() == content and not (tmp_path / ".notes.txt.dex-age").exists()


def test_a_marked_predictions_file_is_repaired_and_a_new_one_gets_the_mark(tmp_path):
    from serving.predict import open_output

    out = tmp_path / "preds.jsonl"
    handle, done = open_output(str(out))
    assert done == set() and json.loads((tmp_path / ".preds.jsonl.dex-age").read_text())["kind"] == "predictions"
    handle.write(b'{"file": "a.jpg", "faces": [], "error": null}\n{"fi')      # killed mid-line
    handle.close()
    handle, done = open_output(str(out))
    handle.close()
    assert done == {"a.jpg"} and out.read_bytes() == b'{"file": "a.jpg", "faces": [], "error": null}\n'


@pytest.mark.parametrize("kind", ["symlink", "fifo", "device", "directory"])
def test_an_output_that_is_not_a_regular_file_is_refused_before_reading(tmp_path, kind):
    """A link (even to a predictions file), a FIFO, /dev/zero, a directory: one line, nothing read."""
    from serving.predict import PredictError, open_output

    target = tmp_path / "elsewhere.jsonl"
    target.write_bytes(TORN)
    out = tmp_path / "out.jsonl"
    if kind == "symlink":
        os.symlink(target, out)
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "directory":
        out.mkdir()
    else:
        out = "/dev/zero"
    with pytest.raises(PredictError) as refused:
        open_output(str(out))
    expected = {"symlink": "cannot be the --jsonl (a symbolic link)",
                "directory": "cannot be the --jsonl (Is a directory)"}.get(
                    kind, "not a regular file (a FIFO, device or directory)")
    assert str(refused.value).startswith(f"{out}: {expected}; pass a new file name")
    assert target.read_bytes() == TORN


def test_a_file_name_that_is_not_utf8_is_that_files_error_line(tmp_path):
    import keras

    import model
    from serving import predict

    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes(np.full((40, 40, 3), 100, np.uint8)))
    odd = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg"))
    with open(os.fsencode(odd), "wb") as f:
        f.write(jpeg_bytes(np.full((40, 40, 3), 100, np.uint8)))
    keras.utils.set_random_seed(0)
    age_model = predict.AgeModel(model.build_age_model(variant="tiny", input_size=INPUT_SIZE))
    results = list(predict.predict_files(age_model, [odd, str(good)],
                                         predict.PredictConfig(detect=False, batch_size=2)))
    shown = f"{tmp_path}/caf\ufffd.jpg"
    assert results[0] == {"file": shown, "faces": [],
                          "error": f"{shown}: the file name is not UTF-8 text; rename the file"}
    assert results[1]["error"] is None and len(results[1]["faces"]) == 1
    json.dumps(results)                       # a result line is always valid JSON text


def test_jsonl_and_pictures_dir_refuse_each_others_shape_before_any_work(tmp_path):
    from serving.output import PredictError, check_destinations

    folder = tmp_path / "preds"
    folder.mkdir()
    with pytest.raises(PredictError) as e:
        check_destinations(str(folder), None)
    assert str(e.value) == (f"--jsonl {folder}: is a folder; --jsonl names the predictions file (e.g. "
                            f"{folder}/predictions.jsonl), --pictures_dir a folder for pictures")
    with pytest.raises(PredictError) as e:
        check_destinations(None, str(tmp_path / "preds.jsonl"))
    assert str(e.value).endswith(f"for the predictions file pass --jsonl {tmp_path / 'preds.jsonl'}")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"x")
    with pytest.raises(PredictError, match=r"photo.jpg: is a file, .* pass a folder name"):
        check_destinations(None, str(photo))
    check_destinations(str(tmp_path / "new.jsonl"), str(folder))       # the right shapes pass
    assert not (tmp_path / "new.jsonl").exists() and os.listdir(folder) == []


def test_the_tally_counts_files_faces_and_errors_by_kind_and_says_where_the_results_are(tmp_path):
    from faces.pixels import PixelError, check_file
    from serving import tally

    def error_of(path):
        try:
            check_file(path)
        except PixelError as e:
            return str(e)

    (tmp_path / "empty.jpg").write_bytes(b"")
    counts = tally.Tally(already=10)
    results = [{"file": "a.jpg", "faces": [{}, {}], "error": None},
               {"file": "b.jpg", "faces": [], "error": f"b.jpg: {tally.NO_FACE}; pass a photo with a frontal face"},
               {"file": str(tmp_path / "gone.jpg"), "faces": [], "error": error_of(str(tmp_path / "gone.jpg"))},
               {"file": str(tmp_path / "empty.jpg"), "faces": [], "error": error_of(str(tmp_path / "empty.jpg"))},
               {"file": str(tmp_path), "faces": [], "error": error_of(str(tmp_path))},
               {"file": "c.jpg", "faces": [], "error": "c.jpg: could not be processed (error: boom)"},
               {"file": "d.jpg", "faces": [], "error": f"d.jpg: {tally.NO_FACE}; pass a photo with a frontal face"}]
    for result in results:
        counts.add(result)
    assert counts.line("p.jsonl", "pics") == (
        "done: 7 files, 2 faces; 6 files failed (2 no face found, 1 not an image, 1 missing, 1 not a file, "
        "1 other); predictions in p.jsonl (17 files with 10 from earlier runs, each error on its file's line); "
        "pictures in pics")
    assert tally.Tally().line() == "done: 0 files, 0 faces"


def test_each_face_is_labelled_with_its_age_and_90_percent_interval_in_a_font_that_scales():
    import matplotlib.pyplot as plt

    from reports.prediction_plots import MIN_LABEL_PT, annotated_figure, label_size, label_text

    face = {"box": (10, 10, 40, 40), "apparent_age": 41.3, "age_low": 25, "age_high": 62}
    assert label_text(face) == "41 (25–62)"
    assert label_text({"box": (0, 0, 9, 9), "apparent_age": 7.6}) == "8"
    text = label_text(face)
    small, big = label_size(face["box"], 200, 120, text), label_size(face["box"], 4000, 3000, text)
    assert small == MIN_LABEL_PT and big == 4000 / 50      # a small face on a big photo: still legible
    assert label_size((0, 0, 800, 800), 4000, 3000, text) == 100     # a big face: an eighth of its height
    fig = annotated_figure(np.zeros((1500, 2000, 3), np.uint8), [face])
    (label,) = fig.axes[0].texts
    assert label.get_text() == "41 (25–62)" and label.get_fontsize() == 2000 / 50
    fig.canvas.draw()
    assert label.get_bbox_patch().get_window_extent().height > 40       # px on the 2000 px picture
    plt.close(fig)


def test_the_age_distribution_shades_its_90_percent_interval():
    import matplotlib.pyplot as plt

    from reports.prediction_plots import answered_interval, distribution_figure, interval

    probs = np.zeros(101, np.float32)
    probs[30:41] = 1 / 11                     # ages 30..40 equally likely
    low, high = interval(probs)
    assert 30 <= low <= 31 and 39 <= high <= 40
    fig = distribution_figure(probs, "face 1")
    (span,) = fig.axes[0].patches[:1]
    x0, x1 = span.get_x(), span.get_x() + span.get_width()
    assert (x0, x1) == (low - 0.5, high + 0.5)        # the bars of low..high, each 1 wide
    assert f"90% interval {low}–{high}" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    assert answered_interval({"age_low": 24, "age_high": 47}) == (24, 47) and answered_interval({}) is None
    fig = distribution_figure(probs, "face 1", served=(24, 47))   # a calibrated model's answer is shaded
    (span,) = fig.axes[0].patches[:1]
    assert (span.get_x(), span.get_x() + span.get_width()) == (23.5, 47.5)
    assert "90% interval 24–47" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)


@pytest.mark.parametrize("detect", [False, True])
def test_an_image_under_min_face_is_skipped_as_too_small_and_counted(tmp_path, detect):
    import keras

    import model
    from faces.detect import MIN_FACE
    from serving import predict, tally

    dot, tile, face = tmp_path / "dot.png", tmp_path / "tile.jpg", tmp_path / "face.jpg"
    Image.fromarray(np.full((1, 1, 3), 100, np.uint8)).save(dot)                 # 1x1
    tile.write_bytes(jpeg_bytes(np.full((MIN_FACE - 1, 60, 3), 100, np.uint8)))  # one row short
    face.write_bytes(jpeg_bytes(np.full((MIN_FACE, MIN_FACE, 3), 100, np.uint8)))
    keras.utils.set_random_seed(0)
    age_model = predict.AgeModel(model.build_age_model(variant="tiny", input_size=INPUT_SIZE))
    config = predict.PredictConfig(detect=detect, batch_size=2)
    assert config.min_face == MIN_FACE == 24
    results = list(predict.predict_files(age_model, [str(dot), str(tile), str(face)], config))
    assert results[0] == {"file": str(dot), "faces": [], "error": (
        f"{dot}: too small: 1x1 px, under --min_face=24; pass a larger image, or lower --min_face")}
    assert results[1]["faces"] == [] and results[1]["error"].startswith(f"{tile}: too small: 60x23 px, under")
    if not detect:                           # the whole image is the face: estimated
        assert results[2]["error"] is None and len(results[2]["faces"]) == 1
    counts = tally.Tally()
    for result in results:
        counts.add(result)
    assert counts.errors[tally.TOO_SMALL] == 2
    assert counts.line().startswith("done: 3 files, " + ("1 face" if not detect else "0 faces")
                                    + "; " + ("2 files failed (2 too small)" if not detect else "3 files failed (1 no face found, 2 too small)"))
    # --min_face=1 lets the 1x1 image through --no_detect.
    if not detect:
        lowered = list(predict.predict_files(age_model, [str(dot)], predict.PredictConfig(detect=False, min_face=1)))
        assert lowered[0]["error"] is None and len(lowered[0]["faces"]) == 1
