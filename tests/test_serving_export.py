"""`python -m serving.export`: the SavedModel's two signatures in a process that has
never imported this project, the TFLite file under the LiteRT interpreter, TTA,
the gender output, and an export never replacing what it did not make."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import model
from errors import ProjectError

from conftest import run_module
from test_serving_predict import INPUT_SIZE, REPO, build_run, read_lines

# Run with `python -I` from outside the repository: no PYTHONPATH, no project import.
CLEAN_SCRIPT = r"""
import json, sys
import tensorflow as tf
export_dir, files = sys.argv[1], sys.argv[2:]
m = tf.saved_model.load(export_dir)
served = m.signatures["serving_default"](image_bytes=tf.constant([open(p, "rb").read() for p in files]))
pixels = tf.stack([tf.io.decode_png(open(files[0], "rb").read(), channels=3)])
direct = m.signatures["predict_pixels"](pixels=pixels)
project = sorted(k for k in sys.modules if k.split(".")[0] in ("model", "trainer", "records", "ingest", "bench"))
print(json.dumps({"ages": served["apparent_age"].numpy().tolist(),
                  "probs_shape": list(served["age_probs"].shape),
                  "outputs": sorted(served),
                  "pixels_age": float(direct["apparent_age"].numpy()[0]),
                  "project_modules": project}))
"""


@pytest.fixture(scope="module")
def run_dir(sample_shards, tmp_path_factory) -> str:
    return build_run(str(tmp_path_factory.mktemp("export_run") / "run"), sample_shards, seed=1)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> list[str]:
    """Upright face-crop files of several sizes, as PNG (first) and JPEG."""
    folder = tmp_path_factory.mktemp("export_faces")
    rng = np.random.default_rng(7)
    paths = []
    for i, (h, w) in enumerate([(INPUT_SIZE, INPUT_SIZE), (70, 60), (33, 41), (120, 90)]):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = str(folder / (f"face{i}.png" if i == 0 else f"face{i}.jpg"))
        Image.fromarray(pixels).save(path, **({} if i == 0 else {"quality": 90}))
        paths.append(path)
    # Last: a PNG with transparency, random colour under alpha 0 (predict composites it on white).
    rgba = rng.integers(0, 256, (52, 44, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(np.arange(44) < 22, 0, rng.integers(1, 256, (52, 44)))
    paths.append(str(folder / "face_alpha.png"))
    Image.fromarray(rgba, "RGBA").save(paths[-1])
    return paths


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_the_saved_models_decoder_gives_predicts_pixels_transparency_on_white(faces, tmp_path):
    """Opaque and transparent PNGs (RGBA, grey + alpha, palette with a transparent
    entry) and a JPEG decode in the graph to exactly faces.pixels.read_rgb's pixels."""
    import tensorflow as tf

    from faces.pixels import read_rgb
    from serving.export import decode_rgb

    rng = np.random.default_rng(8)
    palette = Image.fromarray(rng.integers(0, 256, (25, 31, 3), dtype=np.uint8)).quantize(16)
    palette.info["transparency"] = 3
    images = {"rgba.png": Image.fromarray(rng.integers(0, 256, (37, 41, 4), dtype=np.uint8), "RGBA"),
              "la.png": Image.fromarray(rng.integers(0, 256, (30, 20, 2), dtype=np.uint8), "LA"),
              "palette.png": palette}
    paths = [faces[0], faces[1], faces[-1]]
    for name, image in images.items():
        paths.append(str(tmp_path / name))
        with open(paths[-1], "wb") as f:
            f.write(png_bytes(image))
    for path in paths:
        data = open(path, "rb").read()
        assert np.array_equal(decode_rgb(tf.constant(data)).numpy(), read_rgb(path)), path
    # Could fail: dropping the alpha channel gives other pixels.
    dropped = tf.io.decode_png(open(faces[-1], "rb").read(), channels=3).numpy()
    assert not np.array_equal(dropped, read_rgb(faces[-1]))


