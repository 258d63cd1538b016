"""One face framing from ingest to prediction: the detectors (faces.detect), the eye
alignment (faces.facebox.frame), the framing a data set, run, export and report
carry (faces.framing), and the warning when faces are framed unlike the training
faces.  Real faces: scikit-image's astronaut only (turned, scaled, on larger canvases)."""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from conftest import run_module
from faces import facebox, framing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def astronaut() -> np.ndarray:
    import skimage.data
    return skimage.data.astronaut()


def turned(rgb: np.ndarray, degrees: float, canvas: tuple[int, int] | None = None, scale: float = 1.0,
           at: tuple[int, int] = (0, 0)) -> np.ndarray:
    """`rgb` turned counter-clockwise by `degrees` (whole, on a larger frame), scaled, and
    pasted at `at` on a grey canvas of `canvas` (width, height)."""
    image = Image.fromarray(rgb).rotate(degrees, resample=Image.BILINEAR, expand=True, fillcolor=(90, 90, 90))
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    if canvas:
        back = Image.new("RGB", canvas, (90, 90, 90))
        back.paste(image, at)
        image = back
    return np.asarray(image)


def blob_centres(rgb: np.ndarray) -> list[tuple[float, float]]:
    """(x, y) centres of the bright blobs, left to right."""
    from skimage.measure import label, regionprops

    regions = regionprops(label(rgb.max(-1) > 128))
    return sorted((r.centroid[1], r.centroid[0]) for r in regions if r.area > 4)


# ----------------------------------------------------------------------------- geometry

def test_framing_unaligned_is_the_margin_crop_of_the_photo():
    rgb = np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8)
    pixels, region = facebox.frame(rgb, (30, 20, 70, 60), 0.25)
    assert region == facebox.crop_region((30, 20, 70, 60), 0.25, 120, 90) == (20, 10, 80, 70)
    np.testing.assert_array_equal(pixels, rgb[10:70, 20:80])


@pytest.mark.parametrize("degrees", [20, -20, 7])
def test_aligning_by_the_eyes_levels_them_in_the_crop(degrees):
    """Two 'eyes' 60 px apart on a level line, the photo turned: eye_angle measures the
    turn, and the framed crop has them level again (within 1 px over 60: < 1 degree),
    the same distance apart, at the box's position plus the margin."""
    canvas = np.zeros((160, 200, 3), np.uint8)
    canvas[78:83, 68:73] = 255      # eye centres (70, 80) and (130, 80)
    canvas[78:83, 128:133] = 255
    rgb = np.asarray(Image.fromarray(canvas).rotate(degrees, resample=Image.BILINEAR))
    left, right = blob_centres(rgb)
    angle = facebox.eye_angle(left, right)
    assert angle == pytest.approx(-degrees, abs=1.0)     # PIL turns counter-clockwise on the screen
    box = (40, 50, 160, 110)    # a 120 x 60 face box centred on the eyes (and the photo: the turn keeps it)
    pixels, region = facebox.frame(rgb, box, 0.1, angle)
    width, height = region[2] - region[0], region[3] - region[1]
    assert (width, height) == pixels.shape[1::-1] and abs(width - 144) <= 1 and abs(height - 72) <= 1
    (lx, ly), (rx, ry) = blob_centres(pixels)
    assert abs(math.degrees(math.atan2(ry - ly, rx - lx))) < 1.0
    assert rx - lx == pytest.approx(60, abs=1.0)
    assert (lx, ly) == pytest.approx((30 + 12, 30 + 6), abs=1.5)   # where the box put them, plus the margin


# ----------------------------------------------------------------------------- framing facts

def test_the_framing_of_old_manifests_and_runs_is_their_sources_crops_at_its_margin():
    assert framing.of({}) == framing.Framing("source", False, facebox.DEFAULT_MARGIN)
    assert framing.of({"margin": 0.0}) == framing.Framing("source", False, 0.0)
    assert framing.of({"detector": "mtcnn", "aligned": True, "margin": 0.4}).as_dict() == {
        "detector": "mtcnn", "aligned": True, "margin": 0.4}


