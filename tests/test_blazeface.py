"""BlazeFace (faces.blazeface, `--detector blazeface`): its anchors and suppression, the
faces it finds in scikit-image's astronaut against MTCNN's, and ingest's `--reframe
blazeface` crops against prediction's framing of the same photos."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import run_module
from faces import framing
from test_faces_framing import astronaut, turned

ASTRONAUT_FACE = (177, 81, 95, 94)   # BlazeFace's box (x, y, w, h) of her face in the 512x512 portrait


def iou(a, b) -> float:
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def test_the_anchors_follow_mediapipes_short_range_layout():
    from faces import blazeface

    anchors = blazeface.ANCHORS
    assert anchors.shape == (896, 2)
    # 16x16 cells of stride 8 with 2 anchors each, then 8x8 cells of stride 16 with 6 each
    np.testing.assert_allclose(anchors[:2], [[1 / 32, 1 / 32]] * 2)
    np.testing.assert_allclose(anchors[2], [3 / 32, 1 / 32])
    np.testing.assert_allclose(anchors[511], [31 / 32, 31 / 32])
    np.testing.assert_allclose(anchors[512:518], [[1 / 16, 1 / 16]] * 6)
    np.testing.assert_allclose(anchors[518], [3 / 16, 1 / 16])
    np.testing.assert_allclose(anchors[-1], [15 / 16, 15 / 16])


def test_the_full_range_anchors_are_one_per_cell_of_stride_4():
    from faces import blazeface

    anchors = blazeface.FULL_ANCHORS
    assert anchors.shape == (2304, 2)     # 48 x 48 cells of the 192 px input
    np.testing.assert_allclose(anchors[0], [1 / 96, 1 / 96])
    np.testing.assert_allclose(anchors[1], [3 / 96, 1 / 96])
    np.testing.assert_allclose(anchors[48], [1 / 96, 3 / 96])
    np.testing.assert_allclose(anchors[-1], [95 / 96, 95 / 96])


def test_weighted_suppression_merges_overlapping_detections_by_score():
    from faces import blazeface

    width = 4 + 2 * blazeface.KEYPOINTS
    rows = np.zeros((3, width))
    rows[0, :4] = (0.10, 0.10, 0.50, 0.50)
    rows[1, :4] = (0.14, 0.10, 0.54, 0.50)     # IoU 0.82 with the first
    rows[2, :4] = (0.60, 0.60, 0.90, 0.90)     # apart
    rows[:, 4:] = np.arange(3)[:, None]
    merged = blazeface.weighted_nms(np.array([0.6, 0.9, 0.7]), rows)
    assert [score for score, _ in merged] == [0.9, 0.7]
    np.testing.assert_allclose(merged[0][1][:4], (0.124, 0.10, 0.524, 0.50))   # (0.6 * first + 0.9 * second) / 1.5
    np.testing.assert_allclose(merged[0][1][4:], 0.6)
    np.testing.assert_allclose(merged[1][1], rows[2])


def test_blazeface_finds_the_astronaut_where_she_is_and_no_face_in_blank_photos():
    from faces import detect

    (face,) = detect.find_faces(astronaut(), "blazeface")
    assert iou(face.box, ASTRONAUT_FACE) > 0.9
    assert detect.find_faces(astronaut(), "blazeface") == [face]    # deterministic: ingest's resume relies on it
    (left_x, left_y), (right_x, right_y) = face.eyes
    x, y, w, h = face.box
    assert x < left_x < x + w / 2 < right_x < x + w and y < left_y < y + h / 2 and y < right_y < y + h / 2
    # On a wider photo (letterboxed for the model): the same face, moved with her.
    wide = np.full((512, 640, 3), 90, np.uint8)
    wide[:, 128:] = astronaut()
    (moved,) = detect.find_faces(wide, "blazeface")
    assert iou(moved.box, (x + 128, y, w, h)) > 0.8
    # Her face is 1/5 of the photo's longer side there; at 1/10 it is too small for the short
    # range, and the full range finds it (the detector's fallback), where she is.
    from faces import blazeface

    wider = np.full((512, 950, 3), 90, np.uint8)
    wider[:, 438:] = astronaut()
    assert blazeface.detect(wider) == []
    (far,) = detect.find_faces(wider, "blazeface")
    assert iou(far.box, (x + 438, y, w, h)) > 0.75
    (far_left, _), (far_right, _) = far.eyes
    assert far.box[0] < far_left < far_right < far.box[0] + far.box[2]
    # Where the short range finds her, its face is returned as it found it.
    assert blazeface.find(astronaut())[0][1].tolist() == blazeface.detect(astronaut())[0][1].tolist()
    for blank in (np.full((300, 400, 3), 128, np.uint8), np.zeros((1, 1, 3), np.uint8)):
        assert detect.find_faces(blank, "blazeface") == []
    assert detect.find_faces(astronaut(), "blazeface", min_face=120) == []   # smaller than min_face


@pytest.mark.parametrize("degrees", [-20, 20])
def test_blazeface_eyes_give_the_turn_of_a_turned_face(degrees):
    from faces import detect

    (face,) = detect.find_faces(turned(astronaut(), degrees), "blazeface")
    # Her eyes are turned by about 3 degrees in the portrait itself (MTCNN's); BlazeFace's
    # eye keypoints are coarser (about 1.5 px of its 128 px input).
    assert face.angle(True) == pytest.approx(-degrees + 2.8, abs=8.0)
    assert framing.aligns_by_default("blazeface")


@pytest.mark.slow
def test_blazeface_agrees_with_mtcnn_on_the_astronaut():
    from faces import detect

    (blaze,) = detect.find_faces(astronaut(), "blazeface")
    (mtcnn,) = detect.find_faces(astronaut(), "mtcnn")
    assert iou(blaze.box, mtcnn.box) > 0.6
    for (bx, by), (mx, my) in zip(blaze.eyes, mtcnn.eyes):
        assert np.hypot(bx - mx, by - my) < 8.0


# ----------------------------------------------------------------------------- end to end (slow)

@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> str:
    """A UTKFace-named folder: the astronaut turned and on a wider photo (a face each), her
    face too small for BlazeFace's short range, and a faceless grey photo."""
    from PIL import Image

    root = tmp_path_factory.mktemp("blaze") / "UTKFace"
    root.mkdir()
    shots = [turned(astronaut(), d) for d in (-15, 0, 10, 20)]
    wide = np.full((512, 640, 3), 90, np.uint8)
    wide[:, 128:] = astronaut()
    shots += [wide, turned(astronaut(), 0, (1280, 960), 0.5, (700, 500)), np.full((200, 200, 3), 100, np.uint8)]
    for n, rgb in enumerate(shots):
        Image.fromarray(rgb).save(root / f"{30 + n}_1_0_2017010915{n:04d}.jpg.chip.jpg", quality=95)
    return str(root)