def export(run_dir, out, *args):
    result = run_module("serving.export", f"--model_dir={run_dir}", f"--out={out}", *args, cwd=REPO,
                        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def keras_probs(run_dir, pixels, tta=False):
    import keras

    import model  # noqa: F401
    net = keras.saving.load_model(os.path.join(run_dir, "best.keras"), safe_mode=True)
    probs = np.asarray(net(pixels, training=False))
    if tta:
        probs = (probs + np.asarray(net(pixels[:, :, ::-1], training=False))) / 2
    return probs


def expected(probs):
    return (np.asarray(probs, np.float64) * np.arange(probs.shape[-1])).sum(-1)


def tflite_run(path, pixels):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serve")
    return [runner(pixels=pixels[i:i + 1]) for i in range(len(pixels))]


@pytest.mark.slow
def test_saved_model_runs_in_a_clean_process_and_matches_predict(run_dir, faces, tmp_path):
    out = tmp_path / "exports" / "x"
    result = export(run_dir, out, "--tflite=float32")
    assert "SavedModel" in result.stdout and "model.tflite (float32)" in result.stdout and " MB" in result.stdout
    info = json.load(open(out / "export.json"))
    assert info["input_size"] == INPUT_SIZE and info["tflite"] == "float32"
    assert info["framing_spec"]["model_input"]["side"] == INPUT_SIZE and "crop" in info["framing_spec"]

    preds = tmp_path / "preds.jsonl"
    predicted = run_module("serving.predict", f"--model_dir={run_dir}", "--no_detect", f"--jsonl={preds}",
                           *faces, cwd=REPO)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    predict_ages = [line["faces"][0]["apparent_age"] for line in read_lines(preds)]

    script = tmp_path / "outside" / "serve.py"
    script.parent.mkdir()
    script.write_text(CLEAN_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    clean = subprocess.run([sys.executable, "-I", str(script), str(out), *faces], cwd=script.parent, env=env,
                           capture_output=True, text=True, timeout=180)
    assert clean.returncode == 0, clean.stderr[-3000:]
    served = json.loads(clean.stdout.strip().splitlines()[-1])
    assert served["project_modules"] == []
    assert served["outputs"] == ["age_high", "age_low", "age_probs", "age_sd", "apparent_age"] and served["probs_shape"] == [len(faces), 101]
    np.testing.assert_allclose(served["ages"], predict_ages, atol=0.01)
    assert abs(served["pixels_age"] - served["ages"][0]) < 1e-4     # the PNG is at the input size
    assert np.ptp(served["ages"]) > 0.05                              # different faces, different ages

    # The TFLite file: uint8 at the input size, the Keras model's ages within 0.01 years.
    pixels = np.stack([np.asarray(Image.open(faces[0]).convert("RGB"))]
                      + [np.asarray(Image.open(p).convert("RGB").resize((INPUT_SIZE, INPUT_SIZE)))
                         for p in faces[1:2]])
    lite = tflite_run(str(out / "model.tflite"), pixels)
    ours = expected(keras_probs(run_dir, pixels))
    assert np.abs(np.array([r["apparent_age"][0] for r in lite]) - ours).max() < 0.01
    assert not np.isnan(lite[0]["age_probs"]).any()
    # The uncertainty outputs come through TFLite too, equal to the Keras model's.
    low, high = (np.asarray(v) for v in model.age_interval(keras_probs(run_dir, pixels).astype(np.float32)))
    assert [int(r["age_low"][0]) for r in lite] == low.astype(int).tolist()
    assert [int(r["age_high"][0]) for r in lite] == high.astype(int).tolist()
    np.testing.assert_allclose([r["age_sd"][0] for r in lite], model.age_sd(keras_probs(run_dir, pixels)), atol=0.01)
    from ai_edge_litert.interpreter import Interpreter
    dtypes = {d["dtype"] for d in Interpreter(model_path=str(out / "model.tflite")).get_tensor_details()}
    assert np.float16 not in dtypes


@pytest.mark.slow
def test_tta_flip_and_float16_tflite(run_dir, tmp_path):
    import tensorflow as tf

    out = tmp_path / "flip"
    export(run_dir, out, "--tta=flip", "--tflite=float16")
    pixels = np.random.default_rng(8).integers(0, 256, (3, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    with_tta = expected(keras_probs(run_dir, pixels, tta=True))
    without = expected(keras_probs(run_dir, pixels))
    loaded = tf.saved_model.load(str(out))
    saved = loaded.signatures["predict_pixels"](pixels=tf.constant(pixels))["apparent_age"].numpy()
    np.testing.assert_allclose(saved, with_tta, atol=1e-3)
    assert np.abs(with_tta - without).max() > 0.01                   # the flip changes the answer
    lite = np.array([r["apparent_age"][0] for r in tflite_run(str(out / "model.tflite"), pixels)])
    assert np.abs(lite - with_tta).max() < 0.5
    from ai_edge_litert.interpreter import Interpreter
    dtypes = {d["dtype"] for d in Interpreter(model_path=str(out / "model.tflite")).get_tensor_details()}
    assert np.float16 in dtypes                                       # the weights are stored as float16


@pytest.mark.slow     # writes whole SavedModels
def test_age_gender_export_adds_male_probability(sample_shards, tmp_path):
    import tensorflow as tf

    from serving.export import export_run

    run = build_run(str(tmp_path / "gender_run"), sample_shards, seed=2, gender=True)
    export_run(run, str(tmp_path / "g"), log=lambda *_: None)
    loaded = tf.saved_model.load(str(tmp_path / "g"))
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(buf, "PNG")
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([buf.getvalue()] * 2))
    assert sorted(out) == ["age_high", "age_low", "age_probs", "age_sd", "apparent_age", "male_probability"]
    p = out["male_probability"].numpy()
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))


@pytest.mark.slow     # writes whole SavedModels
def test_export_never_replaces_a_directory_it_did_not_make(run_dir, tmp_path):
    from serving.export import ExportError, export_run

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="notes: exists and is not an export"):
        export_run(run_dir, str(mine), log=lambda *_: None)
    assert (mine / "keep.txt").read_text() == "mine"
    # An earlier export is replaced in place, and nothing is left beside it.
    export_run(run_dir, str(tmp_path / "e"), log=lambda *_: None)
    export_run(run_dir, str(tmp_path / "e"), tflite="none", tta="flip", log=lambda *_: None)
    assert json.load(open(tmp_path / "e" / "export.json"))["tta"] == "flip"
    assert sorted(os.listdir(tmp_path)) == [".e.lock", "e", "notes"]