def test_prediction_warns_only_about_flags_the_user_gave_that_frame_faces_unlike_the_run():
    blaze = framing.Framing("blazeface", True, 0.4)
    none = {"detector": None, "align": None, "margin": None}
    assert framing.predict_notice(blaze, blaze, none) is None
    assert framing.predict_notice(blaze, blaze, {**none, "detector": "blazeface"}) is None   # the run's own value
    line = framing.predict_notice(blaze, framing.Framing("mtcnn", True, 0.2),
                                  {"detector": "mtcnn", "align": True, "margin": 0.2})
    assert line == ("warning: --detector mtcnn --margin 0.2 frames the faces found as mtcnn faces, aligned, "
                    "margin 0.2; the model was trained on blazeface faces, aligned, margin 0.4, so its ages may be "
                    "off; leave out --detector mtcnn --margin 0.2 to frame them as the run's")
    assert "leave out --noalign to" in framing.predict_notice(blaze, framing.Framing("blazeface", False, 0.4),
                                                              {**none, "align": False})


def test_a_run_on_a_data_sets_own_crops_gets_one_note_with_the_ingest_command_not_a_flag_warning():
    utk = framing.Framing("source", False, 0.0)
    none = {"detector": None, "align": None, "margin": None}
    line = framing.predict_notice(utk, framing.Framing("blazeface", True, 0.0), none)
    assert line == ("note: this run was trained on the data set's own crops (margin 0), not on faces found in "
                    "photos; it sees the photos' faces as blazeface faces, aligned, margin 0, so its ages may be "
                    "off; for training faces framed as in prediction, ingest with "
                    "`python -m ingest --src SRC --out OUT --reframe blazeface` and train on OUT")
    assert "warning" not in line and "--detector" not in line
    # The detector the user chose is the one to ingest with; a margin unlike the run's is named.
    line = framing.predict_notice(utk, framing.Framing("mtcnn", True, 0.2),
                                  {"detector": "mtcnn", "align": None, "margin": 0.2})
    assert line.endswith("ingest with `python -m ingest --src SRC --out OUT --reframe mtcnn` and train on OUT; "
                         "--margin 0.2 crops them unlike the run's margin 0: leave it out to crop them as its were")
    assert line.startswith("note: ") and line.count("\n") == 0


def test_the_ingest_command_reproduces_a_runs_framing():
    assert framing.ingest_command(framing.Framing("blazeface", True, 0.4)) == (
        "python -m ingest --src SRC --out OUT --reframe blazeface")
    assert framing.ingest_command(framing.Framing("mtcnn", False, 0.25)) == (
        "python -m ingest --src SRC --out OUT --reframe mtcnn --noalign --margin 0.25")
    assert framing.ingest_command(framing.Framing("haar", False, 0.4)) == (
        "python -m ingest --src SRC --out OUT --reframe haar")
    assert framing.data_fix(framing.Framing("mtcnn", True, 0.4)) == (
        "re-ingest them with the run's framing: `python -m ingest --src SRC --out OUT --reframe mtcnn`")


def test_the_framing_warning_names_both_framings_and_only_fires_when_they_differ():
    utk = framing.Framing("source", False, 0.0)
    mtcnn = framing.Framing("mtcnn", True, 0.4)
    assert framing.warning(utk, utk, "x", "fix") is None
    assert framing.warning(framing.Framing("source", False, 0.4), framing.Framing("haar", False, 0.4),
                           "x", "fix") is None   # a data set's own crops name no detector
    assert framing.warning(mtcnn, framing.Framing("haar", True, 0.4), "x", "fix") is not None
    assert framing.warning(utk, framing.Framing("source", False, 0.4), "the faces of shards/wiki", "re-ingest") == (
        "warning: the faces of shards/wiki are framed as the data set's own crops, margin 0.4; the model "
        "was trained on the data set's own crops, margin 0, so its ages may be off; re-ingest")
    assert "framed as mtcnn faces, aligned, margin 0.4" in framing.warning(utk, mtcnn, "the faces found", "f")


def framed(**asked):
    """PredictConfig framed for a run trained on `trained`, given what the flags asked."""
    from serving.predict import Job, framed as resolve
    from serving.config import PredictConfig

    trained = asked.pop("trained")
    return resolve(PredictConfig(), Job(model_dir="runs/x", **asked), trained)