@pytest.mark.slow
def test_reframed_ingest_with_blazeface_stores_the_crops_prediction_frames(photos, tmp_path):
    from conftest import read_records
    from records import schema
    from faces.pixels import read_rgb
    from serving import faces

    out = str(tmp_path / "shards")
    result = run_module("ingest", "--src", photos, "--out", out, "--reframe", "blazeface", "--image_size", "32",
                        "--encoding", "raw", "--workers", "2", "--test_fraction", "0.2", "--val_fraction", "0.2",
                        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "images (blazeface)" in result.stderr
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert (manifest["detector"], manifest["aligned"], manifest["margin"]) == ("blazeface", True, 0.4)
    assert manifest["skipped"] == {"no_face_found": 2} and manifest["kept"] == 7   # rows kept before decoding
    stored = {rec[schema.KEY]: rec for split in read_records(out).values() for rec in split}
    assert len(stored) == 5
    for key, rec in stored.items():
        ((face, angle, pixels, region),) = faces.framed_faces(read_rgb(os.path.join(photos, key.decode())),
                                                              "blazeface", True, 0.4, 30, framing.stored(manifest))
        got = np.frombuffer(rec[schema.IMAGE_ENCODED], np.uint8).reshape(32, 32, 3)
        np.testing.assert_array_equal(got, pixels, err_msg=key)