@pytest.mark.slow
def test_trainer_export_is_the_same_command_as_serving_export(run_dir, tmp_path):
    export(run_dir, str(tmp_path / "a"))
    alias = run_module("trainer.export", f"--model_dir={run_dir}", f"--out={tmp_path / 'b'}", cwd=REPO,
                       timeout=300)
    assert alias.returncode == 0, alias.stderr[-3000:]
    first, second = (json.load(open(tmp_path / d / "export.json")) for d in "ab")
    assert first == second and first["input_size"] == INPUT_SIZE


@pytest.mark.slow     # writes whole SavedModels
def test_export_replaces_only_a_marked_export(run_dir, tmp_path):
    """A folder holding a file named export.json (and anything else) is not an export;
    a link to an export is not replaced either; an export carries the marker."""
    from storage import outdir
    from serving.export import ExportError, export_run

    look_alike = tmp_path / "look_alike"
    look_alike.mkdir()
    (look_alike / "export.json").write_text("{}")
    (look_alike / "thesis.pdf").write_text("mine")
    real = tmp_path / "real"
    export_run(run_dir, str(real), log=lambda *_: None)
    assert outdir.marker_kind(str(real)) == "export"
    link = tmp_path / "link"
    os.symlink(real, link)
    with pytest.raises(ExportError, match=r"look_alike: exists and is not an export this project "
                                          r"wrote \(no \.dex-age marker of kind 'export'\); nothing"):
        export_run(run_dir, str(look_alike), log=lambda *_: None)
    with pytest.raises(ExportError, match=r"--out .*link: is a symbolic link \(to .*real\); nothing was touched"):
        export_run(run_dir, str(link), log=lambda *_: None)
    assert (look_alike / "thesis.pdf").read_text() == "mine" and os.path.islink(link)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height, then a truncated IDAT: only a
    decoder that reads the header first can answer without touching the pixels."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.mark.slow     # writes whole SavedModels