def test_predict_frames_faces_as_the_run_did_unless_told_otherwise():
    from serving.predict import PredictError

    reframed = framing.Framing("haar", False, 0.3)
    config = framed(trained=reframed)
    assert (config.detector, config.align, config.margin) == ("haar", False, 0.3)
    # A run on a data set's own crops: the default detector, aligned, the run's margin.
    config = framed(trained=framing.Framing("source", False, 0.0))
    assert (config.detector, config.align, config.margin) == (framing.DEFAULT_DETECTOR, True, 0.0)
    config = framed(trained=reframed, detector="mtcnn", margin=0.5)
    assert (config.detector, config.align, config.margin) == ("mtcnn", True, 0.5)
    with pytest.raises(PredictError) as error:
        framed(trained=reframed, align=True)
    assert str(error.value) == ("--align: the haar detector gives no eye landmarks to level the eyes by; "
                                "use --detector mtcnn or blazeface or leave out --align")


def test_ingest_refuses_align_without_landmarks_and_takes_margin_for_any_source_when_reframing(tmp_path):
    from ingest import pipeline
    from errors import DataError

    with pytest.raises(DataError) as error:
        pipeline.Config(src=str(tmp_path), reframe="haar", align=True).validate()
    assert str(error.value) == ("--align with --reframe haar: only --reframe mtcnn or blazeface finds the eyes "
                                "to level; drop --align or use --reframe mtcnn or blazeface")
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    (folder / "30_1_0_20170109150557335.jpg.chip.jpg").write_bytes(b"")
    with pytest.raises(DataError):   # UTKFace's crops have a fixed margin...
        pipeline.resolve_source(pipeline.Config(src=str(folder), margin=0.2))
    cfg = pipeline.Config(src=str(folder), margin=0.2, reframe="mtcnn")   # ...its reframed faces take one
    source = pipeline.resolve_source(cfg)
    assert cfg.framing_of(source) == framing.Framing("mtcnn", True, 0.2)
    assert pipeline.Config(src="", reframe="mtcnn").framing_of(source) == framing.Framing("mtcnn", True, 0.4)
    assert pipeline.Config(src="").framing_of(source) == framing.Framing("source", False, 0.0)


# ----------------------------------------------------------------------------- the detectors (slow: TF)

@pytest.mark.slow
@pytest.mark.parametrize("degrees,scale,canvas,at", [
    (0, 1.0, None, (0, 0)),
    (20, 1.0, None, (0, 0)),
    (-20, 1.0, None, (0, 0)),
    (0, 0.5, (1280, 960), (700, 500)),       # small, off-centre on a 4:3 photo
    (-20, 1.5, (1600, 1200), (100, 50)),     # large and turned: MTCNN sees a downscaled copy
])
def test_mtcnn_finds_the_astronaut_and_the_aligned_crop_has_level_eyes(degrees, scale, canvas, at):
    from faces import detect

    rgb = turned(astronaut(), degrees, canvas, scale, at)
    faces = detect.find_faces(rgb, "mtcnn")
    assert len(faces) == 1
    assert detect.find_faces(rgb, "mtcnn") == faces     # deterministic: ingest's resume relies on it
    face = faces[0]
    assert face.box[2] > 50 * scale
    # Her eyes are turned by about 3 degrees in the portrait itself.
    assert face.angle(True) == pytest.approx(-degrees + 2.8, abs=3.0)
    pixels, _ = facebox.frame(rgb, face.corners, 0.4, face.angle(True))
    (again,) = detect.find_faces(pixels, "mtcnn", 20)
    assert abs(again.angle(True)) < 2.0


@pytest.mark.slow
def test_haar_finds_the_astronaut_and_mtcnn_batches_give_the_faces_of_each_photo():
    from faces import detect

    (face,) = detect.find_faces(astronaut(), "haar")
    assert face.eyes is None and face.angle(True) == 0.0 and 150 < face.box[0] < 220
    photos = [astronaut(), turned(astronaut(), 20)[:512, :512].copy(), astronaut()[::2, ::2].copy()]
    assert detect.find_faces_batch(photos, "mtcnn") == [detect.find_faces(p, "mtcnn") for p in photos]
    assert detect.find_faces(np.full((300, 400, 3), 128, np.uint8), "mtcnn") == []


def test_a_face_prediction_frames_is_stored_as_a_record_holds_it_and_decodes_as_training_reads_it():
    import tensorflow as tf
    from records import schema
    from faces.pixels import as_stored, encode, squash
    from records.reader import JPEG_DCT_METHOD

    crop = astronaut()[20:220, 140:330]                # a real face, 200 x 190: squashed to square
    for quality in (95, 60):
        record = encode(squash(Image.fromarray(crop), 48), schema.ENCODING_JPEG, quality)   # what ingest stores
        trained_on = tf.io.decode_jpeg(record, channels=3, dct_method=JPEG_DCT_METHOD).numpy()
        served = as_stored(crop, 48, schema.ENCODING_JPEG, quality)
        assert served.shape == (48, 48, 3)
        np.testing.assert_array_equal(served, trained_on)
    raw = as_stored(crop, 48, schema.ENCODING_RAW)
    np.testing.assert_array_equal(raw, np.asarray(squash(Image.fromarray(crop), 48)))
    assert np.abs(raw.astype(int) - as_stored(crop, 48).astype(int)).mean() > 0.1   # JPEG's loss is repeated


def test_the_storage_of_manifests_and_runs_is_read_with_its_defaults_and_refused_when_unusable():
    manifest = {"image_size": 64, "encoding": "jpeg", "flags": {"jpeg_quality": 80}}
    assert framing.stored(manifest) == framing.Stored(64, "jpeg", 80)
    assert framing.stored({"image_size": 32, "encoding": "raw"}).as_dict() == {
        "image_size": 32, "encoding": "raw", "jpeg_quality": 95}
    assert framing.stored({"image_size": 64, "jpeg_quality": 70}) == framing.Stored(64, "jpeg", 70)
    for bad in ({}, {"image_size": 0}, {"image_size": True}, {"image_size": 64, "encoding": "png"},
                {"image_size": 64, "jpeg_quality": 101}):
        assert framing.stored(bad) is None, bad


# ----------------------------------------------------------------------------- end to end (slow)

AGES = (25, 30, 35, 40, 45, 50, 55, 60, 28, 33, 38, 43)


@pytest.fixture(scope="module")
def astronaut_utkface(tmp_path_factory) -> str:
    """A UTKFace-named folder of the astronaut turned, scaled and on canvases (one face
    each), and two faceless grey photos."""
    root = tmp_path_factory.mktemp("astro") / "UTKFace"
    root.mkdir()
    variants = [(d, s, c, a) for d in (-20, -10, 0, 10, 20, 15) for s, c, a in
                ((1.0, None, (0, 0)), (0.6, (900, 700), (300, 200)))]
    for n, ((degrees, scale, canvas, at), age) in enumerate(zip(variants, AGES)):
        Image.fromarray(turned(astronaut(), degrees, canvas, scale, at)).save(
            root / f"{age}_1_0_2017010915{n:04d}.jpg.chip.jpg", quality=95)
    for n in range(2):
        Image.fromarray(np.full((200, 200, 3), 100 + n, np.uint8)).save(root / f"{50 + n}_0_0_2017010916{n:04d}.jpg.chip.jpg")
    return str(root)