def test_the_saved_model_refuses_an_image_over_the_pixel_limit_from_its_header(run_dir, faces, tmp_path):
    import resource
    import struct

    import tensorflow as tf

    from faces.pixels import MAX_PIXELS
    from serving.export import SERVING_MAX_PIXELS, SERVING_REQUEST_PIXELS, export_run

    export_run(run_dir, str(tmp_path / "e"), log=lambda *_: None)
    serve = tf.saved_model.load(str(tmp_path / "e")).signatures["serving_default"]
    small = open(faces[1], "rb").read()
    assert serve(image_bytes=tf.constant([small]))["apparent_age"].shape == (1,)
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16)).save(jpeg, "JPEG")
    jpeg = bytearray(jpeg.getvalue())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 9000, 10000)      # its header says 90 MP: just over
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # 88 MP: under the pixel limit of predict and ingest, over the signature's own
    near = png_header_only(9400, 9400)
    assert 9400 * 9400 < MAX_PIXELS
    for data in (png_header_only(20000, 20000), png_header_only(10000, 10000), bytes(jpeg), near):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"more than the {SERVING_MAX_PIXELS} pixel limit of this signature"):
            serve(image_bytes=tf.constant([small, data]))
    side = 4096                                          # each at the limit, together over the request's
    n = SERVING_REQUEST_PIXELS // (side * side) + 1
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"more than the {SERVING_REQUEST_PIXELS} pixel limit of a request together"):
        serve(image_bytes=tf.constant([small] + [png_header_only(side, side)] * n))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, grown_mb       # a decoded 10000x10000 RGB image alone is 300 MB