@pytest.fixture(scope="module")
def reframed_shards(astronaut_utkface, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("reframed") / "shards")
    result = run_module("ingest", "--src", astronaut_utkface, "--out", out, "--reframe", "mtcnn",
                        "--image_size", "32", "--encoding", "raw", "--workers", "2",
                        "--test_fraction", "0.25", "--val_fraction", "0.2", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "images (mtcnn)" in result.stderr     # progress names the detector it runs at
    return out


@pytest.mark.slow
def test_reframed_ingest_stores_predictions_framing_and_counts_faceless_photos(astronaut_utkface, reframed_shards):
    from conftest import read_records
    from records import schema
    from faces.pixels import read_rgb
    from serving import faces

    manifest = json.load(open(os.path.join(reframed_shards, "manifest.json")))
    assert (manifest["detector"], manifest["aligned"], manifest["margin"]) == ("mtcnn", True, 0.4)
    assert manifest["skipped"] == {"no_face_found": 2} and manifest["kept"] == 14
    stored = {rec[schema.KEY]: rec for split in read_records(reframed_shards).values() for rec in split}
    assert len(stored) == 12
    for key, rec in stored.items():
        # prediction's framing of the same file (serving.faces), stored as the data set stores it
        ((face, angle, pixels, region),) = faces.framed_faces(read_rgb(os.path.join(astronaut_utkface, key.decode())),
                                                              "mtcnn", True, 0.4, 30, framing.stored(manifest))
        got = np.frombuffer(rec[schema.IMAGE_ENCODED], np.uint8).reshape(32, 32, 3)
        np.testing.assert_array_equal(got, pixels, err_msg=key)


@pytest.mark.slow
def test_a_run_on_reframed_data_carries_its_framing_to_export_predict_and_reports(reframed_shards, astronaut_utkface,
                                                                                   sample_shards, tmp_path):
    from serving.export import export_run
    from trainer import evaluate

    run_dir = str(tmp_path / "run")
    trained = run_module("trainer", f"--records={reframed_shards}", f"--model_dir={run_dir}", "--weights=none",
                         "--variant=tiny", "--epochs=1", "--batch_size=4", "--noevaluate", cwd=REPO, timeout=300)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    info = json.load(open(os.path.join(run_dir, "run.json")))
    assert (info["detector"], info["aligned"], info["margin"]) == ("mtcnn", True, 0.4)
    assert (info["image_size"], info["encoding"], info["jpeg_quality"]) == (32, "raw", 95)

    export = export_run(run_dir, str(tmp_path / "export"), log=lambda *_: None)
    on_disk = json.load(open(tmp_path / "export" / "export.json"))
    assert (on_disk["detector"], on_disk["aligned"], on_disk["margin"]) == ("mtcnn", True, 0.4)
    assert on_disk["framing"] == export["framing"] == (
        "find faces with mtcnn, turn the photo so the eyes are level, then crop the face box plus 0.4 of "
        "its width/height on every side (faces.facebox.frame), squashed to 32x32 (faces.pixels.as_stored)")
    assert (on_disk["image_size"], on_disk["encoding"]) == (32, "raw")

    photo = os.path.join(astronaut_utkface, sorted(os.listdir(astronaut_utkface))[0])
    same = run_module("serving.predict", f"--model_dir={run_dir}", "--json", photo, cwd=REPO, timeout=180)
    assert same.returncode == 0 and "warning" not in same.stderr, same.stderr[-3000:]
    (result,) = json.loads(same.stdout)
    assert abs(result["faces"][0]["angle"]) > 5      # the run's framing: aligned
    other = run_module("serving.predict", f"--model_dir={run_dir}", "--json", "--detector=haar", photo,
                       cwd=REPO, timeout=180)
    assert other.returncode == 0, other.stderr[-3000:]
    assert ("warning: --detector haar frames the faces found as haar faces, margin 0.4; the model was trained "
            "on mtcnn faces, aligned, margin 0.4, so its ages may be off; leave out --detector haar to frame them "
            "as the run's") in other.stderr.splitlines()

    # trainer.evaluate on another data set (the sample's own crops): one warning line, both in the report.
    report = evaluate.evaluate_run(run_dir, sample_shards, batch_size=64, quiet=True)
    assert report["framing"] == {"training": {"detector": "mtcnn", "aligned": True, "margin": 0.4},
                                 "data": {"detector": "source", "aligned": False, "margin": 0.4}}
    shards = os.path.basename(sample_shards)
    assert json.load(open(os.path.join(run_dir, f"report-{shards}-test.json")))["framing"] == report["framing"]
    own = evaluate.evaluate_run(run_dir, batch_size=64, quiet=True)
    assert own["framing"]["data"] == own["framing"]["training"]


@pytest.mark.slow
def test_evaluate_warns_once_when_the_data_is_framed_unlike_the_training_faces(sample_shards, tmp_path, capsys):
    import keras

    import model
    from trainer import evaluate
    from storage.run_dir import RunDir

    keras.utils.set_random_seed(0)
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    model.build_age_model(None, variant="tiny").save(run.best_model)
    run.write_info({"records": str(tmp_path / "utk"), "margin": 0.0})   # trained on UTKFace's tight crops
    report = evaluate.evaluate_run(run.path, sample_shards, split="val", batch_size=64, quiet=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning")]
    assert lines == [f"warning: the faces of {sample_shards} are framed as the data set's own crops, margin 0.4; "
                     f"the model was trained on the data set's own crops, margin 0, so its ages may be off; "
                     f"score records of the run's own source crops (margin 0), or ingest both with "
                     f"`python -m ingest --src SRC --out OUT --reframe blazeface` and retrain"]
    assert report["framing"] == {"training": {"detector": "source", "aligned": False, "margin": 0.0},
                                 "data": {"detector": "source", "aligned": False, "margin": 0.4}}