def test_the_tflite_model_refuses_any_other_input_shape(tmp_path):
    """The interpreter would resize its input to anything; the graph itself refuses."""
    from ai_edge_litert.interpreter import Interpreter

    from serving.export import tflite_bytes

    net = model.build_age_model(variant="tiny", input_size=INPUT_SIZE)
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite_bytes(net, INPUT_SIZE, False, False, "float32"))
    pixels = np.random.default_rng(3).integers(0, 256, (2, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    ages = Interpreter(model_path=str(path)).get_signature_runner("serve")(pixels=pixels)["apparent_age"]
    np.testing.assert_allclose(ages, expected(np.asarray(net(pixels, training=False))), atol=1e-3)
    s = INPUT_SIZE
    for shape in [(1, 2 * s, 2 * s, 3), (s, s, 3), (1, s // 2, 2 * s, 3), (1, s, s, 1), (1, s, s, 3, 2)]:
        runner = Interpreter(model_path=str(path)).get_signature_runner("serve")
        with pytest.raises(RuntimeError, match=r"failed to (invoke|prepare)"):
            runner(pixels=np.zeros(shape, np.uint8))


@pytest.mark.slow     # writes a SavedModel and a TFLite file
def test_the_calibrated_interval_travels_through_the_saved_model_and_tflite(sample_shards, tmp_path):
    """A run carrying a calibration (thresholds that differ per age band, so the interval
    differs from the central one) serves the same age_low / age_high from Keras, the
    SavedModel and TFLite, and export.json records the thresholds."""
    import keras
    import tensorflow as tf

    from model import uncertainty
    from serving.export import export_run
    from trainer import calibration
    from storage.run_dir import RunDir

    run = build_run(str(tmp_path / "calibrated_run"), sample_shards, seed=3)
    net = keras.saving.load_model(os.path.join(run, "best.keras"), safe_mode=True)
    bands = len(calibration.BAND_STARTS) + 1
    thresholds = [[0.2 + 0.15 * b + 0.1 * m for m in range(len(calibration.MASSES))] for b in range(bands)]
    calibrated = uncertainty.with_interval_calibration(net, calibration.MASSES, calibration.BAND_STARTS, thresholds)
    calibrated.save(os.path.join(run, "best.keras"))
    info = RunDir(run).read_info()
    RunDir(run).write_info({**info, calibration.RUN_KEY: {"split": "val", "faces": 50, "method": calibration.METHOD}})

    out = tmp_path / "export"
    export_run(run, str(out), tflite="float32", log=lambda *_: None)
    record = json.load(open(out / "export.json"))["interval_calibration"]
    assert record["split"] == "val" and record["faces"] == 50
    np.testing.assert_allclose(record["thresholds"], thresholds, rtol=1e-6)

    pixels = np.random.default_rng(9).integers(0, 256, (8, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    probs = keras_probs(run, pixels).astype(np.float32)
    layer = uncertainty.interval_calibration(keras.saving.load_model(os.path.join(run, "best.keras"), safe_mode=True))
    low, high = (np.asarray(v).astype(int) for v in layer.interval(probs, uncertainty.INTERVAL_MASS))
    central = [np.asarray(v).astype(int) for v in uncertainty.age_interval(probs)]
    assert not (np.array_equal(low, central[0]) and np.array_equal(high, central[1]))
    saved = tf.saved_model.load(str(out)).signatures["predict_pixels"](pixels=tf.constant(pixels))
    assert saved["age_low"].numpy().astype(int).tolist() == low.tolist()
    assert saved["age_high"].numpy().astype(int).tolist() == high.tolist()
    lite = tflite_run(str(out / "model.tflite"), pixels)
    assert [int(r["age_low"][0]) for r in lite] == low.tolist()
    assert [int(r["age_high"][0]) for r in lite] == high.tolist()


def test_the_framing_spec_states_every_step_a_phone_implements():
    from faces import blazeface, framing
    from serving import framing_spec

    spec = framing_spec.spec(framing.Framing("blazeface", True, 0.4), framing.Stored(64, "jpeg", 95), 64)
    assert spec["detector"]["name"] == "blazeface"
    assert spec["detector"]["model_file"] == "face_detection_short_range.tflite"
    assert spec["detector"]["fallback_model_file"] == "face_detection_full_range.tflite"
    assert os.path.basename(blazeface.model_path()) == spec["detector"]["model_file"]
    assert spec["detector"]["anchors"]["model"]["count"] == 896
    assert spec["detector"]["anchors"]["fallback"]["count"] == 2304
    assert spec["rotation"]["aligned"] is True and spec["rotation"]["eye_keypoints"] == [0, 1]
    assert "atan2(right_eye_y - left_eye_y, right_eye_x - left_eye_x)" in spec["rotation"]["angle_degrees"]
    assert "clockwise" in spec["rotation"]["angle_degrees"] and "-angle" in spec["rotation"]["turn"]
    assert spec["crop"]["margin"] == 0.4 and "floor(x0 - margin * w)" in spec["crop"]["rule"]
    assert spec["output"]["side"] == 64 and spec["model_input"]["side"] == 64
    assert (spec["storage"]["encoding"], spec["storage"]["jpeg_quality"]) == ("jpeg", 95)
    json.dumps(spec)                               # plain JSON data
    flat = framing_spec.spec(framing.Framing("haar", False, 0.0), None, 32)
    assert flat["rotation"] == {"aligned": False, "eye_keypoints": None, "angle_degrees": "0: no turn",
                                "turn": "none"}
    assert flat["crop"]["margin"] == 0.0 and flat["output"] is None and "storage" not in flat


@pytest.mark.slow     # writes a SavedModel and three TFLite files, runs reference.py in a subprocess
def test_the_phone_bundle_reference_matches_predict_on_a_photo(run_dir, tmp_path):
    import skimage.data

    out = tmp_path / "phone"
    result = export(run_dir, out, "--bundle")
    bundle = out / "bundle"
    assert sorted(os.listdir(bundle)) == ["age_float16.tflite", "age_int8.tflite", "face_detection_full_range.tflite",
                                          "face_detection_short_range.tflite", "framing.json", "reference.py"]
    info = json.load(open(out / "export.json"))["bundle"]
    for name in ("age_float16.tflite", "age_int8.tflite"):
        assert info[name]["bytes"] == os.path.getsize(bundle / name) and info[name]["test_mae"] > 0
    assert info["age_int8.tflite"]["bytes"] < info["age_float16.tflite"]["bytes"]
    assert info["int8_mae_change"] == pytest.approx(
        info["age_int8.tflite"]["test_mae"] - info["age_float16.tflite"]["test_mae"], abs=1e-3)
    assert f"({info['int8_mae_change']:+.2f} vs float16)" in result.stdout
    framing_json = json.load(open(bundle / "framing.json"))
    assert framing_json["detector"]["name"] == "blazeface" and framing_json["rotation"]["aligned"] is True
    reference = (bundle / "reference.py").read_text()
    assert not any(line.startswith(("from faces", "from serving", "import faces", "from model", "import model",
                                    "from records", "from errors", "import entry"))
                   for line in (line.strip() for line in reference.splitlines()))

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage.data.astronaut()).save(photo, quality=95)
    # The bundle alone: copied away from the export, run with `python -I` (no PYTHONPATH, no project).
    away = tmp_path / "elsewhere"
    shutil.copytree(bundle, away)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ran = subprocess.run([sys.executable, "-I", str(away / "reference.py"), str(photo)], capture_output=True,
                         text=True, timeout=180, cwd=str(tmp_path), env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    (line,) = [json.loads(text) for text in ran.stdout.splitlines()]
    predicted = run_module("serving.predict", f"--model_dir={run_dir}", "--json", str(photo), cwd=REPO, timeout=180)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    (expected_line,) = json.loads(predicted.stdout)
    assert line["file"] == str(photo) and line["error"] is None
    assert len(line["faces"]) == len(expected_line["faces"]) >= 1
    for mine, theirs in zip(line["faces"], expected_line["faces"]):
        assert np.abs(np.subtract(mine["box"], theirs["box"])).max() <= 3, (mine, theirs)
        assert abs(mine["apparent_age"] - theirs["apparent_age"]) < 0.5, (mine, theirs)
        assert mine["age_low"] <= mine["apparent_age"] <= mine["age_high"]


def test_a_bundle_is_refused_in_one_line_for_a_run_framed_by_another_detector():
    from errors import ProjectError
    from faces import framing
    from serving import bundle

    bundle.check(framing.Framing("blazeface", True, 0.4))
    bundle.check(framing.Framing("source", False, 0.0))      # prediction frames its photos with blazeface
    with pytest.raises(ProjectError) as error:
        bundle.check(framing.Framing("mtcnn", True, 0.4))
    assert str(error.value) == (
        "--bundle: the bundle's reference finds faces with blazeface, but this run was trained on mtcnn faces, "
        "aligned, margin 0.4; train on faces from `python -m ingest --src SRC --out OUT --reframe blazeface`, "
        "or leave out --bundle")


# --- the export's folder: one writer, swapped in, repaired after a kill --------------

def _fill(text: str):
    def fill(staging):
        with open(os.path.join(staging, "export.json"), "x") as f:
            f.write(text)
    return fill


def _users_saved_model(folder):
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "variables.index").write_bytes(b"weights")
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "export.json").write_text("{}")


def test_a_users_saved_model_is_never_replaced(tmp_path):
    from serving.export import ExportError, write_export

    mine = tmp_path / "my_model"
    _users_saved_model(mine)
    with pytest.raises(ExportError, match=r"my_model: exists and is not an export this project wrote"):
        write_export(str(mine), _fill("new"), log=lambda *_: None)
    assert sorted(os.listdir(mine)) == ["export.json", "saved_model.pb", "variables"]
    assert (mine / "saved_model.pb").read_bytes() == b"graph" and sorted(os.listdir(tmp_path)) == ["my_model"]


def test_a_second_export_into_one_out_is_refused_naming_the_holder(tmp_path):
    from serving.export import write_export
    from storage.lock import OutputLock

    with OutputLock(str(tmp_path / "e")):
        with pytest.raises(ProjectError, match=r"e: already being written by pid \d+"):
            write_export(str(tmp_path / "e"), _fill("second"), log=lambda *_: None)
    assert not (tmp_path / "e").exists()


def _killed_export(out: str, text: str, kill_at: int) -> bool:
    """write_export in a forked child that kill -9s itself at its kill_at-th rename
    (markers included); True when the kill landed (the child did not finish)."""
    import signal

    pid = os.fork()
    if pid == 0:
        try:
            from serving.export import write_export
            real, calls = os.replace, [0]

            def replace(*args, **kwargs):
                calls[0] += 1
                if calls[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)
            os.replace = replace
            write_export(out, _fill(text), log=lambda *_: None)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


def test_a_kill_at_any_rename_of_an_export_leaves_the_old_or_the_new_and_the_rerun_repairs(tmp_path):
    from serving.export import write_export

    kill_at = 1
    while True:
        out = tmp_path / f"k{kill_at}" / "e"
        write_export(str(out), _fill("old"), log=lambda *_: None)
        killed = _killed_export(str(out), "new", kill_at)
        seen = []
        write_export(str(out), _fill("rerun"), log=seen.append)     # repairs, then writes
        assert (out / "export.json").read_text() == "rerun"
        assert sorted(os.listdir(out.parent)) == [".e.lock", "e"], (kill_at, os.listdir(out.parent))
        if not killed:
            break
        kill_at += 1
    assert kill_at >= 5           # markers, staging -> out, out -> old, old -> trash were each hit


def test_a_killed_export_between_its_renames_is_restored_before_anything_else(tmp_path):
    from serving.export import target

    out = tmp_path / "e"
    from serving.export import write_export
    write_export(str(out), _fill("old"), log=lambda *_: None)
    export = target(str(out))
    os.replace(out, export.old)                 # the first rename of the swap, then kill -9
    assert "restored" in export.repair()
    assert (out / "export.json").read_text() == "old"


def test_the_temporary_folders_of_killed_exports_are_restored_or_removed(tmp_path):
    from serving.export import write_export
    from storage import outdir

    out = tmp_path / "e"
    hidden = tmp_path / ".e.old.ab12cd34" / "export"          # the old export, hidden by a kill
    outdir.drop_marker(str(hidden), "export")
    (hidden / "export.json").write_text("old")
    outdir.drop_marker(str(tmp_path / ".e.zz9_yy88"), "export")  # an unfinished export
    (tmp_path / ".e.notmine1").mkdir()                          # the user's, no marker
    (tmp_path / ".e.notmine1" / "keep.txt").write_text("mine")
    seen = []
    write_export(str(out), _fill("new"), log=seen.append)
    assert any("restored" in line for line in seen) and any(".e.zz9_yy88" in line for line in seen)
    assert sorted(os.listdir(tmp_path)) == [".e.lock", ".e.notmine1", "e"]
    assert (out / "export.json").read_text() == "new"


@pytest.mark.parametrize("given", [".", ".."])
def test_an_export_out_that_is_where_you_stand_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, given):
    from serving.export import ExportError, export_run

    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    with pytest.raises(ExportError) as e:
        export_run(str(tmp_path / "no-run"), given, log=lambda *_: None)
    assert str(e.value).startswith(f"--out {given}: is the current directory or holds it (")
    assert sorted(os.listdir(tmp_path)) == ["a"] and os.listdir(tmp_path / "a") == ["b"] and os.listdir(here) == []
